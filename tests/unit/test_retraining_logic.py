"""Pure parts of the retraining service: the labeled set and its split, metrics, the gate, the
family choice, calibration data, the deploy-time threshold rule, version copies, settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from labelloop.core import model_repository
from labelloop.core.settings import SettingsError, load
from labelloop.core.thresholds import NOTHING, Threshold
from labelloop.retraining.calibration import ADMIT_NOTHING
from labelloop.retraining.cascade import CASCADE_FAMILY
from labelloop.retraining.dataset import LabeledSet, is_holdout
from labelloop.retraining.deploy import copy_version, stricter
from labelloop.retraining.evaluation import best_candidate, calibrate, evaluate, gate, out_of_fold_probs
from labelloop.retraining.families import ModelFamily, RecentFits, TrainedModel, available_families
from labelloop.retraining.settings import RetrainingSettings
from labelloop.retraining.tfidf import TFIDF_FAMILY
from labelloop.v1 import common_pb2, events_pb2

WORDS = {"sport": "goal match team score league", "tech": "chip software cloud code server"}


def texts(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    out, labels = [], []
    for i in range(n):
        label = "sport" if i % 2 else "tech"
        words = WORDS[label].split()
        out.append(" ".join(rng.choice(words, 6)) + f" filler{i % 7}")
        labels.append(label)
    return out, labels


def label_event(
    item_id: str, label: str, source: int = common_pb2.LABEL_SOURCE_HUMAN
) -> events_pb2.LabelFinalized:
    item = common_pb2.Item(
        item_id=item_id, project_id="p", content=common_pb2.Content(text=f"text {item_id}")
    )
    return events_pb2.LabelFinalized(
        ingested=events_pb2.ItemIngested(item=item), labels=[label], source=source
    )


def test_holdout_assignment_is_stable_and_near_the_fraction() -> None:
    ids = [f"item-{i}" for i in range(4000)]
    share = sum(is_holdout(i, 0.2) for i in ids) / len(ids)
    assert 0.17 < share < 0.23
    assert [is_holdout(i, 0.2) for i in ids[:50]] == [is_holdout(i, 0.2) for i in ids[:50]]


def test_labeled_set_counts_each_human_labeled_item_once() -> None:
    labeled = LabeledSet(0.2)
    assert labeled.apply(label_event("a", "x", common_pb2.LABEL_SOURCE_MODEL)) is None  # auto: not trained on
    assert labeled.apply(label_event("a", "x")) == "x"
    assert labeled.apply(label_event("a", "x")) is None  # redelivered
    assert labeled.apply(label_event("a", "y")) is None  # relabeled: replaces, not a new label
    assert labeled.apply(label_event("a", "z", common_pb2.LABEL_SOURCE_MODEL)) is None
    assert labeled.labels() == ["y"]
    for i in range(100):
        labeled.apply(label_event(f"i{i}", "x"))
    snap = labeled.snapshot()
    assert snap.size == 101 and snap.class_counts() == {"x": 100, "y": 1}
    assert all(is_holdout(x.item_id, 0.2) for x in snap.holdout)
    assert not any(is_holdout(x.item_id, 0.2) for x in snap.train)
    assert snap.fingerprint() == labeled.snapshot().fingerprint()


def test_tfidf_family_columns_follow_the_label_set() -> None:
    x, y = texts(40)
    model = TFIDF_FAMILY.fit(x, y, ["tech", "other", "sport"])
    assert isinstance(model, TrainedModel) and isinstance(TFIDF_FAMILY, ModelFamily)
    probs = model.predict_proba(["goal match team", "cloud code chip"])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1) and (probs[:, 1] == 0).all()
    assert probs[0].argmax() == 2 and probs[1].argmax() == 0
    with pytest.raises(ValueError, match="two distinct"):
        TFIDF_FAMILY.fit(x[:3], ["tech"] * 3, ["tech", "sport"])
    assert available_families()[0].name == "tfidf-lr"


def test_a_repeated_tfidf_fit_is_answered_from_the_recent_fits() -> None:
    # The cascade's first stage fits what the tfidf-lr candidate just fitted (same data, folds).
    x, y = texts(60, seed=7)
    first = TFIDF_FAMILY.fit(x, y, ["tech", "sport"])
    again = CASCADE_FAMILY.fast.fit(list(x), list(y), ["tech", "sport"])
    assert again.pipeline is first.pipeline and again is not first
    np.testing.assert_array_equal(again.predict_proba(x), first.predict_proba(x))
    # Other data, other labels, another label order or other hyper-parameters: a new fit.
    assert TFIDF_FAMILY.fit(x[:-1], y[:-1], ["tech", "sport"]).pipeline is not first.pipeline
    flipped = ["sport" if v == "tech" else "tech" for v in y]
    assert TFIDF_FAMILY.fit(x, flipped, ["tech", "sport"]).pipeline is not first.pipeline
    assert TFIDF_FAMILY.fit(x, y, ["sport", "tech"]).pipeline is not first.pipeline
    assert replace(TFIDF_FAMILY, c=1.0).fit(x, y, ["tech", "sport"]).pipeline is not first.pipeline


def test_tfidf_version_is_written_with_the_project_label_set(tmp_path: Path) -> None:
    x, y = texts(20)
    directory = TFIDF_FAMILY.fit(x, y, ["tech", "sport", "other"]).write_version(tmp_path, "m", 1)
    meta = json.loads((directory / "labels.json").read_text())
    assert meta["labels"] == ["tech", "sport", "other"] and meta["family"] == "sklearn"


def test_evaluate_and_gate() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = evaluate(probs, ["a", "b", "b", "b"], ["a", "b"], 0.9)
    assert m["accuracy"] == 0.75 and m["n"] == 4 and 0 < m["macro_f1"] < 1 and m["expected_coverage"] == 0.75
    assert gate(m, None, "accuracy", 0.01).promote
    assert gate(m, {"accuracy": 0.76}, "accuracy", 0.01).promote
    assert gate({"n": 0}, {"n": 0}, "accuracy", 0.0).promote  # nothing to compare on


def test_the_gate_tolerates_the_noise_of_small_held_out_sets_only() -> None:
    # 20 held-out labels: one item is 5 points, the champion's score has a standard error of 6.7.
    assert gate({"accuracy": 0.85, "n": 20}, {"accuracy": 0.9, "n": 20}, "accuracy", 0.01).promote
    rejected = gate({"accuracy": 0.7, "n": 20}, {"accuracy": 0.9, "n": 20}, "accuracy", 0.01)
    assert not rejected.promote and "worse than the champion" in rejected.reason
    # 2,000 labels: the noise is 1.3 points, so 3 points worse is rejected.
    assert not gate({"accuracy": 0.87, "n": 2000}, {"accuracy": 0.9, "n": 2000}, "accuracy", 0.01).promote
    # A perfect score on 11 labels is not certain: one miss is within the noise.
    assert gate({"accuracy": 10 / 11, "n": 11}, {"accuracy": 1.0, "n": 11}, "accuracy", 0.01).promote
    # On 2,000 labels it nearly is: the margin applies.
    assert not gate({"accuracy": 0.98, "n": 2000}, {"accuracy": 1.0, "n": 2000}, "accuracy", 0.01).promote
    assert gate({"accuracy": 0.995, "n": 2000}, {"accuracy": 1.0, "n": 2000}, "accuracy", 0.01).promote


def test_the_family_with_the_best_held_out_metric_is_chosen_ties_to_the_cheapest() -> None:
    assert best_candidate([{"accuracy": 0.8}, {"accuracy": 0.9}], "accuracy") == 1
    assert best_candidate([{"accuracy": 0.9}, {"accuracy": 0.9}], "accuracy") == 0
    assert best_candidate([{"n": 0}, {"n": 0}], "accuracy") == 0
    # Ranked by coverage at the target first; accuracy only breaks ties.
    by_coverage = [
        {"expected_coverage": 0.30, "accuracy": 0.90},
        {"expected_coverage": 0.45, "accuracy": 0.85},
        {"expected_coverage": 0.45, "accuracy": 0.88},
    ]
    assert best_candidate(by_coverage, "expected_coverage", "accuracy") == 2
    assert best_candidate(by_coverage[:2], "expected_coverage", "accuracy") == 1


def test_out_of_fold_predictions_never_come_from_a_model_that_saw_the_item() -> None:
    x, y = texts(60)
    probs, valid = out_of_fold_probs(TFIDF_FAMILY, x, y, ["tech", "sport"], folds=3)
    assert valid.all() and probs.shape == (60, 2)
    accuracy = np.mean(np.array(["tech", "sport"])[probs.argmax(axis=1)] == np.array(y))
    assert accuracy > 0.9


def test_calibration_admits_nothing_with_too_few_labels_and_something_with_enough() -> None:
    few = np.tile([[0.99, 0.01]], (20, 1))
    assert calibrate(few, ["a"] * 20, ["a", "b"], 0.9, 0.95).threshold == ADMIT_NOTHING
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, 400)
    truth = np.where(rng.uniform(size=400) < conf, "a", "b")  # calibrated: P(correct) = conf
    probs = np.stack([conf, 1 - conf], axis=1)
    result = calibrate(probs, truth.tolist(), ["a", "b"], 0.9, 0.95)
    assert 0.5 < result.threshold < 1.0
    admitted = conf >= result.threshold
    assert np.mean(truth[admitted] == "a") >= 0.9


def test_rescore_thresholds_are_calibrated_on_the_labels_people_got_with_probability_one() -> None:
    """Waiting tasks are items an earlier model was unsure of: their thresholds come from the
    labels of such items (weight 1) alone. Here the model is right on 99% of the confident items
    of the stream (explored, weight 3) but on only 80% of those an earlier model was unsure of."""
    from labelloop.retraining.evaluation import calibrate_rescores

    rng = np.random.default_rng(3)
    unsure_ok = rng.uniform(size=300) < 0.8
    explored_ok = rng.uniform(size=300) < 0.99
    conf = np.full(600, 0.97)
    truth = ["a" if ok else "b" for ok in np.concatenate([unsure_ok, explored_ok])]
    probs = np.stack([conf, 1 - conf], axis=1)
    weights = [1.0] * 300 + [3.0] * 300
    everything = calibrate(probs, truth, ["a", "b"], 0.85, 0.8, weights=weights, max_weight=3.0)
    rescores = calibrate_rescores(probs, truth, ["a", "b"], 0.85, 0.8, weights=weights)
    assert everything.threshold <= 0.97 and rescores.threshold == ADMIT_NOTHING
    assert rescores.n == 300
    # with the unsure items as good as the rest, the rescores admit what the stream's rule does
    good = ["a" if ok else "b" for ok in np.concatenate([explored_ok, explored_ok])]
    assert calibrate_rescores(probs, good, ["a", "b"], 0.85, 0.8, weights=weights).threshold <= 0.97


def test_a_rescore_takes_the_stricter_of_each_labels_two_thresholds_and_both_round_trip() -> None:
    rule = Threshold(0.6, {"a": 0.9}, 2, rescore_threshold=0.8, rescore_class_thresholds={"b": 0.95})
    rescoring = rule.for_rescores()
    assert rescoring.threshold == 0.8
    assert {x: rescoring.for_label(x) for x in "abc"} == {"a": 0.9, "b": 0.95, "c": 0.8}
    assert Threshold(0.6, {"a": 0.9}).for_rescores() == Threshold(0.6, {"a": 0.9})  # none calibrated
    assert Threshold.from_record(rule.to_record()) == rule
    assert "rescore_threshold" not in Threshold(0.6).to_record()  # old shape, read as before
    both = stricter(rule, Threshold(0.7, rescore_threshold=0.85, rescore_class_thresholds={"a": 0.99}))
    assert (both.rescore_threshold, both.rescore_class_thresholds) == (0.85, {"a": 0.99, "b": 0.95})


def test_the_deploy_time_threshold_is_the_stricter_of_both_per_class() -> None:
    old = Threshold(0.8, {"a": 0.95}, 3)
    new = Threshold(0.7, {"b": 0.9})
    both = stricter(old, new)
    assert both.threshold == 0.8 and both.class_thresholds == {"a": 0.95, "b": 0.9}
    assert stricter(Threshold(), new).threshold == 2.0  # before any model: still nothing


def test_copy_version_reproduces_a_version_and_pauses_midway(tmp_path: Path) -> None:
    x, y = texts(20)
    source = TFIDF_FAMILY.fit(x, y, ["tech", "sport"]).write_version(tmp_path / "a", "m", 1)
    calls: list[bool] = []

    def pause() -> None:
        calls.append(any((tmp_path / "b" / "m").glob(".tmp-*")))

    copied = copy_version(tmp_path / "b", "m", 7, source, pause)
    assert calls == [True], "the pause must happen while the staging directory exists"
    assert model_repository.list_versions(tmp_path / "b", "m") == [7]
    assert (copied / "pipeline.joblib").read_bytes() == (source / "pipeline.joblib").read_bytes()
    assert model_repository.read_labels(tmp_path / "b", "m", 7)["labels"] == ["tech", "sport"]


def test_settings_defaults_and_a_bad_value() -> None:
    s = load(RetrainingSettings, environ={})
    assert (s.metrics_port, s.grpc_port, s.first_model_labels) == (9105, 50053, 50)
    assert (s.calibration_folds, s.image_calibration_folds) == (5, 3)
    with pytest.raises(SettingsError, match="LABELLOOP_HOLDOUT_FRACTION"):
        load(RetrainingSettings, environ={"LABELLOOP_HOLDOUT_FRACTION": "1.5"})
    # Both cascades are trained by default, one per way of combining the stages.
    combines = {f.name: getattr(f, "combine", None) for f in available_families() if f.name in s.families}
    assert combines == {
        "tfidf-lr": None,
        "image-lr": None,
        "image-svm": None,
        "cascade": "mean",
        "cascade-replace": "replace",
    }
    assert load(RetrainingSettings, environ={"LABELLOOP_FAMILIES": "tfidf-lr,minilm-head"}).families == (
        "tfidf-lr",
        "minilm-head",
    )


def test_a_threshold_record_round_trips_and_old_records_read_as_before() -> None:
    from labelloop.core.thresholds import NOTHING, Threshold

    t = Threshold(0.83, {"spam": 0.9}, 4, 0.02)
    assert Threshold.from_record(t.to_record()) == t
    assert Threshold.from_record(t.to_record(), model_version=7) == Threshold(0.83, {"spam": 0.9}, 7, 0.02)
    # a version tag written before the exploration rate existed
    assert Threshold.from_record({"threshold": 0.9, "class_thresholds": {}}) == Threshold(0.9)
    # one sentinel: what calibration writes is what the stores default to
    assert ADMIT_NOTHING == NOTHING == Threshold().threshold


def test_a_moved_threshold_waits_for_new_answers_before_it_moves_again() -> None:
    from labelloop.core.thresholds import Threshold

    fresh = Threshold(0.6, {"spam": 0.7}, 4)
    assert not fresh.awaits_answers(20, 20)  # never moved: the first move needs only the sample
    moved = Threshold(0.8, {"spam": 0.9}, 4, answers_at_move=30)
    assert Threshold.from_record(moved.to_record()) == moved
    assert "answers_at_move" not in fresh.to_record()
    # The same 30 answers (and a few more) do not move it again; 20 new ones may.
    assert moved.awaits_answers(30, 20)
    assert moved.awaits_answers(49, 20)
    assert not moved.awaits_answers(50, 20)


def test_exploration_falls_between_trainings_as_explored_answers_arrive() -> None:
    """A version trained with 20 explored and audited labels explores at the young rate (2%
    until 25, the default); 30 answers to its own explored and audited tasks make 50, so the rate
    falls to 2% * 25 / 50 at once, without a training and without moving the thresholds."""
    from labelloop.core.answers import AnswerSample
    from labelloop.retraining.lifecycle import ModelLifecycle

    published: list[Threshold] = [Threshold(0.8, {"b": 0.85}, 3, 0.02, explored_labels=20)]

    class Thresholds:
        def invalidate(self, project_id: str) -> None:
            pass

        def get(self, project_id: str) -> Threshold:
            return published[-1]

        def set(self, project_id: str, value: Threshold) -> None:
            published.append(value)

    class Projects:
        def get(self, project_id: str) -> common_pb2.Project:
            spec = common_pb2.ProjectSpec(project_id="p", labels=["a", "b"], target_precision=0.95)
            return common_pb2.Project(spec=spec)

    class Answers:
        def sample(self, project_id: str, model_version: int) -> AnswerSample:
            assert model_version == 3
            return AnswerSample(
                confidences=np.full(30, 0.99),
                correct=np.ones(30, dtype=bool),
                weights=np.full(30, 25.0),
                predicted_labels=["a"] * 30,
                audits_agreeing=15,
                audits=15,
            )

    settings = load(RetrainingSettings, environ={})
    lifecycle = ModelLifecycle(settings, Projects(), None, None, Thresholds(), None, Answers(), None)  # type: ignore[arg-type]
    lifecycle.move_threshold("p", None)  # type: ignore[arg-type]
    assert len(published) == 2
    assert published[-1].exploration_rate == pytest.approx(0.02 * 25 / 50)
    assert replace(published[-1], exploration_rate=0.02) == published[0]  # nothing else changed
    # The same answers again: the rate stays (the version's own labels are not counted twice).
    lifecycle.move_threshold("p", None)  # type: ignore[arg-type]
    assert len(published) == 2


def test_an_install_publishes_every_field_of_the_calibrated_threshold() -> None:
    """What routing reads after a deploy keeps the exploration rate and what the threshold was
    calibrated on (`sources_min_judged`: routing switches to the posterior only under it); the
    stricter threshold during the swap keeps the serving one's."""
    import threading

    from labelloop.retraining.lifecycle import ModelLifecycle

    published: list[Threshold] = []

    class Thresholds:
        def invalidate(self, project_id: str) -> None:
            pass

        def get(self, project_id: str) -> Threshold:
            return Threshold(0.97, {}, 3, 0.005, 0)

        def set(self, project_id: str, value: Threshold) -> None:
            published.append(value)

    class Deployer:
        def lock(self, model_name: str) -> threading.Lock:
            return threading.Lock()

        def install(self, model_name: str, source_dir: Path) -> int:
            return 4

    class Serving:
        def set(self, project_id: str, version: int) -> None:
            pass

    class Projects:
        def get(self, project_id: str, *, fresh: bool = False) -> common_pb2.Project:
            return common_pb2.Project(spec=common_pb2.ProjectSpec(project_id=project_id))

    lifecycle = ModelLifecycle(None, Projects(), None, Deployer(), Thresholds(), Serving(), None, None)  # type: ignore[arg-type]
    calibrated = Threshold(0.9, {"a": 0.95}, exploration_rate=0.02, sources_min_judged=5)
    assert lifecycle._install("p", "m", Path("."), calibrated) == 4
    during, after = published
    assert during == Threshold(0.97, {"a": 0.97}, 3, 0.005, 0)  # the stricter, on the old basis
    assert after == Threshold(0.9, {"a": 0.95}, 4, 0.02, 5)
    assert Threshold.from_record(after.to_record()) == after


