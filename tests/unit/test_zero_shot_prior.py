"""The zero-shot prior (retraining/zero_shot.py) without servers: the label texts, the prototype
head against a softmax computed by hand, the served version as Triton's model.py loads it, the
scan that offers priors, and the trigger counting from the prior's 0 labels."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest

from labelloop.core import model_repository
from labelloop.core.thresholds import Threshold
from labelloop.retraining.triggers import RetrainTrigger, TriggerPolicy, TriggerReason
from labelloop.retraining.zero_shot import (
    BAR,
    PriorScan,
    ZeroShotPrior,
    is_prior,
    label_text,
    prototype_head,
)
from labelloop.routing.decisions import PRIOR_ROUNDS, decide, margin_priority, prior_priority
from labelloop.v1 import common_pb2, events_pb2


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("name", "description", "expected"),
    [
        ("sport", "", "sport"),
        ("comp.sys.mac.hardware", "", "comp sys mac hardware"),
        ("talk.politics_guns", "", "talk politics guns"),
        ("sci-fi", "  films about  space ", "sci fi: films about space"),
        ("alt.atheism", "religion and\nits critics", "alt atheism: religion and its critics"),
        ("spam", "   ", "spam"),
    ],
)
def test_label_text(name: str, description: str, expected: str) -> None:
    assert label_text(name, description) == expected


def test_prototype_head_is_the_softmax_of_cosines_over_temperature() -> None:
    # Three label directions (not unit length: the head normalizes them) and two unit items.
    labels = ["a", "b", "c"]
    raw = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 0.0]])
    items = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]])
    head = prototype_head(raw, labels, temperature=0.1)

    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    expected = softmax(items @ unit.T / 0.1)
    np.testing.assert_allclose(head.predict_proba(items), expected, rtol=1e-12)
    # By hand for the first item: cosines 1, 0, 1/sqrt(2) at T = 0.1.
    by_hand = np.exp([10.0, 0.0, 10 / np.sqrt(2)])
    np.testing.assert_allclose(head.predict_proba(items)[0], by_hand / by_hand.sum(), rtol=1e-12)
    np.testing.assert_array_equal(head.intercept, np.zeros(3))


def test_prototype_head_of_two_labels_uses_the_binary_form_with_the_same_answer() -> None:
    raw = np.array([[1.0, 0.0], [0.0, 1.0]])
    items = np.array([[1.0, 0.0], [np.sqrt(0.5), np.sqrt(0.5)], [0.28, 0.96]])
    head = prototype_head(raw, ["ham", "spam"], temperature=0.05)
    assert head.coef.shape == (1, 2)
    np.testing.assert_allclose(head.predict_proba(items), softmax(items @ raw.T / 0.05), rtol=1e-9)
    np.testing.assert_allclose(head.predict_proba(items)[1], [0.5, 0.5])


@pytest.mark.parametrize(
    ("rows", "labels", "temperature"),
    [
        (np.ones((2, 3)), ["a", "b", "c"], 0.05),  # rows do not match labels
        (np.array([[1.0, 0.0], [0.0, 0.0]]), ["a", "b"], 0.05),  # a zero row
        (np.eye(2), ["a", "b"], 0.0),  # no temperature
    ],
)
def test_prototype_head_refuses_bad_input(rows: np.ndarray, labels: list[str], temperature: float) -> None:
    with pytest.raises(ValueError):
        prototype_head(rows, labels, temperature)


class FakeEncoder:
    """Fixed unit embeddings per text; records what it was asked."""

    def __init__(self, rows: dict[str, list[float]]) -> None:
        self.rows = {k: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for k, v in rows.items()}
        self.asked: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.asked.extend(texts)
        return np.stack([self.rows[t] for t in texts])


def _prior() -> tuple[ZeroShotPrior, FakeEncoder]:
    encoder = FakeEncoder(
        {
            "sport": [1, 0, 0],
            "business: companies and markets": [0, 1, 0],
            "tech": [0, 0, 1],
            "goal in the final": [0.9, 0.1, 0.1],
            "shares fell": [0.1, 0.8, 0.3],
        }
    )
    return ZeroShotPrior(encoder, "enc-1", 3, temperature=0.05), encoder


def test_the_prior_embeds_the_label_texts_and_answers_with_their_prototypes() -> None:
    prior, encoder = _prior()
    model = prior.build(["sport", "business", "tech"], {"business": "companies and markets"})
    assert encoder.asked == ["sport", "business: companies and markets", "tech"]
    assert model.params["described_labels"] == 1
    probs = model.predict_proba(["goal in the final", "shares fell"])
    items = encoder(["goal in the final", "shares fell"]).astype(np.float64)
    np.testing.assert_allclose(probs, softmax(items @ np.eye(3) / 0.05), rtol=1e-6)
    assert probs.argmax(axis=1).tolist() == [0, 1]
    assert is_prior(model.family) and not is_prior("cascade") and not is_prior(None)


def test_the_written_version_serves_as_a_cascade_that_escalates_everything(
    tmp_path: Path, served_model_module: types.ModuleType
) -> None:
    prior, encoder = _prior()
    model = prior.build(["sport", "business", "tech"], {"business": "companies and markets"})
    version_dir = model.write_version(tmp_path, "news", 1)

    meta = json.loads((version_dir / model_repository.LABELS_FILE).read_text())
    assert meta["family"] == "cascade"
    assert meta["metadata"]["prior"] == "zero-shot" and meta["metadata"]["bar"] == BAR > 1
    assert meta["metadata"]["encoder_id"] == "enc-1"
    served_model_module.verify_artifacts(version_dir, meta)
    served = served_model_module.FAMILIES[meta["family"]](version_dir, meta)

    texts = ["goal in the final", "shares fell"]
    fast = served.predict_proba(texts)
    np.testing.assert_allclose(fast, np.full((2, 3), 1 / 3), rtol=1e-6)
    assert served.escalate(fast).tolist() == [True, True]
    answered = served.predict_embedded(texts, encoder(texts))
    np.testing.assert_allclose(answered, model.predict_proba(texts), rtol=1e-5)


class FakeProjects:
    def __init__(self) -> None:
        self.projects: list[common_pb2.Project] = []
        self.lists = 0

    def add(self, pid: str, modality: int = common_pb2.MODALITY_TEXT) -> None:
        self.projects.append(
            common_pb2.Project(spec=common_pb2.ProjectSpec(project_id=pid, modality=modality))
        )  # type: ignore[arg-type]

    def list(self) -> list[common_pb2.Project]:
        self.lists += 1
        return list(self.projects)


def test_the_scan_offers_each_text_project_once_and_a_failed_one_after_the_backoff() -> None:
    now = [100.0]
    scan = PriorScan(retry_s=30.0, every_s=2.0, clock=lambda: now[0])
    projects = FakeProjects()
    projects.add("news")
    projects.add("shoes", common_pb2.MODALITY_IMAGE)
    assert scan.due(projects) == ["news"]  # type: ignore[arg-type]
    projects.add("tweets")
    assert scan.due(projects) == []  # type: ignore[arg-type]  # the list is read at most every 2 s
    assert projects.lists == 1
    now[0] += 2.0
    assert scan.due(projects) == ["tweets"]  # type: ignore[arg-type]
    scan.failed("tweets")
    now[0] += 2.0
    assert scan.due(projects) == []  # type: ignore[arg-type]
    now[0] += 30.0
    assert scan.due(projects) == ["tweets"]  # type: ignore[arg-type]
    now[0] += 2.0
    assert scan.due(projects) == []  # type: ignore[arg-type]


def test_the_trigger_counts_from_the_priors_zero_labels() -> None:
    policy = TriggerPolicy(first_model_labels=50, retrain_every_labels=25)
    trigger = RetrainTrigger(policy, clock=lambda: 0.0)
    trigger.model_served(0)
    assert trigger.has_model
    trigger.record_labels(["a"] * 12 + ["b"] * 12)
    assert trigger.due() is None
    trigger.record_labels(["b"])
    assert trigger.due() is TriggerReason.NEW_LABELS  # after 25, not at the cold start's 50
    # The same as a restart finds it: the prior's champion tag human_labels = 0.
    restarted = RetrainTrigger(policy, clock=lambda: 0.0, labels_in_model=0)
    restarted.record_labels(["a"] * 12 + ["b"] * 13)
    assert restarted.due() is TriggerReason.NEW_LABELS


def test_the_trigger_ignores_a_prior_once_it_has_a_model() -> None:
    trigger = RetrainTrigger(TriggerPolicy(retrain_every_labels=25), clock=lambda: 0.0, labels_in_model=40)
    trigger.model_served(0)
    trigger.record_labels(["a", "b"] * 30)  # 40 replayed into the model, 20 new
    assert trigger.new_labels == 20 and trigger.due() is None


def _prediction(probs: list[float]) -> events_pb2.Prediction:
    p = events_pb2.Prediction()
    p.ingested.item.item_id = "1"
    for label, prob in zip("abc", probs, strict=True):
        p.scores.add(label=label, probability=prob)
    return p


PROJECT = common_pb2.Project(spec=common_pb2.ProjectSpec(project_id="p", labels=["a", "b", "c"]))


def test_the_prior_orders_people_by_class_rounds_then_confidence() -> None:
    # Every item of rank 0 (first of its class) before any of rank 1, confident first within a rank.
    ranked = sorted(
        [(r, c) for r in (0, 1, 2) for c in (0.34, 0.6, 0.99)],
        key=lambda rc: -prior_priority(*rc),
    )
    assert [r for r, _ in ranked[:3]] == [0, 0, 0] and [r for r, _ in ranked[3:6]] == [1, 1, 1]
    assert [c for _, c in ranked[:3]] == [0.99, 0.6, 0.34]
    assert prior_priority(0, 1.0) == 1.0 and prior_priority(1, 0.0) == 0.25


def test_after_a_few_rounds_the_priors_items_come_in_arrival_order() -> None:
    """The rounds make the first model see every class; past PRIOR_ROUNDS of a class its items
    share one priority (the queue then serves them in arrival order), below every round's item:
    neither balanced by class nor the prior's most typical first."""
    last_round = [prior_priority(PRIOR_ROUNDS - 1, c) for c in (0.0, 0.5, 1.0)]
    later = {prior_priority(r, c) for r in (PRIOR_ROUNDS, PRIOR_ROUNDS + 1, 50) for c in (0.0, 0.4, 0.99)}
    assert len(later) == 1
    assert max(later) < min(last_round)
    assert min(last_round) == pytest.approx(0.5 / PRIOR_ROUNDS)


