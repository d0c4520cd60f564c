"""Cold start from label names, as processes against the real stack (issue 10, item 4): a new text
project serves the zero-shot prior before any human label; its predictions route every item to
people as UNCERTAIN in the prior's class order; people's answers loosen its threshold until it
auto-labels; the first trained model replaces it without being compared with it."""

from __future__ import annotations

import uuid

import grpc
import pytest
import tritonclient.grpc as grpcclient
from running import RunningServices
from support import wait_until

from labelloop.core.label_log import replay
from labelloop.core.stream import EventProducer, ensure_topics, now_timestamp
from labelloop.core.thresholds import NOTHING, ThresholdStore
from labelloop.core.topics import ANNOTATIONS, ITEMS, LABELS, MODELS, PREDICTIONS, TASKS, item_key
from labelloop.datasets import load
from labelloop.retraining.encoder import ENCODER_MODEL
from labelloop.retraining.registry import CHAMPION, Registry
from labelloop.v1 import admin_pb2, common_pb2, events_pb2

ENV = {
    "LABELLOOP_FAMILIES": "cascade",
    "LABELLOOP_RETRAIN_EVERY_LABELS": "30",
    "LABELLOOP_CALIBRATION_FOLDS": "2",
    "LABELLOOP_LABEL_CHECK_MIN_PER_CLASS": "0",
}
FIRST, LATER, LABELED = 500, 100, 30


@pytest.fixture(scope="module")
def news() -> list[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]  # texts no earlier run stored
    return [
        {**r, "text": f"{r['text'][:600]} [{tag}]"} for r in load("bbcnews", limit=FIRST + LATER + LABELED)
    ]


def _ingested(project_id: str, r: dict[str, str]) -> events_pb2.ItemIngested:
    item = common_pb2.Item(item_id=r["id"], project_id=project_id, content=common_pb2.Content(text=r["text"]))
    ingested = events_pb2.ItemIngested(item=item, ingested_at=now_timestamp(), channel="test")
    ingested.arrival.SetInParent()
    return ingested