def test_thresholds_go_on_the_posterior_only_where_it_admits_more_than_the_model() -> None:
    """Trainer._calibrate calibrates the model's probabilities and, when the project's sources
    voted, the posterior of the same sample; the posterior's thresholds serve (and the record
    says so) only when they admit more at the target."""
    from labelloop.retraining.dataset import HumanLabel, Snapshot
    from labelloop.retraining.posterior import PosteriorSample
    from labelloop.retraining.training import Candidate, Trainer

    labels = ["sport", "tech"]
    x, _ = texts(160, seed=3)
    y = list(np.random.default_rng(4).choice(labels, 160))  # labels the words do not predict
    snapshot = Snapshot(
        tuple(HumanLabel(f"i{n}", t, lab) for n, (t, lab) in enumerate(zip(x, y, strict=True))), ()
    )
    model = TFIDF_FAMILY.fit(x, y, labels)
    candidate = Candidate(TFIDF_FAMILY, model, {}, np.zeros((0, 2)), 0.0)

    class Posterior:
        def __init__(self, sharp: bool) -> None:
            self.sharp = sharp

        def sample(self, pid, label_set, entries, probs):  # type: ignore[no-untyped-def]
            truth = np.asarray([label_set.index(e.label) for e in entries])
            right = np.eye(2)[truth] * 0.98 + 0.01
            wrong = np.eye(2)[1 - truth] * 0.98 + 0.01
            return PosteriorSample(right if self.sharp else wrong, 5, len(entries))

    settings = load(RetrainingSettings, environ={})
    for sharp, basis in ((True, 5), (False, 0)):
        trainer = Trainer(settings, None, None, None, None, [TFIDF_FAMILY], posterior=Posterior(sharp))  # type: ignore[arg-type]
        calibration, _, _, sources_min_judged, _ = trainer._calibrate(candidate, snapshot, labels, 0.95, "p")
        assert sources_min_judged == basis
        if sharp:
            assert calibration.expected_coverage > 0.9
    plain = Trainer(settings, None, None, None, None, [TFIDF_FAMILY])  # type: ignore[arg-type]
    assert plain._calibrate(candidate, snapshot, labels, 0.95, "p")[3] == 0


