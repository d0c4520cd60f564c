"""The bench's cold-start section, from synthetic model events and final labels."""

from __future__ import annotations

from labelloop.bench.cold_start import cold_start
from labelloop.bench.report import HUMAN, MODEL, FinalLabel
from labelloop.v1 import events_pb2


def _promoted(family: str, version: int, at_ms: int) -> events_pb2.ModelEvent:
    e = events_pb2.ModelEvent(
        kind=events_pb2.MODEL_EVENT_KIND_PROMOTED, family=family, model_version=version, project_id="p"
    )
    e.at.FromMilliseconds(at_ms)
    return e


def test_labels_to_the_first_trained_model_and_the_priors_auto_labels() -> None:
    truth = {f"i{n}": "a" for n in range(8)}
    finals = {
        "i0": FinalLabel("i0", "a", HUMAN, 0, 100),
        "i1": FinalLabel("i1", "a", HUMAN, 0, 200),
        "i2": FinalLabel("i2", "a", MODEL, 0, 250, model_version=1),  # the prior, right
        "i3": FinalLabel("i3", "b", MODEL, 0, 260, model_version=1),  # the prior, wrong
        "i4": FinalLabel("i4", "a", HUMAN, 0, 300),
        "i5": FinalLabel("i5", "a", HUMAN, 0, 900),  # after the trained model
        "i6": FinalLabel("i6", "a", MODEL, 0, 950, model_version=2),
    }
    events = [
        events_pb2.ModelEvent(kind=events_pb2.MODEL_EVENT_KIND_DEPLOYED, family="zero-shot", model_version=1),
        _promoted("zero-shot", 1, 10),
        _promoted("cascade", 2, 500),
        _promoted("cascade", 3, 1000),
    ]
    section = cold_start(truth, finals, events)
    assert section == {
        "prior_version": 1,
        "first_trained_version": 2,
        "first_trained_family": "cascade",
        "human_labels_to_first_trained_model": 3,
        "items_before_first_trained_model": 5,
        "prior_auto_labeled": 2,
        "prior_auto_accuracy": 0.5,
    }


def test_without_a_prior() -> None:
    finals = {"i0": FinalLabel("i0", "a", HUMAN, 0, 100), "i1": FinalLabel("i1", "a", MODEL, 0, 900, 1)}
    section = cold_start({"i0": "a", "i1": "a"}, finals, [_promoted("tfidf-lr", 1, 500)])
    assert section["prior_version"] == 0 and section["prior_auto_labeled"] == 0
    assert section["prior_auto_accuracy"] is None
    assert (
        section["human_labels_to_first_trained_model"] == 1 and section["first_trained_family"] == "tfidf-lr"
    )


def test_the_cli_waits_for_a_prior_only_where_the_stack_has_one(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from labelloop.bench.cold_start import PRIOR_WAIT_S, prior_wait_default

    monkeypatch.delenv("LABELLOOP_ZERO_SHOT", raising=False)
    monkeypatch.delenv("LABELLOOP_FAMILIES", raising=False)
    assert prior_wait_default() == PRIOR_WAIT_S
    monkeypatch.setenv("LABELLOOP_FAMILIES", "tfidf-lr,image-lr")
    assert prior_wait_default() == 0.0
    monkeypatch.setenv("LABELLOOP_FAMILIES", "tfidf-lr, cascade")
    assert prior_wait_default() == PRIOR_WAIT_S
    monkeypatch.setenv("LABELLOOP_FAMILIES", "cascade-replace")
    assert prior_wait_default() == PRIOR_WAIT_S
    monkeypatch.setenv("LABELLOOP_ZERO_SHOT", "false")
    assert prior_wait_default() == 0.0


def test_every_family_that_runs_the_encoder_counts_as_one() -> None:
    from labelloop.bench.cold_start import ENCODER_FAMILIES
    from labelloop.retraining.families import available_families

    # The retraining service serves the prior where a family keeps embeddings (`with_store`).
    encoders = {f.name for f in available_families() if hasattr(f, "with_store")}
    assert encoders == set(ENCODER_FAMILIES)
