"""Single-node Apache Kafka 4.1 (KRaft, combined broker + controller) run from Maven jars.

Clients connect with SASL (SASL_PLAINTEXT on loopback): user `labelloop`, its password in
`<stack_dir>/kafka.password` (mode 0600), mechanisms PLAIN (static JAAS users) and
SCRAM-SHA-512 (credentials written into the metadata when the data directory is formatted).
The controller listener stays PLAINTEXT on 127.0.0.1.

`fetch_kafka_jars` assembles the broker's runtime classpath with Maven (see kafka-pom.xml);
`KafkaBroker` formats its data directory once and runs `java -cp '<libs>/*' kafka.Kafka`.
Every internal topic is configured with replication factor 1, or the group coordinator of a
one-node cluster never becomes available.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelloop.core.topics import TOPIC_MAX_MESSAGE_BYTES
from labelloop.stack.process import ManagedProcess, StackError
from labelloop.stack.secrets import stack_secret
from labelloop.stack.settings import StackSettings

KAFKA_USER = "labelloop"
KAFKA_VERSION = "4.1.2"
BROKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
POM = Path(__file__).with_name("kafka-pom.xml")
LOG4J2_CONFIG = Path(__file__).with_name("kafka-log4j2.properties")
STARTED_LINE = b"Kafka Server started"


def fetch_kafka_jars(libs_dir: Path, say: Callable[[str], None] = print) -> bool:
    """Put the Kafka broker's runtime jars into `libs_dir` with Maven; False when already there.

    Idempotent and atomic: jars are copied into a temporary sibling directory that is renamed
    to `libs_dir` only when Maven succeeded, so a half-fetched classpath is never used.
    """
    if (libs_dir / BROKER_JAR).is_file():
        say(f"==> kafka jars present in {libs_dir}")
        return False
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is not installed; run `make setup`")
    libs_dir.parent.mkdir(parents=True, exist_ok=True)
    say(f"==> fetching Apache Kafka {KAFKA_VERSION} broker jars from Maven Central into {libs_dir}")
    with tempfile.TemporaryDirectory(prefix=".kafka-libs-", dir=libs_dir.parent) as tmp:
        staging = Path(tmp) / "libs"
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not (staging / BROKER_JAR).is_file():
            raise StackError(
                f"mvn failed (exit {result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        if libs_dir.exists():
            shutil.rmtree(libs_dir)
        os.rename(staging, libs_dir)
    say(f"==> kafka: {len(list(libs_dir.glob('*.jar')))} jars in {libs_dir}")
    return True


def new_cluster_id() -> str:
    """A KRaft cluster id: base64url of 16 random bytes, unpadded, never starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker:
    """The local Kafka broker: PLAINTEXT on 127.0.0.1:`kafka_port`, controller on `kafka_controller_port`.

    Layout under `<stack_dir>/kafka/`: `data/` (log.dirs, formatted once), `server.properties`,
    `kafka.log`, `kafka.pid`. Ready when the log says "Kafka Server started" and an
    admin client's DescribeCluster request answers.
    """

    name = "kafka"

    def __init__(self, settings: StackSettings, stack_dir: Path, libs_dir: Path) -> None:
        self.port = settings.kafka_port
        self.controller_port = settings.kafka_controller_port
        self.home = stack_dir / self.name
        self.data_dir = self.home / "data"
        self.config_file = self.home / "server.properties"
        self.password_file = stack_dir / "kafka.password"
        self.libs_dir = libs_dir
        self._heap = f"-Xmx{settings.kafka_heap_mb}m"
        self._log_offset = 0
        self._started_seen = False
        java = shutil.which("java") or "java"
        self.process = ManagedProcess(
            self.name,
            [
                java,
                f"-Xms{settings.kafka_heap_mb}m",
                self._heap,
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
                "-cp",
                f"{libs_dir}/*",
                "kafka.Kafka",
                str(self.config_file),
            ],
            dict(os.environ),
            self.home / "kafka.log",
            self.is_ready,
            ports=(self.port, self.controller_port),
            prepare=self._prepare,
            start_timeout_s=settings.start_timeout_s,
            stop_timeout_s=settings.stop_timeout_s,
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def password(self) -> str:
        """The SASL password of user `labelloop`, created on first use."""
        return stack_secret(self.password_file)

    def client_security(self, mechanism: str = "PLAIN") -> Any:
        """The `KafkaSecurity` a client of this broker uses."""
        from labelloop.core.kafka_clients import KafkaSecurity

        return KafkaSecurity("SASL_PLAINTEXT", mechanism, KAFKA_USER, self.password)

    def client_env(self) -> dict[str, str]:
        """The `LABELLOOP_KAFKA_*` variables of a client of this broker."""
        return {
            "LABELLOOP_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "LABELLOOP_KAFKA_SASL_MECHANISM": "PLAIN",
            "LABELLOOP_KAFKA_USERNAME": KAFKA_USER,
            "LABELLOOP_KAFKA_PASSWORD": self.password,
        }

    @property
    def endpoint(self) -> str:
        return f"{self.bootstrap_servers} (controller {self.controller_port})"

    def server_properties(self) -> str:
        """The broker's configuration: one KRaft node, every internal topic replicated once, a
        SASL listener for clients (and the broker itself)."""
        password = self.password
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{KAFKA_USER}" password="{password}" user_{KAFKA_USER}="{password}";'
        )
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": plain,
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": "16777216",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "auto.create.topics.enable": "false",
            "message.max.bytes": str(TOPIC_MAX_MESSAGE_BYTES),  # as every topic Labelloop creates
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _prepare(self) -> None:
        if not (self.libs_dir / BROKER_JAR).is_file():
            raise StackError(
                f"kafka: no broker jars in {self.libs_dir}; run `python -m labelloop.stack fetch`"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the password
        with os.fdopen(fd, "w") as out:
            out.write(self.server_properties())
        self._log_offset, self._started_seen = 0, False
        if (self.data_dir / "meta.properties").is_file():
            return
        result = subprocess.run(
            [
                self.process.argv[0],
                self._heap,
                f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
                "-cp",
                f"{self.libs_dir}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(self.config_file),
                "--add-scram",
                f"SCRAM-SHA-512=[name={KAFKA_USER},password={self.password}]",
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )
        if result.returncode != 0:
            raise StackError(f"kafka: formatting {self.data_dir} failed:\n{result.stdout}{result.stderr}")

    def _saw_started_line(self) -> bool:
        """Scan the log incrementally for KafkaRaftServer's "Kafka Server started" line."""
        if not self._started_seen:
            try:
                with self.process.log.open("rb") as log:
                    start = max(0, self._log_offset - len(STARTED_LINE))  # a line split across reads
                    log.seek(start)
                    chunk = log.read()
            except FileNotFoundError:
                return False
            self._log_offset = start + len(chunk)
            self._started_seen = STARTED_LINE in chunk
        return self._started_seen

    def is_ready(self) -> bool:
        """True when the broker announced it started and answers a DescribeCluster request."""
        if not self._saw_started_line():
            return False
        from labelloop.core import kafka_clients

        admin = kafka_clients.admin(self.bootstrap_servers, "labelloop-stack", auth=self.client_security())
        try:
            return bool(kafka_clients.cluster_broker_ports(admin, timeout_s=5))
        except kafka_clients.KafkaException:
            return False
