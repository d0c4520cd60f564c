"""The cascade's decisions, without servers: which rows reach the encoder stage, how the two
stages' answers combine (in process and in Triton's model.py, loaded as the backend loads it), and
what the inference handler emits for them (fakes stand in for Triton, Redis and the trained stages)."""

from __future__ import annotations

import json
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from labelloop.core import encoder_runtime, model_repository
from labelloop.core.stream import Batch, Event
from labelloop.core.topics import ITEMS, PREDICTIONS
from labelloop.core.triton_client import Answer
from labelloop.inference.predictor import Predictor
from labelloop.retraining.cascade import CascadeModel
from labelloop.retraining.encoder import MinilmModel
from labelloop.retraining.tfidf import TfidfFamily
from labelloop.v1 import common_pb2, events_pb2


class FixedStage:
    """A stage answering fixed rows per text, recording the texts it was asked about."""

    def __init__(self, rows: dict[str, list[float]]) -> None:
        self.rows = rows
        self.asked: list[str] = []

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self.asked.extend(texts)
        return np.array([self.rows[t] for t in texts], dtype=np.float64)


def test_only_rows_below_the_bar_reach_the_encoder_stage() -> None:
    fast = FixedStage({"sure": [0.95, 0.05], "unsure": [0.6, 0.4], "at bar": [0.9, 0.1]})
    encoder = FixedStage({"unsure": [0.1, 0.9]})
    model = CascadeModel(fast=fast, encoder=encoder, bar=0.9, params={})  # type: ignore[arg-type]

    probs = model.predict_proba(["sure", "unsure", "at bar"])

    assert encoder.asked == ["unsure"]
    # below the bar, the mean of both stages: (0.6 + 0.1) / 2, (0.4 + 0.9) / 2
    np.testing.assert_allclose(probs, [[0.95, 0.05], [0.35, 0.65], [0.9, 0.1]])
    replacing = CascadeModel(fast=fast, encoder=encoder, bar=0.9, params={}, combine="replace")  # type: ignore[arg-type]
    np.testing.assert_allclose(replacing.predict_proba(["unsure"]), [[0.1, 0.9]])
    with pytest.raises(ValueError, match="unknown cascade combine 'max'"):
        CascadeModel(fast=fast, encoder=encoder, bar=0.9, params={}, combine="max").predict_proba(["unsure"])  # type: ignore[arg-type]


class FakeCachedEncoder:
    """Stands in for the shared encoder: fixed 2-d embeddings per text."""

    encoder_id = "enc-1"
    encoder = types.SimpleNamespace(dim=2)

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def embed(self, texts: Sequence[str], store: object = None) -> np.ndarray:
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)


def test_the_served_version_answers_escalated_items_as_the_trained_model(
    tmp_path: Path, served_model_module: types.ModuleType
) -> None:
    texts = ["a fine goal", "a late goal", "shares fell", "shares rose", "the market"]
    fast = TfidfFamily().fit(texts[:4], ["sport", "sport", "business", "business"], ["business", "sport"])
    vectors = {t: [1.0 - i / 4, i / 4] for i, t in enumerate(texts)}
    head = encoder_runtime.LinearHead(
        np.array([[4.0, -4.0]]), np.array([0.5]), ["business", "sport"], ["business", "sport"]
    )
    encoder = MinilmModel(encoder=FakeCachedEncoder(vectors), head=head, params={})  # type: ignore[arg-type]
    model = CascadeModel(fast=fast, encoder=encoder, bar=0.9, params={})
    expected = model.predict_proba(texts)

    version_dir = model.write_version(tmp_path, "news", 1)
    meta = json.loads((version_dir / model_repository.LABELS_FILE).read_text())
    assert meta["metadata"]["combine"] == "mean"
    served_model_module.verify_artifacts(version_dir, meta)
    served = served_model_module.FAMILIES["cascade"](version_dir, meta)
    fast_probs = served.predict_proba(texts)
    escalated = served.escalate(fast_probs)
    assert escalated.all()  # five texts: TF-IDF is unsure of every one
    answered = served.predict_embedded(texts, encoder.encoder.embed(texts))
    np.testing.assert_allclose(answered, expected, rtol=1e-5)
    np.testing.assert_allclose(
        answered, (fast_probs + head.predict_proba(encoder.encoder.embed(texts))) / 2, rtol=1e-5
    )

    # A version of the cascade-replace family says so and serves the head's answer alone.
    replacing = CascadeModel(fast=fast, encoder=encoder, bar=0.9, params={}, combine="replace")
    replace_dir = replacing.write_version(tmp_path, "news", 2)
    replace_meta = json.loads((replace_dir / model_repository.LABELS_FILE).read_text())
    assert (replace_meta["family"], replace_meta["metadata"]["combine"]) == ("cascade", "replace")
    np.testing.assert_allclose(
        served_model_module.FAMILIES["cascade"](replace_dir, replace_meta).predict_embedded(
            texts, encoder.encoder.embed(texts)
        ),
        replacing.predict_proba(texts),
        rtol=1e-5,
    )

    # A version written before the stages were combined names no "combine": the head alone.
    del meta["metadata"]["combine"]
    older = served_model_module.FAMILIES["cascade"](version_dir, meta)
    np.testing.assert_allclose(
        older.predict_embedded(texts, encoder.encoder.embed(texts)),
        head.predict_proba(encoder.encoder.embed(texts)),
        rtol=1e-5,
    )