def test_a_new_project_serves_the_prior_until_its_first_trained_model(
    stack, tmp_path, topic_prefix, redis_prefix, news
) -> None:
    services = RunningServices(stack, tmp_path, topic_prefix, redis_prefix, extra_env=ENV)
    ensure_topics(stack.bootstrap_servers, topic_prefix)
    project_id = f"cold-{uuid.uuid4().hex[:8]}"
    model_name = f"m-{project_id}"
    labels = sorted({r["label"] for r in news})
    truth = {r["id"]: r["label"] for r in news}
    producer = EventProducer(stack.bootstrap_servers, topic_prefix, "test")
    registry = Registry(stack.mlflow_uri, topic_prefix)
    thresholds = ThresholdStore(services.redis, redis_prefix, cache_s=0.0)
    try:
        services.start(["ingest", "retraining", "inference", "routing"])
        # The spec's label descriptions go through the admin API, checked.
        with pytest.raises(grpc.RpcError) as bad:
            services.create_project(project_id, labels, label_descriptions={"weather": "rain"})
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "spec.label_descriptions['weather']" in (bad.value.details() or "")
        services.create_project(
            project_id,
            labels,
            target_precision=0.9,
            model_name=model_name,
            label_descriptions={"tech": "technology, computers, the internet and gadgets"},
        )
        spec = (
            services.admin().GetProject(admin_pb2.GetProjectRequest(project_id=project_id), timeout=10).spec
        )
        assert dict(spec.label_descriptions) == {"tech": "technology, computers, the internet and gadgets"}

        # Before any human label: the prior serves, admitting nothing, exploring nothing.
        prior = wait_until(
            lambda: registry.by_alias(project_id, CHAMPION), 300, interval=0.5, message="no prior served"
        )
        assert prior.tags["family"] == "zero-shot" and prior.tags["human_labels"] == "0"
        served = wait_until(lambda: (t := thresholds.get(project_id)).model_version > 0 and t, 60)
        assert served.prior and served.threshold == NOTHING and served.exploration_rate == 0.0
        assert served.model_version == prior.triton_version

        for r in news[:FIRST]:
            producer.send(ITEMS, item_key(project_id, r["id"]), _ingested(project_id, r))
        producer.flush()

        def predictions() -> dict[str, events_pb2.Prediction]:
            return {
                p.ingested.item.item_id: p
                for p in replay(stack.bootstrap_servers, topic_prefix, PREDICTIONS, project_id=project_id)
                if not p.ingested.HasField("rescore")
            }

        first = wait_until(lambda: (p := predictions()) and len(p) >= FIRST and p, 600, interval=1.0)
        assert len(first) == FIRST
        assert {p.model_version for p in first.values()} == {prior.triton_version}
        assert {p.answered_by for p in first.values()} == {events_pb2.ANSWER_STAGE_ENCODER}
        top = {i: max(p.scores, key=lambda s: s.probability) for i, p in first.items()}
        accuracy = sum(top[i].label == truth[i] for i in first) / FIRST
        assert accuracy > 0.6, f"the prior's accuracy on BBC News label names is {accuracy:.3f}"

        # Routing sends every item to people as UNCERTAIN, in the prior's class rounds: only the
        # first item of each class the prior predicts has a priority above 0.5.
        tasks = wait_until(
            lambda: (
                (
                    t := [
                        x
                        for x in replay(stack.bootstrap_servers, topic_prefix, TASKS, project_id=project_id)
                        if x.HasField("enqueue")
                    ]
                )
                and len(t) >= FIRST
                and t
            ),
            120,
            interval=0.5,
        )
        assert len(tasks) == FIRST
        assert {t.reason for t in tasks} == {events_pb2.TASK_REASON_UNCERTAIN}
        assert sum(t.priority > 0.5 for t in tasks) == len({s.label for s in top.values()})

        # People answer them (the consensus is the hidden label): the answers confirm the prior
        # above some confidence, and the lifecycle loosens its threshold.
        for i, p in first.items():
            producer.send(
                ANNOTATIONS,
                item_key(project_id, i),
                events_pb2.AnnotationSubmitted(
                    task_id=i,
                    item_id=i,
                    project_id=project_id,
                    annotator_id="scripted",
                    labels=[truth[i]],
                    annotated_at=now_timestamp(),
                    reason=events_pb2.TASK_REASON_UNCERTAIN,
                    answer_probability=1.0,
                    model_version=p.model_version,
                    predicted_label=top[i].label,
                    predicted_confidence=top[i].probability,
                    consensus_labels=[truth[i]],
                ),
            )
        producer.flush()
        loosened = wait_until(
            lambda: (t := thresholds.get(project_id)).threshold < 1.0 and t, 120, interval=0.5
        )
        assert loosened.prior and loosened.model_version == prior.triton_version
        moves = [
            e
            for e in replay(stack.bootstrap_servers, topic_prefix, MODELS)
            if e.project_id == project_id and e.kind == events_pb2.MODEL_EVENT_KIND_THRESHOLD_UPDATED
        ]
        assert moves, "no THRESHOLD_UPDATED event"

        # Confirmed, the prior auto-labels what it is sure of.
        for r in news[FIRST : FIRST + LATER]:
            producer.send(ITEMS, item_key(project_id, r["id"]), _ingested(project_id, r))
        producer.flush()
        later = {r["id"] for r in news[FIRST : FIRST + LATER]}
        auto = wait_until(
            lambda: [
                x
                for x in replay(stack.bootstrap_servers, topic_prefix, LABELS, project_id=project_id)
                if x.source == common_pb2.LABEL_SOURCE_MODEL and x.ingested.item.item_id in later
            ],
            300,
            interval=1.0,
            message="the confirmed prior auto-labeled nothing",
        )
        assert {x.model_version for x in auto} == {prior.triton_version}
        assert all(x.confidence >= loosened.threshold for x in auto)

        # The first trained model replaces it (never compared), after RETRAIN_EVERY_LABELS labels.
        for r in news[FIRST + LATER :]:
            producer.send(
                LABELS,
                item_key(project_id, r["id"]),
                events_pb2.LabelFinalized(
                    ingested=_ingested(project_id, r),
                    labels=[r["label"]],
                    source=common_pb2.LABEL_SOURCE_HUMAN,
                    confidence=1.0,
                    annotators=["scripted"],
                    finalized_at=now_timestamp(),
                ),
            )
        producer.flush()
        trained = wait_until(
            lambda: (c := registry.by_alias(project_id, CHAMPION)) and c.version != prior.version and c,
            300,
            interval=0.5,
            message="the first trained model did not replace the prior",
        )
        assert trained.tags["family"] == "cascade"
        assert trained.tags["reason"] == "replaces the zero-shot prior (never compared)"
        assert int(trained.tags["human_labels"]) >= LABELED
        assert registry.champion_history(project_id) == [prior.version, trained.version]
        after = wait_until(
            lambda: (t := thresholds.get(project_id)).model_version != prior.triton_version and t, 60
        )
        assert not after.prior
    finally:
        producer.close()
        keys = list(services.redis.scan_iter(match=f"{redis_prefix}:embedding:*"))
        if keys:
            services.redis.delete(*keys)
        services.stop()
        triton = grpcclient.InferenceServerClient(stack.triton_grpc_url)
        try:
            for name in (model_name, ENCODER_MODEL):
                triton.unload_model(name)
        finally:
            triton.close()
