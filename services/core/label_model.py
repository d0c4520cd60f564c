"""The label model: combines the votes of several label sources on an item (the model, rules, an
LLM) into one posterior over the project's labels, weighing each source by what people's labels
showed of it (pure numpy, no I/O).

Each source `s` has a confusion matrix `theta_s[y, v] = P(s votes v | the true label is y)`
(Dawid and Skene, 1979) whose last column is "abstains" (a rule that does not match): a rule
that only ever votes "sports" is informative because it votes far more often when the item is
about sports, which only the abstentions show. It is estimated from counts of (human label,
vote or abstention) pairs plus a Dirichlet prior that believes a new source, when it votes, is
right `prior_accuracy` of the time, and abstains as often as it votes, with the weight of
`prior_strength` answers per class. Counts only grow, one human-labeled item at a time, so the
model learns online, and replaying the same (votes, human label) pairs in any order gives the
same state: it is replayable from the topics (`labelloop sources` rebuilds it from the
predictions and labels topics).

The posterior of an item combines the serving model's probabilities (its own calibrated view,
including the class prior) with the likelihood of every other source's vote, sources taken as
independent given the true label:

    P(y | x, votes) ∝ p_model(y | x) · Π_s theta_s[y, v_s]

A source that abstains adds nothing (an approximation: abstentions are evidence too, but leaving
them out keeps an item no source voted on at the model's probabilities exactly, so projects
without rules route as before). A source people often contradict gets a flat row of its confusion matrix
for the labels it votes for, and so little weight, by itself. Without a model the class
frequencies of the human labels take its place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

MODEL_SOURCE = "model"
DEFAULT_PRIOR_ACCURACY = 0.7
DEFAULT_PRIOR_STRENGTH = 2.0


@dataclass
class LabelModel:
    """Per-source confusion counts over `labels`; `observe` learns, `posterior` combines."""

    labels: Sequence[str]
    prior_accuracy: float = DEFAULT_PRIOR_ACCURACY
    prior_strength: float = DEFAULT_PRIOR_STRENGTH
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    class_counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.labels) < 2:
            raise ValueError("a label model needs at least two labels")
        if not 0 < self.prior_accuracy < 1:
            raise ValueError(f"prior_accuracy must be in (0, 1), got {self.prior_accuracy}")
        self.index = {label: i for i, label in enumerate(self.labels)}
        if self.class_counts is None:
            self.class_counts = np.zeros(len(self.labels))

    @property
    def k(self) -> int:
        return len(self.labels)

    def _prior_row(self, true_index: int) -> np.ndarray:
        """Dirichlet pseudo-counts of one row: as many abstentions as votes, and of the votes
        `prior_accuracy` on the diagonal, the rest spread over the other labels."""
        row = np.full(self.k + 1, (1 - self.prior_accuracy) / (self.k - 1))
        row[true_index] = self.prior_accuracy
        row[self.k] = 1.0
        return row * self.prior_strength

    def observe(self, votes: Mapping[str, str], human_label: str, abstained: Iterable[str] = ()) -> None:
        """Learn from one item people labeled `human_label`: each source's vote on it
        (`{source: label}`) and the sources that could have voted and abstained (the project's
        other rules). A label outside the set is ignored: people's label of a label set that
        changed, or a vote for a label the project no longer has, says nothing."""
        truth = self.index.get(human_label)
        if truth is None:
            return
        assert self.class_counts is not None
        self.class_counts[truth] += 1
        outcomes = [(source, self.index.get(label)) for source, label in votes.items()]
        outcomes += [(source, self.k) for source in abstained if source not in votes]
        for source, outcome in outcomes:
            if outcome is None:
                continue
            matrix = self.counts.get(source)
            if matrix is None:
                matrix = self.counts[source] = np.zeros((self.k, self.k + 1))
            matrix[truth, outcome] += 1

    def confusion(self, source: str) -> np.ndarray:
        """`theta[y, v]`, shape [k, k + 1]: the estimated P(vote v | true y) of `source`, the last
        column for abstaining (the prior alone for a source never seen against a human label)."""
        counts = self.counts.get(source, np.zeros((self.k, self.k + 1)))
        theta = counts + np.stack([self._prior_row(y) for y in range(self.k)])
        return theta / theta.sum(axis=1, keepdims=True)

    def class_prior(self) -> np.ndarray:
        """Frequencies of the human labels, smoothed by one pseudo-count per class."""
        assert self.class_counts is not None
        smoothed = self.class_counts + 1.0
        return smoothed / smoothed.sum()

    def accuracy(self, source: str) -> float:
        """P(the source is right | it votes) on the human-labeled items, smoothed toward
        `prior_accuracy` with the weight of `prior_strength` votes."""
        votes = self._votes(source)
        right = float(np.trace(votes)) if votes.size else 0.0
        return (right + self.prior_accuracy * self.prior_strength) / (votes.sum() + self.prior_strength)

    def judged(self, source: str) -> int:
        """How many of the source's votes (not abstentions) were checked against a human label."""
        return int(self._votes(source).sum())

    def coverage(self, source: str) -> float:
        """The share of the human-labeled items it could vote on that it voted on (0 if none)."""
        counts = self.counts.get(source)
        return 0.0 if counts is None or counts.sum() == 0 else float(counts[:, : self.k].sum() / counts.sum())

    def _votes(self, source: str) -> np.ndarray:
        counts = self.counts.get(source)
        return np.zeros((self.k, self.k)) if counts is None else counts[:, : self.k]

    def posterior(
        self, votes: Mapping[str, str], model_probabilities: Sequence[float] | None = None
    ) -> np.ndarray:
        """P(y | everything) over `labels`: the model's probabilities (or the class prior when
        there is none) times each voting source's likelihood, normalized. The model's own vote
        (source `MODEL_SOURCE`) is never counted twice: its probabilities already speak for it."""
        if model_probabilities is not None and len(model_probabilities):
            base = np.asarray(model_probabilities, dtype=float)
            if base.shape != (self.k,):
                raise ValueError(f"{base.shape[0]} probabilities for {self.k} labels")
        else:
            base = self.class_prior()
        log_post = np.log(np.clip(base, 1e-12, None))
        for source, label in votes.items():
            voted = self.index.get(label)
            if voted is None or source == MODEL_SOURCE:
                continue
            log_post = log_post + np.log(self.confusion(source)[:, voted])
        log_post -= log_post.max()
        post = np.exp(log_post)
        return post / post.sum()

    def sources(self) -> list[str]:
        return sorted(self.counts)