def test_routing_uses_the_prior_order_only_under_the_priors_threshold() -> None:
    probs = [0.7, 0.2, 0.1]
    prior = Threshold(prior=True)
    under_prior = decide(_prediction(probs), PROJECT, prior, "s", class_rank=2)
    assert under_prior.task_reason == events_pb2.TASK_REASON_UNCERTAIN
    assert under_prior.priority == pytest.approx(prior_priority(2, 0.7))
    trained = decide(_prediction(probs), PROJECT, Threshold(), "s", class_rank=2)
    assert trained.priority == pytest.approx(margin_priority(probs))
    assert Threshold.from_record(prior.to_record()) == prior
    assert "prior" not in Threshold().to_record()  # records of trained models keep their shape


class FakeRanks:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, int, str], int] = {}

    def next(self, project_id: str, version: int, label: str) -> int:
        key = (project_id, version, label)
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key] - 1


class PriorThresholds:
    def __init__(self, prior: bool) -> None:
        self.prior = prior

    def get(self, project_id: str) -> Threshold:
        return Threshold(model_version=3, prior=self.prior)

    def invalidate(self, project_id: str) -> None:
        pass


class AllToPeople:
    def claim(self, claims, emit, relabel=None, emitted=None):  # type: ignore[no-untyped-def]
        from labelloop.core.final_labels import Outcome

        return [Outcome.NEW for _ in claims]