def test_a_candidate_that_admits_nothing_does_not_replace_a_champion_that_admits() -> None:
    better = {"accuracy": 0.9, "n": 200}
    champion = {"accuracy": 0.8, "n": 200}
    kept = gate(better, champion, "accuracy", 0.01, candidate_admits=False, champion_admits=True)
    assert not kept.promote and "admits nothing" in kept.reason
    # Otherwise the metric decides, as before.
    assert gate(better, champion, "accuracy", 0.01, candidate_admits=False, champion_admits=False).promote
    assert gate(better, champion, "accuracy", 0.01, candidate_admits=True, champion_admits=True).promote
    assert gate(better, None, "accuracy", 0.01, candidate_admits=False, champion_admits=False).promote
    # A worse candidate is rejected for being worse, whatever it admits.
    worse = gate(champion, better, "accuracy", 0.01, candidate_admits=False, champion_admits=True)
    assert not worse.promote and "worse than the champion" in worse.reason


def test_a_threshold_admits_when_its_global_or_a_class_threshold_is_a_probability() -> None:
    assert not Threshold().admits_any()
    assert Threshold(0.9).admits_any()
    assert Threshold(NOTHING, {"spam": 0.97}).admits_any()
    assert not Threshold(NOTHING, {"spam": NOTHING, "ham": 1.5}).admits_any()


