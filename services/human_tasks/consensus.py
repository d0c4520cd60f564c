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
