"""Services authenticate to the stack's dependencies with the configured credentials, and a
service given wrong ones stops at start with a message naming the setting to fix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis
from confluent_kafka.admin import ConfigResource

from labelloop.core import kafka_clients, redis_store
from labelloop.core.errors import DependencyUnavailable
from labelloop.core.kafka_clients import KafkaSecurity
from labelloop.core.topics import ITEMS


def start_service(env: dict[str, str], module: str = "labelloop.routing") -> subprocess.CompletedProcess[str]:
    """Run a service until it exits by itself (it must, within the timeout)."""
    return subprocess.run(
        [sys.executable, "-m", module],
        env={**os.environ, **env, "LABELLOOP_METRICS_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_redis_requires_the_password_and_services_use_it(stack) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis_store.connect(stack.redis_url).ping()
    assert redis_store.connect(stack.redis_url, stack.redis_password).ping()
    in_url = stack.redis_url.replace("redis://", "redis://:a-stale-literal@")
    assert redis_store.connect(in_url, stack.redis_password).ping(), "the setting overrides a URL's password"


@pytest.mark.parametrize("password", ["not-the-password", ""])
def test_a_service_with_a_wrong_redis_password_stops_naming_it(stack, tmp_path, password) -> None:
    env = {
        **stack.service_env(),
        "LABELLOOP_REDIS_PASSWORD": password,
        "LABELLOOP_REDIS_PASSWORD_FILE": str(tmp_path / "none"),
    }
    done = start_service(env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "LABELLOOP_REDIS_PASSWORD" in done.stderr and "refused the credentials" in done.stderr


def test_kafka_takes_sasl_plain_and_scram_and_refuses_wrong_credentials(stack) -> None:
    for mechanism in ("PLAIN", "SCRAM-SHA-512"):
        client = kafka_clients.admin(stack.bootstrap_servers, auth=stack.kafka.client_security(mechanism))
        assert kafka_clients.cluster_broker_ports(client, timeout_s=20) == [stack.kafka.port], mechanism
    wrong = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "labelloop", "not-the-password")
    kafka_clients.configure(wrong)
    try:
        with pytest.raises(
            kafka_clients.BadCredentials, match=r"LABELLOOP_KAFKA_PASSWORD.*invalid credentials"
        ):
            kafka_clients.check_credentials(stack.bootstrap_servers, timeout_s=5)
    finally:
        kafka_clients.configure(stack.kafka_security)
    kafka_clients.check_credentials(stack.bootstrap_servers)
    plaintext = kafka_clients.admin(stack.bootstrap_servers, auth=KafkaSecurity())
    with pytest.raises(kafka_clients.KafkaException):
        kafka_clients.cluster_broker_ports(plaintext, timeout_s=3)  # no listener without SASL


def test_a_service_with_a_wrong_kafka_password_stops_naming_it(stack) -> None:
    done = start_service({**stack.service_env(), "LABELLOOP_KAFKA_PASSWORD": "not-the-password"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "LABELLOOP_KAFKA_PASSWORD" in done.stderr and "Invalid username or password" in done.stderr


def test_a_service_with_inconsistent_kafka_settings_stops_naming_them(stack) -> None:
    done = start_service({**stack.service_env(), "LABELLOOP_KAFKA_SASL_MECHANISM": "KERBEROS"})
    assert done.returncode == 2 and "LABELLOOP_KAFKA_SASL_MECHANISM='KERBEROS'" in done.stderr, done.stderr


def test_topics_get_the_configured_replication(stack, topic_prefix) -> None:
    kafka_clients.ensure_topics(stack.bootstrap_servers, topic_prefix, [ITEMS], min_insync_replicas=2)
    client = kafka_clients.admin(stack.bootstrap_servers)
    resource = ConfigResource(ConfigResource.Type.TOPIC, ITEMS.name(topic_prefix))
    (entries,) = (f.result(timeout=20) for f in client.describe_configs([resource]).values())
    assert entries["min.insync.replicas"].value == "2"
    with pytest.raises(DependencyUnavailable, match="eplication factor"):
        kafka_clients.ensure_topics(
            stack.bootstrap_servers, f"{topic_prefix}-rf3", [ITEMS], timeout_s=10, replication_factor=3
        )
