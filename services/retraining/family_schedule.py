"""Which model families a project's next training fits: a pure schedule, no clock, no I/O.

Every family costs its fits and its calibration (five out-of-fold fits for text, three for
images, and the final fit) at each training, and the seconds a training takes are seconds in
which the serving model is older than the labels: on SpamAssassin, where TF-IDF + logistic
regression wins every training, the stream runs at 65-130 items a second, so at 80% coverage
each second sends 13-26 more items to people, and the two cascades' fits and calibration were
paid at every training (README, Benchmarks, "Families that lost clearly sit out"). So a family
that lost clearly is not fitted again until the labels have grown enough to change the verdict:

- a family never fitted for the project since the service started (the schedule lives in
  memory: a restart fits every family once) is fitted;
- after a training, a fitted family whose calibrated coverage is within ``close`` (relative) of
  the winner's (the winner included; by default only a tie) is fitted at the next training too;
- one further below has lost clearly: it waits until the labels reach ``growth ** losses`` times
  the number it lost on (``losses``: clear losses in a row, the factor capped at ``max_growth``),
  so a family that loses at 50 labels is tried again at 100, then at 400, then every 8x (a
  model's quality grows with the logarithm of its labels, so the families' order changes, if
  at all, on that scale);
- a training where no family admitted anything (coverage 0 for all) says nothing about their
  order: every family is fitted at the next one.

The winner is chosen among the fitted families only; the gate still compares it with the serving
champion on the same held-out labels (evaluation.gate), so skipping a family never serves a worse
model than the champion by that measure.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["FamilySchedule", "ScheduleRule"]


@dataclass(frozen=True)
class ScheduleRule:
    """The schedule's constants (RetrainingSettings: family_schedule_*)."""

    close: float = 0.0
    """A family whose calibrated coverage is at least ``(1 - close) * best`` did not lose clearly
    (0: any coverage below the winner's is a clear loss; ties are not)."""
    growth: float = 2.0
    """Label growth a clear loser waits for, raised to its clear losses in a row; 1: every
    family at every training (no schedule)."""
    max_growth: float = 8.0
    """Cap on the growth factor a loser waits for."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.close < 1.0:
            raise ValueError(f"close must be in [0, 1), got {self.close}")
        if self.growth < 1.0:
            raise ValueError(f"growth must be at least 1, got {self.growth}")
        if self.max_growth < 1.0:
            raise ValueError(f"max_growth must be at least 1, got {self.max_growth}")


@dataclass(frozen=True)
class _Trial:
    labels: int  # human labels of the training that last fitted the family
    losses: int  # clear losses in a row at its last trials (0: won or came close)


class FamilySchedule:
    """The families each project's next training fits (module doc). Thread-safe."""

    def __init__(self, rule: ScheduleRule | None = None) -> None:
        self.rule = rule or ScheduleRule()
        self._trials: dict[str, dict[str, _Trial]] = {}
        self._lock = threading.Lock()

    def due(self, pid: str, families: Sequence[str], labels: int) -> list[str]:
        """The names among ``families`` (in their order) that a training of ``pid`` on ``labels``
        human labels fits. Never empty when ``families`` is not."""
        with self._lock:
            trials = dict(self._trials.get(pid, {}))
        due = [name for name in families if self._is_due(trials.get(name), labels)]
        return due or list(families)

    def record(self, pid: str, labels: int, coverages: Mapping[str, float]) -> None:
        """The outcome of a training of ``pid`` on ``labels`` human labels: the calibrated
        coverage of each family it fitted (families it skipped are absent and keep their
        record)."""
        if not coverages:
            return
        best = max(coverages.values())
        with self._lock:
            if best <= 0.0:
                self._trials.pop(pid, None)  # no order among the families: all are fitted next
                return
            trials = self._trials.setdefault(pid, {})
            for name, coverage in coverages.items():
                lost = coverage < (1.0 - self.rule.close) * best
                previous = trials.get(name)
                losses = (previous.losses if previous else 0) + 1 if lost else 0
                trials[name] = _Trial(labels, losses)

    def _is_due(self, trial: _Trial | None, labels: int) -> bool:
        if trial is None or trial.losses == 0:
            return True
        factor = min(self.rule.growth**trial.losses, self.rule.max_growth)
        return labels >= factor * trial.labels
