"""Routing on the label model's posterior (opt-in): a trusted rule's vote lifts an uncertain item
over the threshold; an untried rule's vote, or none, leaves the model's probabilities as the
input, so routing is exactly as before; off by default. The Router on a plain Batch."""

from __future__ import annotations

from dataclasses import dataclass, field

from labelloop.core.label_model import LabelModel, combined_scores
from labelloop.core.stream import Batch, Event
from labelloop.core.thresholds import Threshold
from labelloop.core.topics import LABELS, PREDICTIONS, TASKS, VOTES
from labelloop.routing.router import Router
from labelloop.v1 import common_pb2, events_pb2

PROJECT_LABELS = ["sports", "politics"]


def trained(right: int, wrong: int, source: str = "rule:ball") -> LabelModel:
    model = LabelModel(PROJECT_LABELS)
    for _ in range(right):
        model.observe({source: "sports"}, "sports")
    for _ in range(wrong):
        model.observe({source: "sports"}, "politics")
    for _ in range(right + wrong):  # it abstains on as many other items, mostly politics
        model.observe({}, "politics", [source])
    return model


def test_combined_scores_count_only_trusted_sources() -> None:
    model = trained(45, 5)
    lifted = combined_scores(model, {"rule:ball": "sports"}, [0.6, 0.4], min_judged=30)
    assert lifted is not None and lifted[0] > 0.9
    assert combined_scores(model, {"rule:ball": "sports"}, [0.6, 0.4], min_judged=51) is None
    assert combined_scores(model, {}, [0.6, 0.4], min_judged=1) is None
    assert combined_scores(model, {"model": "sports"}, [0.6, 0.4], min_judged=1) is None


@dataclass
class Projects:
    def get(self, project_id: str) -> common_pb2.Project:
        return common_pb2.Project(
            spec=common_pb2.ProjectSpec(
                project_id="p", labels=PROJECT_LABELS, audit_rate=0.0, annotators_per_task=1
            )
        )


@dataclass
class Thresholds:
    def get(self, project_id: str) -> Threshold:
        return Threshold(threshold=0.9)

    def invalidate(self, project_id: str) -> None:
        pass


@dataclass
class Progress:
    """A final-label fence that has seen nothing: every claim is new (publishes labels)."""

    recorded: list = field(default_factory=list)

    def claim(self, claims, emit, relabel=None, emitted=None) -> list:
        from labelloop.core.final_labels import Outcome

        for claim in claims:
            if claim.label is not None:
                emit(LABELS, f"p/{claim.item_id}", claim.label)
        self.recorded.extend(claims)
        return [Outcome.NEW for _ in claims]

    def confirm(self, labels) -> None:
        pass


@dataclass
class Store:
    model: LabelModel

    def cached(self, project_id: str, labels: list[str]) -> LabelModel:
        return self.model


def batch(*voted: bool) -> Batch:
    events = []
    for i, vote in enumerate(voted):
        prediction = events_pb2.Prediction(model_name="m", model_version=1)
        prediction.ingested.item.item_id = str(i)
        prediction.ingested.item.project_id = "p"
        prediction.scores.add(label="sports", probability=0.6)
        prediction.scores.add(label="politics", probability=0.4)
        if vote:
            prediction.votes.add(source="rule:ball", label="sports", version=1)
        events.append(Event(PREDICTIONS, prediction, b"k", 0, i, b"", 0))
    return Batch(events)


def routed(router: Router, b: Batch) -> list[tuple[str, str]]:
    router(b)
    return [
        (
            "label" if topic is LABELS else "task",
            message.labels[0] if topic is LABELS else str(message.reason),
        )  # type: ignore[union-attr]
        for topic, _, message in b.outputs
        if topic in (LABELS, TASKS)
    ]


def test_the_router_routes_on_the_posterior_only_when_trusted_sources_voted() -> None:
    uncertain = str(events_pb2.TASK_REASON_UNCERTAIN)
    off = Router(Projects(), Thresholds(), Progress(), "seed")  # type: ignore[arg-type]
    assert routed(off, batch(True, False)) == [("task", uncertain), ("task", uncertain)]
    on = Router(Projects(), Thresholds(), Progress(), "seed", Store(trained(45, 5)), 30)  # type: ignore[arg-type]
    b = batch(True, False)
    assert routed(on, b) == [("label", "sports"), ("task", uncertain)]
    label = b.outputs[0][2]
    assert label.confidence > 0.9  # type: ignore[union-attr]
    untried = Router(Projects(), Thresholds(), Progress(), "seed", Store(trained(5, 0)), 30)  # type: ignore[arg-type]
    assert routed(untried, batch(True)) == [("task", uncertain)]


@dataclass
class CalibratedThresholds:
    """A threshold retraining calibrated on the posterior (sources with at least 30 judged votes)."""

    sources_min_judged: int = 30

    def get(self, project_id: str) -> Threshold:
        return Threshold(threshold=0.9, sources_min_judged=self.sources_min_judged)

    def invalidate(self, project_id: str) -> None:
        pass


def test_a_threshold_calibrated_on_the_posterior_switches_routing_to_it_by_default() -> None:
    uncertain = str(events_pb2.TASK_REASON_UNCERTAIN)
    router = Router(Projects(), CalibratedThresholds(), Progress(), "seed", Store(trained(45, 5)))  # type: ignore[arg-type]
    assert routed(router, batch(True, False)) == [("label", "sports"), ("task", uncertain)]
    on_model = Router(Projects(), CalibratedThresholds(0), Progress(), "seed", Store(trained(45, 5)))  # type: ignore[arg-type]
    assert routed(on_model, batch(True, False)) == [("task", uncertain), ("task", uncertain)]


def late_vote(label: str, source: str = "llm:m") -> Batch:
    prediction = batch(False).events[0].message
    prediction.ingested.item.content.text = "a text"
    cast = events_pb2.VoteCast(
        project_id="p",
        item_id="0",
        vote=events_pb2.SourceVote(source=source, label=label),
        prediction=prediction,
    )
    return Batch([Event(VOTES, cast, b"k", 0, 0, b"", 0)])


def test_a_late_vote_that_clears_the_threshold_withdraws_the_waiting_task_with_its_label() -> None:
    router = Router(Projects(), CalibratedThresholds(), Progress(), "seed", Store(trained(45, 5, "llm:m")))  # type: ignore[arg-type]
    b = late_vote("sports")
    router(b)
    [(topic, _, withdrawal)] = b.outputs
    assert topic is TASKS and withdrawal.HasField("withdraw")  # type: ignore[union-attr]
    label = withdrawal.withdraw.label  # type: ignore[union-attr]
    assert list(label.labels) == ["sports"] and label.confidence > 0.9
    assert label.source == common_pb2.LABEL_SOURCE_MODEL
    assert [v.source for v in withdrawal.prediction.votes] == ["llm:m"]  # type: ignore[union-attr]
    # A vote for the other label, an untried source, or a threshold on the model: the task stays.
    for quiet, b in (
        (router, late_vote("politics")),
        (router, late_vote("sports", "llm:new")),
        (
            Router(Projects(), CalibratedThresholds(0), Progress(), "seed", Store(trained(45, 5, "llm:m"))),  # type: ignore[arg-type]
            late_vote("sports"),
        ),
    ):
        quiet(b)
        assert b.outputs == []