class FakeProjects:
    def __init__(self) -> None:
        self.project = common_pb2.Project()
        self.project.spec.project_id = "p"
        self.project.spec.model_name = "m"
        self.project.spec.labels.extend(["a", "b"])
        self.project.spec.modality = common_pb2.MODALITY_TEXT

    def get(self, project_id: str) -> common_pb2.Project:
        return self.project


class FakeClassifier:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def model_ready(self, model: str) -> bool:
        return True

    def predict(self, model: str, texts: Sequence[str], batch_size: int) -> Answer:
        return Answer(self.answer.probabilities.copy(), self.answer.model_version, self.answer.escalate)


class FakeEncoderStage:
    def __init__(self, probs: np.ndarray | None) -> None:
        self.probs = probs
        self.calls: list[tuple[str, int, list[str]]] = []

    def answer(self, model: str, version: int, texts: Sequence[str]) -> np.ndarray | None:
        self.calls.append((model, version, list(texts)))
        return self.probs


def _batch(texts: list[str]) -> Batch:
    events = []
    for i, text in enumerate(texts):
        item = events_pb2.ItemIngested(channel="grpc")
        item.item.item_id, item.item.project_id, item.item.content.text = f"i{i}", "p", text
        events.append(Event(ITEMS, item, None, 0, i, item.SerializeToString(), 0))
    return Batch(events)


def _run(answer: Answer, stage: FakeEncoderStage | None) -> list[events_pb2.Prediction]:
    predictor = Predictor(FakeProjects(), FakeClassifier(answer), 64, stage)  # type: ignore[arg-type]
    batch = _batch(["sure", "unsure", "also unsure"])
    predictor(batch)
    assert [topic for topic, _, _ in batch.outputs] == [PREDICTIONS] * 3
    return [events_pb2.Prediction.FromString(value) for _, _, value in batch.outputs]  # type: ignore[arg-type]


def _scores(prediction: events_pb2.Prediction) -> list[float]:
    return [round(s.probability, 3) for s in prediction.scores]


FAST = np.array([[0.97, 0.03], [0.6, 0.4], [0.55, 0.45]], dtype=np.float32)


def test_escalated_items_get_the_encoder_stage_answer_and_say_so() -> None:
    stage = FakeEncoderStage(np.array([[0.2, 0.8], [0.99, 0.01]], dtype=np.float32))
    predictions = _run(Answer(FAST, 4, np.array([False, True, True])), stage)

    assert stage.calls == [("m", 4, ["unsure", "also unsure"])]  # the same version, escalated only
    assert [p.answered_by for p in predictions] == [
        events_pb2.ANSWER_STAGE_FAST,
        events_pb2.ANSWER_STAGE_ENCODER,
        events_pb2.ANSWER_STAGE_ENCODER,
    ]
    assert [_scores(p) for p in predictions] == [[0.97, 0.03], [0.2, 0.8], [0.99, 0.01]]


def test_the_fast_answer_stands_when_the_encoder_stage_cannot_answer() -> None:
    predictions = _run(Answer(FAST, 4, np.array([False, True, False])), FakeEncoderStage(None))
    assert [p.answered_by for p in predictions] == [events_pb2.ANSWER_STAGE_FAST] * 3
    assert [_scores(p) for p in predictions] == [[0.97, 0.03], [0.6, 0.4], [0.55, 0.45]]


def test_a_model_without_a_cascade_never_calls_the_encoder_stage() -> None:
    stage = FakeEncoderStage(np.zeros((3, 2), dtype=np.float32))
    predictions = _run(Answer(FAST, 4, None), stage)
    assert stage.calls == []
    assert [p.answered_by for p in predictions] == [events_pb2.ANSWER_STAGE_UNSPECIFIED] * 3


def test_nothing_escalated_means_no_encoder_call() -> None:
    stage = FakeEncoderStage(np.zeros((0, 2), dtype=np.float32))
    predictions = _run(Answer(FAST, 4, np.array([False, False, False])), stage)
    assert stage.calls == []
    assert [p.answered_by for p in predictions] == [events_pb2.ANSWER_STAGE_FAST] * 3