def votes_of(
    rule_votes: Iterable[tuple[str, str]], model_probabilities: Sequence[float] | None, labels: Sequence[str]
) -> dict[str, str]:
    """The votes of one item as `observe` takes them: each (source, label) pair, plus the model's
    top label as the vote of `MODEL_SOURCE` when it answered (so its accuracy is learned and
    shown like any source's)."""
    votes = dict(rule_votes)
    if model_probabilities is not None and len(model_probabilities):
        votes[MODEL_SOURCE] = labels[int(np.argmax(model_probabilities))]
    return votes


def rebuild(
    labels: Sequence[str],
    predictions: Iterable[tuple[str, Sequence[tuple[str, str]], Sequence[float] | None]],
    human_labels: Mapping[str, str],
    rule_sources: Iterable[str] = (),
    late_votes: Mapping[str, Mapping[str, str]] | None = None,
) -> LabelModel:
    """A label model replayed from history: `predictions` are (item id, rule votes as (source,
    label) pairs, the model's probabilities or None) in topic order, the last one per item
    counting; `human_labels` maps item ids to people's label; `late_votes` holds the votes cast
    apart from the prediction (the votes topic: item id -> source -> label; such a source is
    asked about some items only, so it never counts as abstaining). Every source in
    `rule_sources` or seen voting in a prediction is taken to have looked at every item (abstaining where it cast no vote): the
    history does not say which rules existed when an item was predicted, so a rule added late
    looks like one that abstained early (its coverage reads low; its accuracy is unaffected)."""
    latest: dict[str, tuple[Sequence[tuple[str, str]], Sequence[float] | None]] = {}
    for item_id, votes, probabilities in predictions:
        latest[item_id] = (votes, probabilities)
    rules = set(rule_sources) | {source for votes, _ in latest.values() for source, _ in votes}
    model = LabelModel(labels)
    for item_id, human in human_labels.items():
        if item_id not in latest:
            continue
        votes, probabilities = latest[item_id]
        extra = sorted((late_votes or {}).get(item_id, {}).items())
        cast = votes_of([*votes, *extra], probabilities, labels)
        model.observe(cast, human, sorted(rules - set(cast)))
    return model


