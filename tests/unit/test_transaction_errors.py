"""How a consume loop's transactional producer treats each kind of transaction error (librdkafka
classifies them: retriable, abortable, fatal), with a fake client in place of librdkafka's."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import KafkaError, KafkaException

from labelloop.core import stream
from labelloop.core.errors import DependencyUnavailable
from labelloop.core.settings import CommonSettings, load
from labelloop.core.stream import EventProducer


class FakeTransactions:
    """Records calls; `commit_errors` are raised by successive commit_transaction calls."""

    def __init__(self, *commit_errors: KafkaError) -> None:
        self.commit_errors = list(commit_errors)
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(self, offsets, metadata, timeout) -> None:
        self.calls.append("send_offsets")

    def commit_transaction(self, timeout) -> None:
        self.calls.append("commit")
        if self.commit_errors:
            raise KafkaException(self.commit_errors.pop(0))

    def abort_transaction(self, timeout) -> None:
        self.calls.append("abort")


def producer(client: FakeTransactions) -> EventProducer:
    made = object.__new__(EventProducer)
    made.prefix, made.service, made.transactional_id = "p", "routing", "p.routing.test"
    made._producer = client  # type: ignore[assignment]
    made._local = threading.local()
    made._closed = False
    made._routes = {}
    made._bootstrap, made._config, made._replace = "127.0.0.1:1", {}, False
    return made


def test_a_retriable_commit_error_is_retried() -> None:
    client = FakeTransactions(KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True))
    producer(client).commit(["offset"], "group")
    assert client.calls == ["send_offsets", "commit", "commit"]


def test_an_abortable_error_aborts_and_pauses_the_loop() -> None:
    client = FakeTransactions(
        KafkaError(KafkaError.ILLEGAL_GENERATION, "rebalanced", txn_requires_abort=True)
    )
    with pytest.raises(DependencyUnavailable, match="transaction aborted"):
        producer(client).commit(["offset"], "group")
    assert client.calls == ["send_offsets", "commit", "abort"]


def test_a_fenced_producer_is_replaced_before_the_next_transaction() -> None:
    client = FakeTransactions(KafkaError(KafkaError._FENCED, "another instance", fatal=True))
    made = producer(client)
    with pytest.raises(DependencyUnavailable, match="another instance"):
        made.commit([], "group")
    assert client.calls == ["commit"], "no offsets: nothing sent to the transaction"
    assert made._replace, "the next begin() starts with a new producer (same transactional.id)"


class Hanging(FakeTransactions):
    """send_offsets_to_transaction that ignores its timeout (librdkafka after a broker restart)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def send_offsets_to_transaction(self, offsets, metadata, timeout) -> None:
        self.calls.append("send_offsets")
        self.release.wait(30)


def test_a_call_that_hangs_past_its_timeout_is_left_behind(monkeypatch) -> None:
    client = Hanging()
    made = producer(client)
    monkeypatch.setattr(stream, "STUCK_GRACE_S", 0.2)
    replacement = FakeTransactions()
    monkeypatch.setattr(stream.kafka_clients, "transactional_producer", lambda *_a, **_k: replacement)
    try:
        with pytest.raises(DependencyUnavailable, match="hung"):
            made.commit(["offset"], "group", timeout_s=0.1)
    finally:
        client.release.set()
    assert made._producer is replacement and not made._replace
    made.begin()
    assert replacement.calls == ["begin"]


def test_the_transactional_id_is_stable_per_service_and_instance() -> None:
    settings = load(CommonSettings, {"LABELLOOP_TOPIC_PREFIX": "prod", "LABELLOOP_INSTANCE_ID": "pod-1"})
    assert settings.transactional_id("routing") == "prod.routing.pod-1"
    off = load(CommonSettings, {"LABELLOOP_KAFKA_TRANSACTIONS": "false"})
    assert off.transactional_id("routing") is None
