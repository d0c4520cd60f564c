"""Ingest's dead-letter count for GetProjectStatus: one reader kept open across calls (a status
poll must not open a Kafka connection per call), replaced after an error, closed at shutdown."""

from __future__ import annotations

import pytest

from labelloop.core.errors import DependencyUnavailable
from labelloop.ingest import __main__ as ingest_main


class FakeReader:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_count_reuses_one_reader_replaces_it_after_an_error_and_closes_it(monkeypatch) -> None:
    made: list[FakeReader] = []
    marks = [
        {0: (2, 7), 1: (0, 3)},
        {0: (2, 9), 1: (0, 3)},
        DependencyUnavailable("kafka", "down"),
        {0: (0, 1)},
    ]
    seen: list[tuple[FakeReader, str]] = []

    def reader(bootstrap: str, client_id: str) -> FakeReader:
        assert bootstrap == "broker:9092"
        made.append(FakeReader())
        return made[-1]

    def watermarks(consumer: FakeReader, topic: str):
        seen.append((consumer, topic))
        answer = marks.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(ingest_main.kafka_clients, "reader", reader)
    monkeypatch.setattr(ingest_main.kafka_clients, "watermarks", watermarks)
    count = ingest_main.DeadLetterCounter("broker:9092", "p")

    assert (count(), count()) == (8, 10)
    assert len(made) == 1 and not made[0].closed
    assert {topic for _, topic in seen} == {"p.dead-letters"}
    with pytest.raises(DependencyUnavailable):
        count()
    assert made[0].closed, "a reader that failed is closed"
    assert count() == 1
    assert len(made) == 2 and seen[-1][0] is made[1]
    count.close()
    assert made[1].closed
    count.close()  # twice is harmless


def test_a_call_that_finds_another_waiting_on_kafka_fails_as_unavailable_instead_of_queueing(
    monkeypatch,
) -> None:
    monkeypatch.setattr(ingest_main.kafka_clients, "reader", lambda *_a: FakeReader())
    monkeypatch.setattr(ingest_main.kafka_clients, "watermarks", lambda *_a: {0: (0, 4)})
    count = ingest_main.DeadLetterCounter("broker:9092", "p", busy_timeout_s=0.05)
    # another call is waiting on Kafka (it holds the reader)
    with count._lock, pytest.raises(DependencyUnavailable, match="another call waited on Kafka"):
        count()
    assert count() == 4