def test_the_archived_scan_offers_each_archived_project_once_and_again_after_a_failure() -> None:
    from labelloop.retraining.service import ArchivedScan

    now = [0.0]

    class Projects:
        def __init__(self) -> None:
            self.projects = [common_pb2.Project(spec=common_pb2.ProjectSpec(project_id="live"))]

        def list(self) -> list[common_pb2.Project]:
            return self.projects

        def archive(self, pid: str) -> None:
            project = common_pb2.Project(spec=common_pb2.ProjectSpec(project_id=pid))
            project.archived_at.GetCurrentTime()
            self.projects.append(project)

    projects = Projects()
    scan = ArchivedScan(every_s=2.0, clock=lambda: now[0])
    assert scan.due(projects) == [] and scan.archived == set()  # type: ignore[arg-type]
    projects.archive("old")
    assert scan.due(projects) == [], "the list is read at most every 2 s"  # type: ignore[arg-type]
    now[0] = 2.0
    assert [p.spec.project_id for p in scan.due(projects)] == ["old"]  # type: ignore[arg-type]
    assert scan.archived == {"old"}
    now[0] = 4.0
    assert scan.due(projects) == [], "offered once"  # type: ignore[arg-type]
    scan.failed("old")
    now[0] = 6.0
    assert [p.spec.project_id for p in scan.due(projects)] == ["old"], "again after a failed retire"  # type: ignore[arg-type]


