"""The cascade end to end, as processes against the real stack: retraining trains family
`cascade` from human labels and has Triton serve it and the shared encoder; inference answers
items with the fast stage and sends only the unsure ones to the encoder stage, each encoded once
(counted as raw predictions and raw embedding keys in Redis), also when items come back."""

from __future__ import annotations

import uuid

import pytest
import tritonclient.grpc as grpcclient
from running import RunningServices
from support import wait_until

from labelloop.core.label_log import replay
from labelloop.core.projects import ProjectStore
from labelloop.core.stream import EventProducer, ensure_topics, now_timestamp
from labelloop.core.topics import ITEMS, LABELS, PREDICTIONS, item_key
from labelloop.datasets import load
from labelloop.retraining.encoder import ENCODER_MODEL
from labelloop.retraining.registry import CHAMPION, Registry
from labelloop.v1 import common_pb2, events_pb2

ENV = {
    "LABELLOOP_FAMILIES": "cascade",
    "LABELLOOP_FIRST_MODEL_LABELS": "60",
    "LABELLOOP_RETRAIN_EVERY_LABELS": "100000",
    "LABELLOOP_CALIBRATION_FOLDS": "2",
    "LABELLOOP_ZERO_SHOT": "false",  # the first version must be the trained cascade (no prior)
}


@pytest.fixture(scope="module")
def news() -> list[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]  # texts no earlier run stored
    return [{**r, "text": f"{r['text'][:600]} [{tag}]"} for r in load("bbcnews", limit=100)]


def _item(project_id: str, r: dict[str, str], rescore: bool = False) -> events_pb2.ItemIngested:
    item = common_pb2.Item(item_id=r["id"], project_id=project_id, content=common_pb2.Content(text=r["text"]))
    ingested = events_pb2.ItemIngested(item=item, ingested_at=now_timestamp(), channel="test")
    if rescore:
        ingested.rescore.requested_at.GetCurrentTime()
    else:
        ingested.arrival.SetInParent()
    return ingested


def _embedding_keys(services: RunningServices) -> int:
    return len(list(services.redis.scan_iter(match=f"{services.redis_prefix}:embedding:*", count=1000)))


def test_unsure_items_get_the_encoder_stage_and_each_is_encoded_once(
    stack, tmp_path, topic_prefix, redis_prefix, news
) -> None:
    services = RunningServices(stack, tmp_path, topic_prefix, redis_prefix, extra_env=ENV)
    ensure_topics(stack.bootstrap_servers, topic_prefix)
    project_id = f"cascade-{uuid.uuid4().hex[:8]}"
    labels = sorted({r["label"] for r in news})
    ProjectStore(services.redis, redis_prefix).create(
        common_pb2.ProjectSpec(
            project_id=project_id,
            modality=common_pb2.MODALITY_TEXT,
            labels=labels,
            target_precision=0.9,
            model_name=f"m-{project_id}",
        )
    )
    producer = EventProducer(stack.bootstrap_servers, topic_prefix, "test")
    try:
        services.start(["retraining", "inference"])
        for r in news[:60]:
            producer.send(
                LABELS,
                item_key(project_id, r["id"]),
                events_pb2.LabelFinalized(
                    ingested=_item(project_id, r),
                    labels=[r["label"]],
                    source=common_pb2.LABEL_SOURCE_HUMAN,
                    confidence=1.0,
                    annotators=["scripted"],
                    finalized_at=now_timestamp(),
                ),
            )
        producer.flush()
        registry = Registry(stack.mlflow_uri, topic_prefix)
        champion = wait_until(
            lambda: registry.by_alias(project_id, CHAMPION), 300, interval=0.5, message="no cascade served"
        )
        assert champion.tags["family"] == "cascade"
        trained = _embedding_keys(services)
        assert trained == 60  # every labeled text encoded once by training, none twice

        fresh = news[60:100]
        for r in fresh:
            producer.send(ITEMS, item_key(project_id, r["id"]), _item(project_id, r))
        producer.flush()

        def predictions() -> list[events_pb2.Prediction]:
            return [
                p
                for p in replay(stack.bootstrap_servers, topic_prefix, PREDICTIONS, project_id=project_id)
                if p.model_version
            ]

        first = wait_until(lambda: (p := predictions()) and len(p) >= 40 and p, 300, interval=0.5)
        assert len(first) == 40
        stages = {p.ingested.item.item_id: p.answered_by for p in first}
        escalated = sum(s == events_pb2.ANSWER_STAGE_ENCODER for s in stages.values())
        assert set(stages.values()) <= {events_pb2.ANSWER_STAGE_FAST, events_pb2.ANSWER_STAGE_ENCODER}
        assert escalated > 0
        assert _embedding_keys(services) == trained + escalated  # one embedding per escalated item

        # The same items come back (a rescore): the same stages, nothing encoded again.
        for r in fresh:
            producer.send(ITEMS, item_key(project_id, r["id"]), _item(project_id, r, rescore=True))
        producer.flush()
        both = wait_until(lambda: (p := predictions()) and len(p) >= 80 and p, 300, interval=0.5)
        assert len(both) == 80
        again = [p for p in both if p.ingested.HasField("rescore")]
        assert {p.ingested.item.item_id: p.answered_by for p in again} == stages
        assert _embedding_keys(services) == trained + escalated
    finally:
        producer.close()
        keys = list(services.redis.scan_iter(match=f"{redis_prefix}:embedding:*"))
        if keys:
            services.redis.delete(*keys)
        services.stop()
        triton = grpcclient.InferenceServerClient(stack.triton_grpc_url)
        try:
            for name in (f"m-{project_id}", ENCODER_MODEL):
                triton.unload_model(name)
        finally:
            triton.close()
