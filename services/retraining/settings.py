"""Retraining settings (env `LABELLOOP_*`)."""

from __future__ import annotations

from dataclasses import dataclass

from labelloop.core.media import DEFAULT_MEDIA_ROOT
from labelloop.core.settings import CommonSettings, non_negative, port, positive, setting


def _fraction(value: float) -> str | None:
    return None if 0.0 < value < 1.0 else "must be between 0 and 1 (exclusive)"


DEFAULT_FAMILIES = ("tfidf-lr", "cascade", "cascade-replace", "image-lr", "image-svm")


def _below_one(value: float) -> str | None:
    return None if 0.0 <= value < 1.0 else "must be at least 0 and below 1"


def _at_least_one(value: float) -> str | None:
    return None if value >= 1.0 else "must be at least 1"


def _gate_metric(value: str) -> str | None:
    return None if value in ("accuracy", "macro_f1") else "must be accuracy or macro_f1"


@dataclass(frozen=True)
class RetrainingSettings(CommonSettings):
    """Retraining: when to train, how to judge a candidate, and where the model API listens."""

    metrics_port: int = setting(9105, port)
    grpc_port: int = setting(50053, port)
    # Trigger policy (see labelloop.retraining.triggers).
    first_model_labels: int = setting(50, positive)
    min_classes: int = setting(2, positive)
    retrain_every_labels: int = setting(25, positive)
    retrain_growth: float = setting(0.2, non_negative)  # or this share of the last model's labels, if more
    retrain_every_seconds: float = setting(600.0, positive)
    failure_backoff_seconds: float = setting(30.0, non_negative)
    # Evaluation and gate.
    holdout_fraction: float = setting(0.2, _fraction)  # share of human labels never trained on
    gate_metric: str = setting("accuracy", _gate_metric)
    gate_margin: float = setting(0.01, non_negative)  # candidate may be this much worse than champion
    # Out-of-fold predictions for calibration. A fold's model sees (k-1)/k of the training labels
    # (the held-out fifth aside), the served model all of them: on a young model it is more sure of
    # everything, so a threshold calibrated on fold models admits more than they did. 5, not 3
    # (session 20): the cascade's mean of two stages grows surer with more labels than one stage.
    # Image projects keep 3: their fits take seconds each (the RBF SVM), and on Fashion-MNIST 5
    # folds cost half the trainings (7 versions instead of 13-16) and people's share with them.
    calibration_folds: int = setting(5, positive)
    image_calibration_folds: int = setting(3, positive)
    # Of the one-sided lower bound of the weighted precision that sets a new model's thresholds
    # (retraining/calibration.py; README "How thresholds are set"). At 0.5 (the median) the demo's
    # auto-labels ran at 0.924-0.937 against a target of 0.95: choosing the lowest of many
    # thresholds (and per class) on a few hundred labels picks favourable noise. Higher is safer
    # and auto-labels less; the moves from people's answers (below) correct it both ways.
    confidence_level: float = setting(0.8, _fraction)
    # Inverse-probability weights above this are trimmed to it when a new model is calibrated: a
    # few heavily weighted audits swing the estimate (one error at weight 25 costs points), and
    # trimming biases it toward the harder items people label anyway, i.e. to the safe side.
    calibration_max_weight: float = setting(3.0, positive)
    # Of the bounds that move the serving model's threshold from people's answers, both ways.
    move_confidence_level: float = setting(0.9, _fraction)
    min_effective_answers: float = setting(20.0, positive)  # Kish sample size before a move
    # Label checks before a training (retraining/label_checks.py): they run once the checked labels
    # number this many per class present (0: never); a label is flagged when cleanlab flags it and
    # the out-of-sample model gives it less than this share of a uniform guess (1 / classes).
    label_check_min_per_class: int = setting(20, non_negative)
    label_check_max_given_share: float = setting(0.75, positive)
    # Exploration: share of confident items sent to people anyway, while the project holds fewer
    # than `exploration_wanted` such labels (explored and audited); then falling as wanted / held,
    # down to the floor. 25, not 50 (session 13): audits keep sampling the confident region at
    # `audit_rate` for as long as a model serves, so exploration on top of them is worth its human
    # labels only while that sample is small (README, How thresholds are set).
    sources_min_judged: int = setting(5, non_negative)
    """With sources besides the model (rules, an LLM): calibrate thresholds on the label model's
    posterior, counting sources with at least this many votes checked by people, and so switch
    routing to it (retraining/posterior.py). 0: always calibrate on the model's probabilities."""
    exploration_rate: float = setting(0.02, _fraction)
    exploration_floor: float = setting(0.005, _fraction)
    exploration_wanted: int = setting(25, positive)
    # The model families trained and compared at each training (empty: all available): each is
    # calibrated and the one whose threshold admits the most wins. The default's cascades run the
    # encoder only for what TF-IDF is unsure of (so the fast path keeps TF-IDF's speed), answering
    # it with the mean of both stages (cascade) or the encoder head's alone (cascade-replace); they
    # are left out, with a warning, where the encoder is not built. minilm-head (the encoder for every item)
    # pays on a GPU Triton. image-lr and image-svm (HOG + pixels, PCA, logistic regression or an
    # RBF SVM; retraining/images.py): image projects only.
    families: tuple[str, ...] = setting(DEFAULT_FAMILIES)
    # Of those, a family whose calibrated coverage fell below (1 - close) of the winner's (close
    # 0: any loss; a tie is none) is not fitted again until the project's human labels grew
    # growth**losses-fold (losses: such defeats in a row; at most max_growth-fold): its fits only
    # delay the next model (retraining/family_schedule.py). growth 1: every family every time.
    family_schedule_close: float = setting(0.0, _below_one)
    family_schedule_growth: float = setting(2.0, _at_least_one)
    family_schedule_max_growth: float = setting(8.0, _at_least_one)
    # Cold start (retraining/zero_shot.py): a text project with no champion serves a zero-shot
    # prior built from its label names (and descriptions) until its first trained model. Acts
    # only where the encoder runs (an encoder family among `families`, e.g. the default cascade);
    # false: no prior (items wait as NO_MODEL tasks in arrival order). `zero_shot_temperature` is
    # the T of softmax(cos(item, label) / T).
    zero_shot: bool = setting(True)
    zero_shot_temperature: float = setting(0.05, positive)
    media_root: str = setting(DEFAULT_MEDIA_ROOT)
    """Where image items' files are read from to train (the root ingest checks them under);
    image models record it and read the same files when served."""
    load_timeout_s: float = setting(120.0, positive)
    # Fault injection for tests: pause this long in the middle of writing a version into the
    # model repository (0 = off), so a test can kill -9 the service with a half-written version.
    fault_pause_writing_version_s: float = setting(0.0, non_negative)