def test_retiring_an_archived_project_announces_once(tmp_path: Path) -> None:
    """Each start of retraining offers every archived project again: only one that still had a
    model (or a serving version) is retired and announced; the rest are left as they are."""
    import threading

    from labelloop.retraining.lifecycle import ModelLifecycle

    sent: list[events_pb2.ModelEvent] = []
    published: list[Threshold] = []
    serving = {"p": 3}

    class Producer:
        def send(self, topic: object, key: str, event: events_pb2.ModelEvent) -> None:
            sent.append(event)

        def flush(self) -> None:
            pass

    class Deployer:
        repo = tmp_path

        def lock(self, model_name: str) -> threading.Lock:
            return threading.Lock()

    class Serving:
        def get(self, project_id: str) -> int:
            return serving.get(project_id, 0)

        def set(self, project_id: str, version: int) -> None:
            serving[project_id] = version

    class Thresholds:
        def set(self, project_id: str, value: Threshold) -> None:
            published.append(value)

    (tmp_path / "m" / "3").mkdir(parents=True)
    settings = load(RetrainingSettings, environ={"LABELLOOP_TRITON_GRPC_URL": "127.0.0.1:1"})
    lifecycle = ModelLifecycle(settings, None, None, Deployer(), Thresholds(), Serving(), None, Producer())  # type: ignore[arg-type]
    assert lifecycle.retire("p", "m") is True
    assert not model_repository.model_dir(tmp_path, "m").exists() and serving["p"] == 0
    assert [e.kind for e in sent] == [events_pb2.MODEL_EVENT_KIND_RETIRED] and published[-1].threshold > 1.0
    assert lifecycle.retire("p", "m") is False, "a second start finds nothing to retire"
    assert len(sent) == 1 and len(published) == 1


