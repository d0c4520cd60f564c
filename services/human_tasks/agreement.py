"""Per-annotator agreement: with the consensus of the tasks they answered, and with the reviews
of the labels they gave.

Human-tasks owns it: when an answer completes a task (`api.py`), `agreement_updates` turns the
task's answers and verdict into counters, and `AgreementStore` adds them in Redis once per task
(a redone answer adds nothing). The same counters are a fold of the `annotations` topic
(`replay_agreement`), which is what `labelloop annotators --project P` shows, so Redis can be
rebuilt from Kafka and the two always agree on what was counted.

Counters per annotator:
- ``answered``/``agreed``: answers to completed tasks, and those equal to the consensus (a review's
  reviewer counts here too; a review's pre-filled original answer does not);
- ``reviewed``/``upheld``: labels of theirs that were reviewed, and those the review upheld.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import redis

from labelloop.core.redis_store import Keys, unavailable
from labelloop.human_tasks.consensus import LABELS_SEPARATOR
from labelloop.v1 import events_pb2

__all__ = ["AgreementStore", "AnnotatorAgreement", "agreement_updates", "replay_agreement"]

FIELDS = ("answered", "agreed", "reviewed", "upheld")


@dataclass(frozen=True)
class AnnotatorAgreement:
    """One annotator's counters and the rates they give (None without data)."""

    annotator: str
    answered: int = 0
    agreed: int = 0
    reviewed: int = 0
    upheld: int = 0

    @property
    def consensus_agreement(self) -> float | None:
        return self.agreed / self.answered if self.answered else None

    @property
    def review_agreement(self) -> float | None:
        return self.upheld / self.reviewed if self.reviewed else None


def agreement_updates(
    answers: Mapping[str, str],
    verdict: str,
    reviewed_labels: Sequence[str] = (),
    reviewed_annotators: Sequence[str] = (),
) -> Counter[tuple[str, str]]:
    """The counter increments (annotator, field) -> n of one completed task: `answers` maps each
    annotator to the label given, `verdict` is the consensus. For a review (`reviewed_labels`
    set), the original annotators' labels are judged against the verdict instead."""
    out: Counter[tuple[str, str]] = Counter()
    originals = set(reviewed_annotators) if reviewed_labels else set()
    for annotator, label in answers.items():
        if annotator in originals or not annotator:
            continue
        out[annotator, "answered"] += 1
        out[annotator, "agreed"] += int(label == verdict)
    if reviewed_labels:
        for annotator in originals:
            out[annotator, "reviewed"] += 1
            out[annotator, "upheld"] += int(verdict in reviewed_labels)
    return out


def replay_agreement(events: Iterable[events_pb2.AnnotationSubmitted]) -> list[AnnotatorAgreement]:
    """Fold one project's `annotations` (in topic order) into each annotator's counters: a task's
    answers are gathered until the answer that carries the consensus. An answer re-sent under the
    same lease counts once."""
    pending: dict[str, dict[str, str]] = {}
    seen_leases: set[str] = set()
    totals: Counter[tuple[str, str]] = Counter()
    for event in events:
        if event.lease_id:
            if event.lease_id in seen_leases:
                continue
            seen_leases.add(event.lease_id)
        answers = pending.setdefault(event.task_id, {})
        # A multi-label answer counts as its whole label list (exact agreement, as api.py counts).
        answers[event.annotator_id] = LABELS_SEPARATOR.join(event.labels)
        if event.consensus_labels or event.consensus_no_label:
            totals.update(
                agreement_updates(
                    answers,
                    LABELS_SEPARATOR.join(event.consensus_labels),
                    list(event.reviewed_labels),
                    list(event.reviewed_annotators),
                )
            )
            del pending[event.task_id]
    return _table(totals)


def _table(totals: Mapping[tuple[str, str], int]) -> list[AnnotatorAgreement]:
    by: dict[str, dict[str, int]] = {}
    for (annotator, name), n in totals.items():
        by.setdefault(annotator, {})[name] = n
    return [AnnotatorAgreement(a, **by[a]) for a in sorted(by)]


# KEYS: counted set, counters hash ; ARGV: task token, then field/delta pairs. Adds the counters
# once per task token (a redone answer's events add nothing).
_ADD_ONCE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], tonumber(ARGV[i + 1])) end
return 1
"""


class AgreementStore:
    """The counters in Redis: hash `annotator_agreement:<project>` (field `<annotator>\\t<name>`)
    and the set `annotator_agreement_tasks:<project>` of tasks already counted."""

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self.client = client
        self.k = Keys(key_prefix)
        self._add_once = client.register_script(_ADD_ONCE)

    def add(self, project_id: str, task_token: str, updates: Mapping[tuple[str, str], int]) -> bool:
        """Add a completed task's counters unless `task_token` was counted before. True: added."""
        args: list[str | int] = [task_token]
        for (annotator, name), n in sorted(updates.items()):
            args += [f"{annotator}\t{name}", n]
        try:
            added = self._add_once(
                keys=[
                    self.k("annotator_agreement_tasks", project_id),
                    self.k("annotator_agreement", project_id),
                ],
                args=args,
            )
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return bool(added)

    def read(self, project_id: str) -> list[AnnotatorAgreement]:
        """Every annotator's counters in the project, by annotator id."""
        try:
            raw = self.client.hgetall(self.k("annotator_agreement", project_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        totals: Counter[tuple[str, str]] = Counter()
        for key, value in raw.items():  # type: ignore[union-attr]
            annotator, _, name = (key.decode() if isinstance(key, bytes) else str(key)).rpartition("\t")
            if name in FIELDS:
                totals[annotator, name] = int(value)
        return _table(totals)
