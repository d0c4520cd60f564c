"""The LLM source's pure parts: which items it asks about (all / uncertain / none), and the
handler's votes on a plain Batch: one VoteCast per usable answer, none for failures, unknown
projects dead-lettered; its settings refuse a missing model and a bad mode, naming the variable."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from labelloop.core.errors import NotFound
from labelloop.core.settings import SettingsError, load
from labelloop.core.stream import Batch, Event
from labelloop.core.thresholds import Threshold
from labelloop.core.topics import PREDICTIONS, VOTES
from labelloop.llm_source.client import ANSWERED, TIMEOUT, LlmAnswer
from labelloop.llm_source.settings import LlmSourceSettings
from labelloop.llm_source.voter import LlmVoter, should_ask
from labelloop.v1 import common_pb2, events_pb2

LABELS = ["sports", "politics"]


def prediction(
    item_id: str, scores: list[float] | None, project: str = "p", text: str = "t"
) -> events_pb2.Prediction:
    out = events_pb2.Prediction(no_model=scores is None)
    out.ingested.item.item_id = item_id
    out.ingested.item.project_id = project
    out.ingested.item.content.text = text
    for label, probability in zip(LABELS, scores or [], strict=False):
        out.scores.add(label=label, probability=probability)
    return out


def test_which_items_are_asked_about() -> None:
    threshold = Threshold(threshold=0.9)
    sure, unsure, none = prediction("a", [0.95, 0.05]), prediction("b", [0.6, 0.4]), prediction("c", None)
    assert [should_ask("uncertain", p, threshold) for p in (sure, unsure, none)] == [False, True, True]
    assert [should_ask("all", p, threshold) for p in (sure, unsure, none)] == [True, True, True]
    assert [should_ask("none", p, threshold) for p in (sure, unsure, none)] == [False, False, False]
    assert should_ask("uncertain", sure, Threshold()), "a threshold that admits nothing: all uncertain"
    rescore = prediction("d", [0.6, 0.4])
    rescore.ingested.rescore.SetInParent()
    assert not should_ask("all", rescore, threshold), "an item is asked about once, not at every redeploy"


@dataclass
class Projects:
    def get(self, project_id: str) -> common_pb2.Project:
        if project_id != "p":
            raise NotFound(f"project {project_id!r} does not exist")
        return common_pb2.Project(spec=common_pb2.ProjectSpec(project_id="p", labels=LABELS))


@dataclass
class Thresholds:
    def get(self, project_id: str) -> Threshold:
        return Threshold(threshold=0.9)


class ScriptedLlm:
    def __init__(self, answers: dict[str, LlmAnswer]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def ask(self, project_id: str, labels: list[str], text: str) -> LlmAnswer:
        with self.lock:
            self.asked.append(text)
        return self.answers[text]


def event(message: events_pb2.Prediction, offset: int) -> Event:
    return Event(PREDICTIONS, message, b"k", 0, offset, message.SerializeToString(), 0)


def test_the_handler_votes_for_usable_answers_only() -> None:
    llm = ScriptedLlm(
        {
            "unsure": LlmAnswer(ANSWERED, "politics", 1),
            "no model": LlmAnswer(ANSWERED, "sports", 1),
            "slow": LlmAnswer(TIMEOUT, None, 4),
        }
    )
    voter = LlmVoter(Projects(), Thresholds(), llm, "uncertain", "llm:tiny", 4)  # type: ignore[arg-type]
    batch = Batch(
        [
            event(prediction("1", [0.6, 0.4], text="unsure"), 0),
            event(prediction("2", [0.99, 0.01], text="sure"), 1),
            event(prediction("3", None, text="no model"), 2),
            event(prediction("4", [0.5, 0.5], text="slow"), 3),
            event(prediction("5", None, project="gone", text="x"), 4),
        ]
    )
    voter(batch)
    voter.close()
    assert sorted(llm.asked) == ["no model", "slow", "unsure"]
    assert [(topic, key) for topic, key, _ in batch.outputs] == [(VOTES, "p/1"), (VOTES, "p/3")]
    votes = [message for _, _, message in batch.outputs]
    assert [(v.item_id, v.vote.source, v.vote.label) for v in votes] == [  # type: ignore[union-attr]
        ("1", "llm:tiny", "politics"),
        ("3", "llm:tiny", "sports"),
    ]
    # each vote carries the prediction it was asked about: routing routes the item again with it
    assert [v.prediction.ingested.item.item_id for v in votes] == ["1", "3"]  # type: ignore[union-attr]
    assert [(e.offset, p.error_type) for e, p in batch.poisoned] == [(4, "UnknownProject")]


def test_settings_name_what_is_wrong() -> None:
    with pytest.raises(SettingsError, match="LABELLOOP_LLM_MODEL is required"):
        load(LlmSourceSettings, {})
    with pytest.raises(
        SettingsError, match="LABELLOOP_LLM_ASK='sometimes': must be one of all, uncertain, none"
    ):
        load(LlmSourceSettings, {"LABELLOOP_LLM_ASK": "sometimes", "LABELLOOP_LLM_MODEL": "m"})
    settings = load(LlmSourceSettings, {"LABELLOOP_LLM_ASK": "none"})
    assert settings.llm_ask == "none"
    secret = load(LlmSourceSettings, {"LABELLOOP_LLM_MODEL": "m", "LABELLOOP_LLM_API_KEY": "sk-secret"})
    assert secret.llm_api_key == "sk-secret" and "sk-secret" not in repr(secret)
