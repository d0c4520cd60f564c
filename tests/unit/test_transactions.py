"""How a consume loop's transactional producer treats each kind of transaction error (librdkafka
classifies them: retriable, abortable, fatal), with a fake client in place of librdkafka's."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import KafkaError, KafkaException

from labelloop.core.errors import DependencyUnavailable
from labelloop.core.settings import CommonSettings, load
from labelloop.core.stream import EventProducer, TransactionFailed


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


def test_a_fenced_producer_stops_the_loop() -> None:
    client = FakeTransactions(KafkaError(KafkaError._FENCED, "another instance", fatal=True))
    with pytest.raises(TransactionFailed, match="another instance"):
        producer(client).commit([], "group")
    assert client.calls == ["commit"], "no offsets: nothing sent to the transaction"


def test_the_transactional_id_is_stable_per_service_and_instance() -> None:
    settings = load(CommonSettings, {"LABELLOOP_TOPIC_PREFIX": "prod", "LABELLOOP_INSTANCE_ID": "pod-1"})
    assert settings.transactional_id("routing") == "prod.routing.pod-1"
    off = load(CommonSettings, {"LABELLOOP_KAFKA_TRANSACTIONS": "false"})
    assert off.transactional_id("routing") is None