def _routed_priorities(prior: bool, probs: list[list[float]]) -> list[float]:
    from labelloop.core.stream import Batch, Event
    from labelloop.core.topics import PREDICTIONS
    from labelloop.routing.router import Router

    events = []
    for n, row in enumerate(probs):
        p = _prediction(row)
        p.ingested.item.item_id = f"i{n}"
        p.ingested.item.project_id = "p"
        p.model_version = 3
        events.append(Event(PREDICTIONS, p, f"p/i{n}".encode(), 0, n, b"", 0))
    batch = Batch(events=events)

    class Projects:
        def get(self, project_id: str) -> common_pb2.Project:
            return PROJECT

    Router(Projects(), PriorThresholds(prior), AllToPeople(), "s", prior_ranks=FakeRanks())(batch)  # type: ignore[arg-type]
    return [message.priority for _topic, _key, message in batch.outputs]


def test_the_router_ranks_the_priors_items_per_predicted_class() -> None:
    probs = [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1], [0.9, 0.05, 0.05]]
    assert _routed_priorities(True, probs) == pytest.approx(
        [prior_priority(0, 0.6), prior_priority(1, 0.5), prior_priority(0, 0.7), prior_priority(2, 0.9)]
    )
    assert _routed_priorities(False, probs) == pytest.approx([margin_priority(p) for p in probs])