def combined_scores(
    model: LabelModel, votes: Mapping[str, str], model_probabilities: Sequence[float], min_judged: int
) -> list[float] | None:
    """The posterior routing thresholds for an item the model scored, counting only the votes of
    sources with at least `min_judged` votes checked by people (an untried rule must not push
    items over the threshold on the prior alone); None when no such source voted, so the
    model's probabilities stay the input (projects without rules route exactly as before)."""
    trusted = trusted_votes(model, votes, min_judged)
    if not trusted or not len(model_probabilities):
        return None
    return [float(p) for p in model.posterior(trusted, model_probabilities)]


def trusted_votes(model: LabelModel, votes: Mapping[str, str], min_judged: int) -> dict[str, str]:
    """The votes routing counts: of sources other than the model, on a label of the project,
    with at least `min_judged` (and at least one) votes checked by people."""
    return {
        source: label
        for source, label in votes.items()
        if source != MODEL_SOURCE and label in model.index and model.judged(source) >= max(min_judged, 1)
    }


def held_out_posteriors(
    model: LabelModel,
    probabilities: np.ndarray,
    votes: Sequence[Mapping[str, str]],
    truth: Sequence[str],
    min_judged: int,
) -> tuple[np.ndarray, int]:
    """The posterior routing would compute for each row of a calibration sample (retraining's
    out-of-fold model probabilities, `probabilities` [n, k], each item's recorded `votes` and its
    human label in `truth`), with the item's own answer left out of the confusion counts: `model`
    learned from the same human labels, and counting an item's own (vote, label) pair would
    explain its very mistakes (a rule's one wrong vote for label b on an item of label a is all
    the evidence `theta[a, b]` has) and make the posterior look sharper, and so the threshold
    laxer, than it is on new items. Leave-one-out removes one count of (label, vote) per voting
    source (none below zero: an item never counted stays as it is). Rows with no trusted vote
    keep their probabilities exactly. Returns the posteriors and how many rows changed."""
    out = np.array(probabilities, dtype=float, copy=True)
    if out.ndim != 2 or out.shape[1] != model.k:
        raise ValueError(f"probabilities of shape {out.shape} for {model.k} labels")
    if not (len(votes) == len(truth) == out.shape[0]):
        raise ValueError("probabilities, votes and truth must have one row per item")
    prior = np.stack([model._prior_row(y) for y in range(model.k)])
    empty = np.zeros((model.k, model.k + 1))
    changed = 0
    for i, (cast, label) in enumerate(zip(votes, truth, strict=True)):
        trusted = trusted_votes(model, cast, min_judged)
        if not trusted:
            continue
        truth_index = model.index.get(label)
        log_post = np.log(np.clip(out[i], 1e-12, None))
        for source, voted in trusted.items():
            counts = model.counts.get(source, empty)
            column = model.index[voted]
            numerator = counts[:, column] + prior[:, column]
            denominator = counts.sum(axis=1) + prior.sum(axis=1)
            if truth_index is not None and counts[truth_index, column] >= 1:
                numerator = numerator.copy()
                denominator = denominator.copy()
                numerator[truth_index] -= 1
                denominator[truth_index] -= 1
            log_post = log_post + np.log(numerator / denominator)
        log_post -= log_post.max()
        post = np.exp(log_post)
        out[i] = post / post.sum()
        changed += 1
    return out, changed
