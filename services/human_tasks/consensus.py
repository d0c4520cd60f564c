"""k-annotator consensus, as a pure function."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """The outcome of the answers so far: a label, or a tie that needs one more annotator."""

    label: str | None
    agreement: float  # share of annotators who gave `label`
    tie: bool


def majority(answers: list[str]) -> Verdict:
    """The majority label of `answers`; a tie between the top labels is `tie=True`."""
    if not answers:
        raise ValueError("no answers")
    counts = Counter(answers).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return Verdict(None, counts[0][1] / len(answers), True)
    return Verdict(counts[0][0], counts[0][1] / len(answers), False)


@dataclass(frozen=True)
class LabelsVerdict:
    """The outcome of a multi-label task's answers: the labels that are on, or a tie on some label
    that needs one more annotator."""

    labels: tuple[str, ...] | None  # in the project's label order; None on a tie
    agreement: float  # share of annotators whose whole answer equals `labels` (exact match)
    tie: bool
    tied_labels: tuple[str, ...] = ()


def per_label_majority(answers: list[tuple[str, ...]], label_set: list[str]) -> LabelsVerdict:
    """Consensus per label for multi-label answers (each answer: the labels one annotator turned
    on). A label is on when more than half of the answers have it, off when fewer than half do.
    Exactly half (an even number of annotators split evenly on a label) is a tie, as for
    single-label answers: one more annotator is asked, so k = 2 split on a label becomes 3."""
    if not answers:
        raise ValueError("no answers")
    k = len(answers)
    on: list[str] = []
    tied: list[str] = []
    for label in label_set:
        votes = sum(1 for answer in answers if label in answer)
        if 2 * votes == k:
            tied.append(label)
        elif 2 * votes > k:
            on.append(label)
    if tied:
        return LabelsVerdict(None, 0.0, True, tuple(tied))
    agreed = sum(1 for answer in answers if set(answer) == set(on))
    return LabelsVerdict(tuple(on), agreed / k, False)


LABELS_SEPARATOR = "|"  # never in a label name (core/identifiers.py LABEL_NAME)


def encode_labels(labels: list[str] | tuple[str, ...], label_set: list[str]) -> str:
    """A multi-label answer as the queue stores it: its labels in the project's order, joined."""
    chosen = set(labels)
    return LABELS_SEPARATOR.join(label for label in label_set if label in chosen)


def decode_labels(encoded: str) -> tuple[str, ...]:
    """The labels of an answer stored by `encode_labels` ("" is no label)."""
    return tuple(encoded.split(LABELS_SEPARATOR)) if encoded else ()