class DictStore:
    """The embedding store's contract (embed: stored rows read, missing ones encoded and stored)."""

    dim = 2

    def __init__(self) -> None:
        self.rows: dict[str, np.ndarray] = {}

    def embed(self, texts, encode):  # type: ignore[no-untyped-def]
        missing = [t for t in dict.fromkeys(texts) if t not in self.rows]
        if missing:
            for text, row in zip(missing, encode(missing), strict=True):
                self.rows[text] = row
        return np.stack([self.rows[t] for t in texts])


class FlakyEncoder:
    """Encodes until `fail_after` requests, then times out once."""

    def __init__(self, fail_after: int) -> None:
        self.fail_after = fail_after
        self.encoded: list[str] = []

    def embed(self, model: str, texts, batch_size: int) -> np.ndarray:  # type: ignore[no-untyped-def]
        from labelloop.core.errors import DependencyUnavailable

        if self.fail_after == 0:
            self.fail_after = -1
            raise DependencyUnavailable("triton", "Deadline Exceeded")
        self.fail_after -= 1
        self.encoded.extend(texts)
        return np.ones((len(texts), 2), dtype=np.float32)


def test_a_batch_that_outlasts_a_timeout_progresses_on_redelivery() -> None:
    # Every item escalates under the prior: a big batch is encoded and stored a group at a time,
    # so a timeout midway keeps what was stored and the redelivery encodes only the rest.
    from labelloop.core.errors import DependencyUnavailable
    from labelloop.inference.cascade import GROUP_CHUNKS, EncoderStage

    texts = [f"t{i}" for i in range(10)]
    encoder = FlakyEncoder(fail_after=1)
    stage = EncoderStage(encoder, None, "p", "enc", batch_size=2)  # type: ignore[arg-type]
    store = DictStore()
    with pytest.raises(DependencyUnavailable):
        stage._embeddings(store, texts)  # type: ignore[arg-type]
    assert encoder.encoded == texts[: 2 * GROUP_CHUNKS]
    assert stage._embeddings(store, texts).shape == (10, 2)  # type: ignore[arg-type]
    assert sorted(encoder.encoded) == sorted(texts)  # each text encoded once
