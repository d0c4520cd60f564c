"""The retraining service (a real process against the real Kafka, Redis and MLflow) moves a
serving model's threshold from people's answers, both ways.

Each project starts with a miscalibrated threshold for its serving model version (what a
calibration on a biased sample leaves behind); the answers people give to that model's tasks
(consensus reached, with the model's confidence at routing time and the probability the task
was sent to people) are put on `annotations` as human-tasks writes them.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from running import RunningServices
from support import exact_match_precision, wait_until

from labelloop.core.label_log import replay
from labelloop.core.projects import ProjectStore
from labelloop.core.stream import EventProducer, ensure_topics, now_timestamp
from labelloop.core.thresholds import Threshold, ThresholdStore
from labelloop.core.topics import ANNOTATIONS, MODELS, item_key
from labelloop.v1 import common_pb2, events_pb2

LABELS = ["ham", "spam"]
MODEL_VERSION = 7


@pytest.fixture
def services(stack, tmp_path, topic_prefix, redis_prefix):
    running = RunningServices(stack, tmp_path, topic_prefix, redis_prefix)
    ensure_topics(stack.bootstrap_servers, topic_prefix)
    running.start(["retraining"])
    yield running
    running.stop()


def serving(
    services: RunningServices,
    target: float,
    threshold: Threshold,
    labels: list[str] = LABELS,
    multi: bool = False,
) -> tuple[str, ThresholdStore]:
    project_id = f"mv-{uuid.uuid4().hex[:8]}"
    ProjectStore(services.redis, services.redis_prefix).create(
        common_pb2.ProjectSpec(
            project_id=project_id,
            modality=common_pb2.MODALITY_TEXT,
            task_type=common_pb2.TASK_TYPE_MULTI_LABEL if multi else common_pb2.TASK_TYPE_SINGLE_LABEL,
            labels=labels,
            target_precision=target,
            audit_rate=0.1,
            model_name=f"m-{project_id}",
        )
    )
    store = ThresholdStore(services.redis, services.redis_prefix, cache_s=0)
    store.set(project_id, threshold)
    return project_id, store


def answer(
    project_id: str, i: int, confidence: float, correct: bool, probability: float
) -> events_pb2.AnnotationSubmitted:
    predicted = LABELS[i % 2]
    given = predicted if correct else LABELS[(i + 1) % 2]
    return events_pb2.AnnotationSubmitted(
        task_id=f"item-{i}",
        item_id=f"item-{i}",
        project_id=project_id,
        annotator_id="person",
        labels=[given],
        lease_id=f"lease-{i}",
        reason=events_pb2.TASK_REASON_AUDIT if probability < 1 else events_pb2.TASK_REASON_UNCERTAIN,
        answer_probability=probability,
        model_version=MODEL_VERSION,
        predicted_label=predicted,
        predicted_confidence=confidence,
        consensus_labels=[given],
        annotated_at=now_timestamp(),
    )


def send(stack, prefix: str, answers: list[events_pb2.AnnotationSubmitted]) -> None:
    producer = EventProducer(stack.bootstrap_servers, prefix, "test")
    try:
        for a in answers:
            producer.send(ANNOTATIONS, item_key(a.project_id, a.item_id), a)
        producer.flush()
    finally:
        producer.close()


def updates(stack, prefix: str, project_id: str) -> list[events_pb2.ModelEvent]:
    return [
        e
        for e in replay(stack.bootstrap_servers, prefix, MODELS)
        if e.project_id == project_id and e.kind == events_pb2.MODEL_EVENT_KIND_THRESHOLD_UPDATED
    ]


def test_answers_tighten_a_threshold_that_admits_too_much(stack, services, topic_prefix):
    # Threshold 0.6 admits items that are right 75% of the time below 0.9 and always above it:
    # precision ~0.85 against a target of 0.95. People answer 10% of them (audits).
    project_id, store = serving(services, 0.95, Threshold(0.6, {"spam": 0.7}, MODEL_VERSION))
    rng = np.random.default_rng(1)
    confidences = rng.uniform(0.6, 1.0, 300)
    correct = (confidences >= 0.9) | (rng.random(300) < 0.75)
    send(
        stack,
        topic_prefix,
        [
            answer(project_id, i, c, ok, 0.1)
            for i, (c, ok) in enumerate(zip(confidences, correct, strict=True))
        ],
    )

    def settled() -> list[events_pb2.ModelEvent]:
        events = updates(stack, topic_prefix, project_id)
        served = store.get(project_id)
        return events if events and served and events[-1].threshold == pytest.approx(served.threshold) else []

    moved = wait_until(settled, 90, interval=0.5, message="no move")
    threshold = store.get(project_id)
    # Tightened from 0.6 toward where the items are right (at 0.9 and above); each answer is
    # judged against its own class's threshold, so the step is the one "spam" at 0.7 needs too.
    assert 0.75 <= threshold.threshold <= 0.95, threshold
    assert threshold.model_version == MODEL_VERSION
    # The class threshold moved by the same steps (the answers may arrive in more than one batch,
    # so more than one move), within [0, 1].
    expected, current = 0.7, 0.6
    for event in moved:
        expected = min(1.0, max(0.0, expected + event.threshold - current))
        current = event.threshold
    assert threshold.class_thresholds["spam"] == pytest.approx(expected)
    assert moved[-1].threshold == pytest.approx(threshold.threshold)
    assert "below the target" in moved[0].reason

    # What the moved thresholds admit, each item against its class's, is more precise than what
    # the first ones did (later batches may tighten further: the test stops at the first settle).
    def admitted_precision(served: Threshold) -> float:
        own = np.array([served.for_label(LABELS[i % 2]) for i in range(len(confidences))])
        return float(correct[confidences >= own].mean())

    first = Threshold(0.6, {"spam": 0.7}, MODEL_VERSION)
    assert admitted_precision(first) < 0.85
    assert admitted_precision(threshold) >= admitted_precision(first) + 0.05


def test_answers_loosen_a_threshold_far_stricter_than_the_target(stack, services, topic_prefix):
    # Threshold 0.99, but the model is right 99%+ of the time from 0.7 up: people did work the
    # model could have done. Below 0.99 every item went to people (probability 1).
    project_id, store = serving(services, 0.9, Threshold(0.99, {}, MODEL_VERSION))
    rng = np.random.default_rng(2)
    confidences = rng.uniform(0.5, 0.99, 400)
    correct = np.where(confidences >= 0.7, rng.random(400) < 0.995, rng.random(400) < 0.6)
    send(
        stack,
        topic_prefix,
        [
            answer(project_id, i, c, ok, 1.0)
            for i, (c, ok) in enumerate(zip(confidences, correct, strict=True))
        ],
    )

    moved = wait_until(lambda: updates(stack, topic_prefix, project_id), 90, interval=0.5, message="no move")
    threshold = store.get(project_id).threshold
    assert 0.55 <= threshold <= 0.8, threshold
    assert "meets the target" in moved[-1].reason
    assert correct[confidences >= threshold].mean() >= 0.9


def test_answers_of_another_model_version_move_nothing(stack, services, topic_prefix):
    project_id, store = serving(services, 0.95, Threshold(0.6, {}, MODEL_VERSION))
    stale = []
    for i in range(100):
        a = answer(project_id, i, 0.7, False, 0.1)
        a.model_version = MODEL_VERSION - 1  # tasks routed by the previous model
        stale.append(a)
    send(stack, topic_prefix, stale)
    # A marker the service handles after the stale ones (same partition: same key).
    marker = answer(project_id, 0, 0.99, True, 0.1)
    marker.item_id = "item-0"
    send(stack, topic_prefix, [marker])
    wait_until(
        lambda: services.redis.hexists(f"{services.redis_prefix}:answers:{project_id}", "item-0"),
        60,
        interval=0.5,
    )
    assert store.get(project_id).threshold == 0.6
    assert updates(stack, topic_prefix, project_id) == []


TAGS = ["news", "sport", "tech"]


def label_set_answer(
    project_id: str, i: int, probs: np.ndarray, truth: np.ndarray, probability: float
) -> events_pb2.AnnotationSubmitted:
    given = [t for t, on in zip(TAGS, truth, strict=True) if on]
    a = events_pb2.AnnotationSubmitted(
        task_id=f"item-{i}",
        item_id=f"item-{i}",
        project_id=project_id,
        annotator_id="person",
        labels=given,
        lease_id=f"lease-{i}",
        reason=events_pb2.TASK_REASON_AUDIT if probability < 1 else events_pb2.TASK_REASON_UNCERTAIN,
        answer_probability=probability,
        model_version=MODEL_VERSION,
        predicted_label=TAGS[int(np.argmax(probs))],
        predicted_confidence=float(np.max(probs)),
        consensus_labels=given,
        consensus_no_label=not given,
        annotated_at=now_timestamp(),
    )
    for tag, p in zip(TAGS, probs, strict=True):
        a.predicted_scores.add(label=tag, probability=float(p))
    return a


def settled(
    services: RunningServices, stack, prefix: str, project_id: str, store: ThresholdStore, answers: int
) -> list[events_pb2.ModelEvent]:
    """The pairs' moves once every answer is recorded and the last move is the one served."""
    key = f"{services.redis_prefix}:label_set_answers:{project_id}"
    wait_until(lambda: services.redis.hlen(key) == answers, 90, interval=0.5, message="answers not recorded")

    def last_served() -> list[events_pb2.ModelEvent]:
        events = updates(stack, prefix, project_id)
        upper = store.get(project_id).label_upper
        return events if events and dict(events[-1].label_upper_thresholds) == pytest.approx(upper) else []

    return wait_until(last_served, 60, interval=0.5, message="no move")


