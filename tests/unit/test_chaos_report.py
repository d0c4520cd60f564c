"""What the chaos run reports of the raw labels topic: lost items and items with more than one
final-label record, with what each record said (so a duplicate can be traced to its source)."""

from __future__ import annotations

from types import SimpleNamespace

from labelloop.bench import loop
from labelloop.v1 import common_pb2, events_pb2


def record(item_id: str, source: int, label: str, version: int = 0) -> events_pb2.LabelFinalized:
    out = events_pb2.LabelFinalized(
        labels=[label], source=source, model_version=version, annotators=["ann-1"]
    )
    out.ingested.item.item_id = item_id
    out.ingested.item.project_id = "p"
    out.finalized_at.FromMilliseconds(1_000)
    return out


def test_the_chaos_report_names_each_record_of_a_duplicated_item(monkeypatch) -> None:
    # Before, describing a duplicate raised AttributeError (LabelSource is in common_pb2), so the
    # one chaos run that found two final labels for an item reported nothing about them.
    records = {
        "a": [record("a", common_pb2.LABEL_SOURCE_HUMAN, "spam")],
        "b": [
            record("b", common_pb2.LABEL_SOURCE_HUMAN, "ham"),
            record("b", common_pb2.LABEL_SOURCE_HUMAN, "ham"),
        ],
    }
    monkeypatch.setattr(loop, "label_records", lambda *args, **kwargs: records)
    chaos = SimpleNamespace(results=lambda: [{"fault": "kill:human_tasks"}], not_injected=lambda: [])
    config = SimpleNamespace(kafka_bootstrap="unused", topic_prefix="t")

    report = loop._chaos_report(config, "p", ["a", "b", "c"], chaos)  # type: ignore[arg-type]

    assert (report["lost"], report["duplicates"]) == (1, 1)
    assert [r["source"] for r in report["duplicated_items"]["b"]] == ["LABEL_SOURCE_HUMAN"] * 2
    assert report["duplicated_items"]["b"][0]["labels"] == ["ham"]
    assert report["duplicated_items"]["b"][0]["finalized_ms"] == 1_000
    assert report["faults"] == [{"fault": "kill:human_tasks"}]
