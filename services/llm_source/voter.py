"""The LLM source's handler: predictions in, the LLM's votes out (topic `votes`).

Which items are asked about is a pure decision (`should_ask`): all of them, only those the
model is unsure of (no model, or a top probability the project's threshold does not admit), or
none. The questions of a batch run concurrently (the client bounds how many); an item whose
question fails, or whose answer is unusable, simply gets no vote and stays with people. Each
question is bounded by the client's timeout and retries, so a slow or down endpoint delays this
consumer only: it is not on the path from items to labels. Each vote is also stashed for the
label model, which learns the LLM's accuracy when people decide the item. Each vote carries the
prediction it was asked about, so routing can route the item again with the vote counted (and
withdraw its waiting task when the posterior now clears the threshold).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from labelloop.core.errors import NotFound, PoisonMessage
from labelloop.core.label_model_store import LabelModelStore
from labelloop.core.projects import ProjectStore
from labelloop.core.stream import Batch, Event, now_timestamp
from labelloop.core.thresholds import Threshold, ThresholdStore
from labelloop.core.topics import VOTES, item_key
from labelloop.llm_source.client import ANSWERED, LlmAnswer
from labelloop.v1 import events_pb2


class Asker(Protocol):
    def ask(self, project_id: str, labels: list[str], text: str) -> LlmAnswer: ...


def should_ask(mode: str, prediction: events_pb2.Prediction, threshold: Threshold) -> bool:
    """Whether the LLM is asked about this prediction's item under `mode` (all/uncertain/none)."""
    if mode == "none" or prediction.ingested.HasField("rescore"):
        return False
    if mode == "all":
        return True
    if prediction.no_model or not len(prediction.scores):
        return True
    top = max(prediction.scores, key=lambda s: s.probability)
    return not threshold.admits(top.label, top.probability)


class LlmVoter:
    """Handles batches of `predictions`: asks the LLM about the chosen items, emits `VoteCast`."""

    def __init__(
        self,
        projects: ProjectStore,
        thresholds: ThresholdStore,
        llm: Asker,
        mode: str,
        source: str,
        max_concurrency: int,
        label_model: LabelModelStore | None = None,
    ) -> None:
        self.projects = projects
        self.thresholds = thresholds
        self.llm = llm
        self.mode = mode
        self.source = source
        self.label_model = label_model
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="llm")

    def __call__(self, batch: Batch) -> None:
        chosen: list[tuple[Event, list[str]]] = []
        for event in batch.events:
            prediction: events_pb2.Prediction = event.message
            item = prediction.ingested.item
            if item.content.WhichOneof("body") != "text":
                continue
            try:
                project = self.projects.get(item.project_id)
            except NotFound:
                batch.dead_letter(
                    event, PoisonMessage("UnknownProject", f"project {item.project_id!r} does not exist")
                )
                continue
            if should_ask(self.mode, prediction, self.thresholds.get(item.project_id)):
                chosen.append((event, list(project.spec.labels)))
        answers = self._pool.map(
            lambda pair: self.llm.ask(
                pair[0].message.ingested.item.project_id, pair[1], pair[0].message.ingested.item.content.text
            ),
            chosen,
        )
        for (event, _), answer in zip(chosen, answers, strict=True):
            if answer.outcome != ANSWERED or answer.label is None:
                continue
            item = event.message.ingested.item
            if self.label_model is not None:  # for the label model, when people decide the item
                self.label_model.stash_vote(item.project_id, item.item_id, self.source, answer.label)
            batch.emit(
                VOTES,
                item_key(item.project_id, item.item_id),
                events_pb2.VoteCast(
                    project_id=item.project_id,
                    item_id=item.item_id,
                    vote=events_pb2.SourceVote(source=self.source, label=answer.label),
                    cast_at=now_timestamp(),
                    prediction=event.message,  # routing routes the item again with the vote
                ),
            )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
