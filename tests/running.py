"""Labelloop's services as real processes for end-to-end tests, pointed at the test stack with
a per-test topic prefix and Redis key prefix, on free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
from support import free_port, wait_until

from labelloop.core import grpc_client, redis_store
from labelloop.stack.process import ManagedProcess
from labelloop.v1 import admin_pb2, admin_pb2_grpc, common_pb2, human_tasks_pb2_grpc, ingest_pb2_grpc

PIPELINE = ("ingest", "inference", "routing", "human_tasks")
SERVICES = (*PIPELINE, "retraining")  # retraining is started only when a test names it
GRPC_SERVICES = ("ingest", "human_tasks", "retraining")


def _ready(metrics_port: int, grpc_port: int | None) -> Callable[[], bool]:
    def check() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=3) as resp:
            if resp.status != 200:
                return False
        if grpc_port is not None:
            with socket.create_connection(("127.0.0.1", grpc_port), timeout=2):
                pass
        return True

    return check


class RunningServices:
    """Starts, kills and restarts service processes; gives gRPC stubs and a Redis client."""

    def __init__(
        self,
        stack,
        workdir: Path,
        topic_prefix: str,
        redis_prefix: str,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.stack = stack
        self.topic_prefix = topic_prefix
        self.redis_prefix = redis_prefix
        self.ports = {name: free_port() for name in SERVICES}
        self.grpc_ports = {name: free_port() for name in GRPC_SERVICES}
        base = {
            **os.environ,
            **stack.service_env(),
            "LABELLOOP_TOPIC_PREFIX": topic_prefix,
            "LABELLOOP_REDIS_KEY_PREFIX": redis_prefix,
            "PYTHONUNBUFFERED": "1",
            # The fast families unless a test asks for the encoder ones (test_cascade_loop does):
            # the default's cascade would load the encoder into Triton for every test.
            "LABELLOOP_FAMILIES": "tfidf-lr,image-lr",
            **(extra_env or {}),
        }
        self.processes: dict[str, ManagedProcess] = {}
        for name in SERVICES:
            env = {**base, "LABELLOOP_METRICS_PORT": str(self.ports[name])}
            grpc_port = self.grpc_ports.get(name)
            if grpc_port:
                env["LABELLOOP_GRPC_PORT"] = str(grpc_port)
            ports = [self.ports[name]] + ([grpc_port] if grpc_port else [])
            self.processes[name] = ManagedProcess(
                name,
                [sys.executable, "-m", f"labelloop.{name}"],
                env,
                workdir / name / f"{name}.log",
                _ready(self.ports[name], grpc_port),
                ports=ports,
                start_timeout_s=90,
                stop_timeout_s=20,
            )
        self.redis = redis_store.connect(stack.redis_url, stack.redis_password)
        self.token = stack.admin_token
        """The stack's admin token (every service registers it at start)."""
        self._channels: list[grpc.Channel] = []

    def start(self, names: Iterable[str] = PIPELINE) -> None:
        """Start `names` in order; if one fails, stop every service started so far and re-raise
        (a fixture whose setup fails never reaches its teardown)."""
        try:
            for name in names:
                self.processes[name].start()
        except BaseException:
            self.stop()
            raise

    def kill(self, name: str) -> None:
        """kill -9 the service (no graceful shutdown, no final commit)."""
        pid = self.processes[name].running_pid()
        assert pid is not None, f"{name} is not running"
        os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: self.processes[name].running_pid() is None, 20, message=f"{name} survived kill -9")

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()
        for channel in self._channels:
            channel.close()
        self.redis.close()

    def dump_stacks(self, timeout_s: float = 10.0) -> str:
        """SIGUSR1 to every running service (core/service.py: each writes its threads' stacks to
        its log); returns what each wrote, for a test's failure report."""
        marks = {name: len(self.log(name)) for name in self.processes}
        signalled = []
        for name, process in self.processes.items():
            pid = process.running_pid()
            if pid is not None:
                os.kill(pid, signal.SIGUSR1)
                signalled.append(name)
        parts = []
        for name in signalled:
            with contextlib.suppress(AssertionError):  # report what there is
                wait_until(lambda n=name: "File " in self.log(n)[marks[n] :], timeout_s, message=name)
            parts.append(f"--- {name}: stacks ---\n{self.log(name)[marks[name] :]}")
        return "\n".join(parts)

    def log(self, name: str) -> str:
        return (
            self.processes[name].log.read_text(errors="replace") if self.processes[name].log.exists() else ""
        )

    def channel(self, service: str, token: str | None = None) -> grpc.Channel:
        """A channel to `service` whose calls carry `token` (default: the admin token; "": none)."""
        address = f"127.0.0.1:{self.grpc_ports[service]}"
        token = self.token if token is None else token
        channel = grpc_client.channel(address, token) if token else grpc.insecure_channel(address)
        self._channels.append(channel)
        return channel

    def ingest(self) -> ingest_pb2_grpc.IngestServiceStub:
        return ingest_pb2_grpc.IngestServiceStub(self.channel("ingest"))

    def admin(self) -> admin_pb2_grpc.ProjectServiceStub:
        return admin_pb2_grpc.ProjectServiceStub(self.channel("ingest"))

    def human_tasks(self) -> human_tasks_pb2_grpc.HumanTaskServiceStub:
        return human_tasks_pb2_grpc.HumanTaskServiceStub(self.channel("human_tasks"))

    def create_project(self, project_id: str, labels: list[str], **spec: object) -> common_pb2.Project:
        return self.admin().CreateProject(
            admin_pb2.CreateProjectRequest(
                spec=common_pb2.ProjectSpec(project_id=project_id, labels=labels, **spec)
            ),
            timeout=10,
        )