def exact_precision(served: Threshold, probs: np.ndarray, truth: np.ndarray) -> float:
    return exact_match_precision(served, probs, truth, TAGS)


def test_people_move_a_multi_label_projects_pairs_both_ways_on_exact_match(stack, services, topic_prefix):
    # Tighten: every pair (0.6, 0.4) admits items whose "tech" is wrong one time in three
    # between 0.6 and 0.8: exact-match precision about 0.83 against a target of 0.95.
    loose = Threshold(
        model_version=MODEL_VERSION,
        label_upper=dict.fromkeys(TAGS, 0.6),
        label_lower=dict.fromkeys(TAGS, 0.4),
    )
    project_id, store = serving(services, 0.95, loose, TAGS, multi=True)
    rng = np.random.default_rng(7)
    truth = rng.random((300, 3)) < 0.5
    probs = np.where(truth, rng.uniform(0.9, 1.0, (300, 3)), rng.uniform(0.0, 0.1, (300, 3)))
    probs[:, 2] = np.where(truth[:, 2], rng.uniform(0.6, 1.0, 300), rng.uniform(0.0, 0.4, 300))
    murky = (np.abs(probs[:, 2] - 0.5) < 0.3) & (np.arange(300) % 3 == 0)
    truth[murky, 2] = ~truth[murky, 2]  # people disagree with "tech" on these
    assert exact_precision(loose, probs, truth) < 0.9
    send(stack, topic_prefix, [label_set_answer(project_id, i, probs[i], truth[i], 0.1) for i in range(300)])

    moved = settled(services, stack, topic_prefix, project_id, store, 300)
    served = store.get(project_id)
    assert "below the target" in moved[0].reason
    assert dict(moved[-1].label_upper_thresholds) == pytest.approx(served.label_upper)
    step = served.label_upper["news"] - 0.6
    assert step > 0.05
    assert served.label_upper == pytest.approx(dict.fromkeys(TAGS, 0.6 + step))  # one step for every label
    assert served.label_lower == pytest.approx(dict.fromkeys(TAGS, 0.4 - step))
    assert exact_precision(served, probs, truth) >= 0.95

    # Loosen: pairs (0.97, 0.03) on a model that is always exactly right from 0.7 / 0.3 out.
    strict = Threshold(
        model_version=MODEL_VERSION,
        label_upper=dict.fromkeys(TAGS, 0.97),
        label_lower=dict.fromkeys(TAGS, 0.03),
    )
    project_id, store = serving(services, 0.9, strict, TAGS, multi=True)
    probs = rng.uniform(0.0, 1.0, (400, 3))
    truth = probs >= 0.5
    send(stack, topic_prefix, [label_set_answer(project_id, i, probs[i], truth[i], 1.0) for i in range(400)])

    moved = settled(services, stack, topic_prefix, project_id, store, 400)
    served = store.get(project_id)
    assert "meets the target" in moved[-1].reason
    for tag in TAGS:
        assert served.label_lower[tag] <= served.label_upper[tag] < 0.9
    assert served.model_version == MODEL_VERSION
    assert exact_precision(served, probs, truth) == 1.0
