"""What routing thresholds, when a project has sources besides the model: retraining calibrates
each candidate on the label model's posterior rather than on the model's own probabilities.

Routing (routing/router.py) compares an item's posterior `P(y | model, votes)` with the
threshold: the model's probabilities times the likelihood of each trusted source's vote
(`labelloop.core.label_model`). That posterior is sharper than the model's probabilities and,
sources being taken as independent given the label, not calibrated; a threshold set on the
model's probabilities would admit items at a lower precision than the target. So the threshold
is set on the same quantity, computed for the weighted calibration sample:

- the model's part is the out-of-fold (training split) or held-out (candidate) probability, as
  for a calibration on the model alone: a model that never saw the item;
- the votes are those the item has when routing sees it: the project's current rules applied to
  its text (what inference attaches to new items) and the votes cast apart from the prediction
  (the LLM's, stashed per item in Redis by the LLM source);
- the sources' confusion matrices are the live label model's (learned by human-tasks from the
  same human labels), with the item's own answer left out (`held_out_posteriors`), counting the
  sources with at least `min_judged` votes checked by people, as routing does.

The calibrated threshold records `sources_min_judged` (core/thresholds.py); routing routes on
the posterior only under such a threshold, so a project is switched to the posterior only once
a threshold calibrated on it serves. Between trainings the label model keeps learning, and the
threshold moves from people's answers on what routing compared (the task's prediction carries
the posterior), so it stays measured on the quantity in use. When no calibration item carries a
trusted vote, the model's probabilities are calibrated and routing stays on them (`min_judged`
0 in the record).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labelloop.core.label_model import held_out_posteriors
from labelloop.core.label_model_store import LabelModelStore
from labelloop.core.rules import RuleStore
from labelloop.retraining.dataset import HumanLabel


@dataclass(frozen=True)
class PosteriorSample:
    """A calibration sample's probabilities as routing will compare them."""

    probabilities: np.ndarray
    sources_min_judged: int  # 0: the model's own probabilities (no trusted vote on any item)
    with_votes: int  # rows whose posterior differs from the model's probabilities


class PosteriorCalibration:
    """Reads the votes of labeled items and the live label model (Redis); see the module doc."""

    def __init__(self, label_model: LabelModelStore, rules: RuleStore, min_judged: int) -> None:
        self.label_model = label_model
        self.rules = rules
        self.min_judged = min_judged

    def votes(self, project_id: str, entries: Sequence[HumanLabel]) -> list[dict[str, str]]:
        """Per entry, source -> label: the project's rules on its item, then the votes cast apart."""
        compiled = self.rules.compiled(project_id)
        late = self.label_model.late_votes_many(project_id, [x.item_id for x in entries])
        out: list[dict[str, str]] = []
        for entry, extra in zip(entries, late, strict=True):
            cast = {v.source: v.label for v in compiled.votes(entry.ingested.item)} if entry.ingested else {}
            cast.update(extra)
            out.append(cast)
        return out

    def sample(
        self, project_id: str, labels: Sequence[str], entries: Sequence[HumanLabel], probabilities: np.ndarray
    ) -> PosteriorSample:
        """`probabilities` (one row per entry, the project's label order) turned into the
        posterior routing compares, or left as they are when off (`min_judged` 0) or when no
        entry has a trusted vote."""
        if self.min_judged <= 0 or not len(entries):
            return PosteriorSample(probabilities, 0, 0)
        model = self.label_model.load(project_id, labels)
        votes = self.votes(project_id, entries)
        posterior, changed = held_out_posteriors(
            model, probabilities, votes, [x.label for x in entries], self.min_judged
        )
        if not changed:
            return PosteriorSample(probabilities, 0, 0)
        return PosteriorSample(posterior, self.min_judged, changed)