def test_recent_fits_answer_a_repeated_fit_and_forget_the_oldest() -> None:
    recent: RecentFits[str] = RecentFits(2)
    calls: list[str] = []

    def fit(name: str) -> Callable[[], str]:
        return lambda: calls.append(name) or name

    assert recent.fit("C=1", ["a", "b"], ["x", "y"], ["x", "y"], fit("first")) == "first"
    assert recent.fit("C=1", ["a", "b"], ["x", "y"], ["x", "y"], fit("again")) == "first"
    # Any difference in hyper-parameters, texts, labels or label set is another fit; the parts
    # are length-prefixed, so moving text between items is a difference too.
    assert recent.fit("C=2", ["a", "b"], ["x", "y"], ["x", "y"], fit("params")) == "params"
    assert recent.fit("C=1", ["ab", ""], ["x", "y"], ["x", "y"], fit("texts")) == "texts"
    assert recent.fit("C=1", ["a", "b"], ["y", "x"], ["x", "y"], fit("labels")) == "labels"
    assert recent.fit("C=1", ["a", "b"], ["x", "y"], ["x", "y", "z"], fit("label set")) == "label set"
    assert len(recent) == 2
    assert recent.fit("C=1", ["a", "b"], ["x", "y"], ["x", "y"], fit("refit")) == "refit"
    assert calls == ["first", "params", "texts", "labels", "label set", "refit"]
    with pytest.raises(ValueError, match="at least 1"):
        RecentFits(0)
