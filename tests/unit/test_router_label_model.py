"""Routing on the label model's posterior (opt-in): a trusted rule's vote lifts an uncertain item
over the threshold; an untried rule's vote, or none, leaves the model's probabilities as the
input, so routing is exactly as before; off by default. The Router on a plain Batch."""

from __future__ import annotations

from dataclasses import dataclass, field

from labelloop.core.label_model import LabelModel, combined_scores
from labelloop.core.stream import Batch, Event
from labelloop.core.thresholds import Threshold
from labelloop.core.topics import LABELS, PREDICTIONS, TASKS
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

    def claim(self, claims, emit) -> list:
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
