"""Live auto-accept thresholds per project, held in Redis: written by retraining (its model
lifecycle: deploys, promotions, rollbacks and moves from people's answers), read by routing on
every prediction (cached for a second).

Until a project has a calibrated threshold, `NOTHING` (2.0, above any probability) applies, so
every item goes to people. The record also carries the exploration rate: the share of items
above the threshold that routing sends to people anyway (see retraining/calibration.py), and
what the threshold was calibrated on (`sources_min_judged`: the model's probabilities, or the
label model's posterior with the other sources' votes).

Multi-label projects use `label_upper` / `label_lower` instead of the global threshold: per label,
a probability at or above its upper threshold is a confident "on", at or below its lower one a
confident "off"; a label with no pair is never confident (routing/decisions.py `decide_labels`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from labelloop.core.redis_store import Keys, unavailable

NOTHING = 2.0  # a threshold above 1 admits nothing


@dataclass(frozen=True)
class Threshold:
    """The auto-accept rule of one project: a global threshold and optional per-class overrides."""

    threshold: float = NOTHING
    class_thresholds: dict[str, float] = field(default_factory=dict)
    model_version: int = 0
    exploration_rate: float = 0.0  # share of admitted items sent to people instead
    sources_min_judged: int = 0
    """0: calibrated on the model's probabilities, and routing compares those. N > 0: calibrated
    on the label model's posterior counting the sources with at least N votes checked by people
    (retraining/posterior.py), so routing compares that posterior, with the same N."""
    # The serving version is the zero-shot prior (retraining/zero_shot.py): routing orders
    # people's work by its classes (routing/decisions.prior_priority) instead of its margin.
    prior: bool = False
    label_upper: dict[str, float] = field(default_factory=dict)  # multi-label: "on" at or above
    label_lower: dict[str, float] = field(default_factory=dict)  # multi-label: "off" at or below
    answers_at_move: int = 0
    """How many answers to this version's tasks were held when its thresholds last moved (0: not
    moved since it started serving). The next move waits for new ones (`awaits_answers`)."""
    explored_labels: int = 0
    """Human labels of confident items (exploration, audits) the version was trained with: with
    the answers to its own explored and audited tasks they set `exploration_rate`, which falls
    between trainings too (retraining/lifecycle.move_threshold)."""

    rescore_threshold: float = 0.0
    rescore_class_thresholds: dict[str, float] = field(default_factory=dict)
    """What a waiting task's new prediction must also reach to be auto-labeled and withdrawn
    (a deploy's rescore): calibrated on the labels of items people got with probability 1
    (retraining/evaluation.calibrate_rescores). 0 and {}: nothing more than `threshold`."""

    def for_rescores(self) -> Threshold:
        """The rule for a rescored waiting task: each label's threshold is the stricter of its
        own and its rescore threshold."""
        if not self.rescore_threshold and not self.rescore_class_thresholds:
            return self
        labels = set(self.class_thresholds) | set(self.rescore_class_thresholds)
        return replace(
            self,
            threshold=max(self.threshold, self.rescore_threshold),
            class_thresholds={label: max(self.for_label(label), self.rescore_for(label)) for label in labels},
        )

    def rescore_for(self, label: str) -> float:
        """The rescore threshold of `label` (its class's, else the global one)."""
        return self.rescore_class_thresholds.get(label, self.rescore_threshold)

    def awaits_answers(self, answers: int, needed: int) -> bool:
        """True while fewer than `needed` answers arrived since the last move: a sample that has
        moved the thresholds once does not move them again (a tightening that found no safe
        margin would otherwise step halfway to 1 on every batch, on the same evidence)."""
        return self.answers_at_move > 0 and answers < self.answers_at_move + needed

    def admits_any(self) -> bool:
        """Single-label: True when some prediction can be auto-accepted (the global threshold or
        a class's is at most 1). Multi-label bounds are not read."""
        return self.threshold <= 1.0 or any(t <= 1.0 for t in self.class_thresholds.values())

    def for_label(self, label: str) -> float:
        """The threshold that a prediction of `label` must reach."""
        return self.class_thresholds.get(label, self.threshold)

    def admits(self, label: str, probability: float) -> bool:
        """True when a top prediction of `label` with `probability` is auto-accepted."""
        return probability >= self.for_label(label)

    def label_state(self, label: str, probability: float) -> bool | None:
        """Multi-label: one label's decision, True (a confident "on": at or above its upper
        threshold), False (a confident "off": at or below its lower one) or None (uncertain, also
        when the label has no calibrated pair). "On" is read first."""
        upper = self.label_upper.get(label)
        lower = self.label_lower.get(label)
        if upper is not None and upper <= 1.0 and probability >= upper:
            return True
        if lower is not None and lower >= 0.0 and probability <= lower:
            return False
        return None

    def auto_labels(
        self, probabilities: Mapping[str, float], labels: Sequence[str]
    ) -> tuple[str, ...] | None:
        """Multi-label: the labels of `labels` turned on when every one is decided (a label without
        a probability is not), else None: the item goes to people."""
        on: list[str] = []
        for label in labels:
            p = probabilities.get(label)
            state = None if p is None else self.label_state(label, p)
            if state is None:
                return None
            if state:
                on.append(label)
        return tuple(on)

    def to_record(self) -> dict[str, Any]:
        """The JSON form (Redis, the MLflow version tag): the one writer of its shape."""
        return {
            "threshold": self.threshold,
            "class_thresholds": dict(self.class_thresholds),
            "model_version": self.model_version,
            "exploration_rate": self.exploration_rate,
            "sources_min_judged": self.sources_min_judged,
            **({"prior": True} if self.prior else {}),
            "label_upper": dict(self.label_upper),
            "label_lower": dict(self.label_lower),
            **({"answers_at_move": self.answers_at_move} if self.answers_at_move else {}),
            **({"explored_labels": self.explored_labels} if self.explored_labels else {}),
            **({"rescore_threshold": self.rescore_threshold} if self.rescore_threshold else {}),
            **(
                {"rescore_class_thresholds": dict(self.rescore_class_thresholds)}
                if self.rescore_class_thresholds
                else {}
            ),
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any], model_version: int | None = None) -> Threshold:
        """The one parser of `to_record`'s shape (fields added later default as they did
        before they existed); `model_version` overrides the recorded one."""
        return cls(
            float(data.get("threshold", NOTHING)),
            {str(k): float(v) for k, v in (data.get("class_thresholds") or {}).items()},
            int(data.get("model_version", 0)) if model_version is None else model_version,
            float(data.get("exploration_rate", 0.0)),
            int(data.get("sources_min_judged", 0)),
            bool(data.get("prior", False)),
            label_upper={str(k): float(v) for k, v in (data.get("label_upper") or {}).items()},
            label_lower={str(k): float(v) for k, v in (data.get("label_lower") or {}).items()},
            answers_at_move=int(data.get("answers_at_move", 0)),
            explored_labels=int(data.get("explored_labels", 0)),
            rescore_threshold=float(data.get("rescore_threshold", 0.0)),
            rescore_class_thresholds={
                str(k): float(v) for k, v in (data.get("rescore_class_thresholds") or {}).items()
            },
        )


class ThresholdStore:
    """Reads and writes `<prefix>:threshold:<project>` (JSON)."""

    def __init__(self, client: redis.Redis, key_prefix: str, cache_s: float = 1.0) -> None:
        self.client = client
        self.keys = Keys(key_prefix)
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Threshold]] = {}
        self._lock = threading.Lock()

    def get(self, project_id: str) -> Threshold:
        """The project's threshold (NOTHING when none was ever set)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(project_id)
        if hit and now - hit[0] < self.cache_s:
            return hit[1]
        try:
            raw = self.client.get(self.keys("threshold", project_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        value = Threshold.from_record(json.loads(raw)) if raw else Threshold()  # type: ignore[arg-type]
        with self._lock:
            self._cache[project_id] = (now, value)
        return value

    def set(self, project_id: str, value: Threshold) -> None:
        """Publish a new threshold; routing sees it within `cache_s`."""
        data = {**value.to_record(), "updated_at": time.time()}
        try:
            self.client.set(self.keys("threshold", project_id), json.dumps(data))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        self.invalidate(project_id)

    def invalidate(self, project_id: str) -> None:
        """Forget the cached value (e.g. on a `models` event)."""
        with self._lock:
            self._cache.pop(project_id, None)
