"""The human-tasks consume loop: `tasks` fill the queues, and newly deployed models take waiting
work off people's hands.

- A task routed to people is queued (idempotent by task id).
- A `models` DEPLOYED event sends each waiting task of that project that nobody has leased or
  answered back to `items` as a *rescore* (``ItemIngested.rescore``), up to ``rescore_limit``.
  Inference asks the new model; when routing would auto-label the item, it answers with a
  withdrawal (the ``withdraw`` case of ``TaskRouted.command``, with the auto-label) instead of a label.
- A withdrawal removes the task atomically if it is still untouched, and only then hands its
  auto-label to the final-label fence (core/final_labels.py), which publishes it unless the item
  already has a final label (a second withdrawal, from a later deploy, publishes nothing); a task
  someone has leased or answered stays with people. So an item gets one final label, from the
  model or from people, never both. A withdrawal that carries an audit (routing's audit draw)
  sends it to `tasks` when its label is published (again on a redelivery: queueing is
  idempotent), so the audit is queued, and recorded, as every other task.

Routing decides when an item arrives; without rescoring, items that arrived just before a model
was deployed (every item before the first model) would wait for people even though the new
model is sure of them.
"""

from __future__ import annotations

import logging

from labelloop.core import metrics
from labelloop.core.final_labels import FinalLabelWriter, Outcome
from labelloop.core.stream import Batch
from labelloop.core.topics import ITEMS, MODELS, TASKS, item_key
from labelloop.human_tasks.queue import TaskQueue
from labelloop.v1 import events_pb2

log = logging.getLogger(__name__)


class TaskHandler:
    """Handles batches of `tasks` and `models` events (see the module doc)."""

    def __init__(self, queue: TaskQueue, writer: FinalLabelWriter, rescore_limit: int) -> None:
        self.queue = queue
        self.writer = writer
        self.rescore_limit = rescore_limit

    def __call__(self, batch: Batch) -> None:
        new: list[events_pb2.TaskRouted] = []
        withdrawals: list[events_pb2.TaskRouted] = []
        deployed: list[str] = []
        for event in batch.events:
            if event.topic is MODELS:
                if event.message.kind == events_pb2.MODEL_EVENT_KIND_DEPLOYED:
                    deployed.append(event.message.project_id)
            elif event.message.HasField("withdraw"):
                withdrawals.append(event.message)
            else:
                new.append(event.message)
        if new:
            self.queue.enqueue(new)
        taken = [task.withdraw for task in withdrawals if self._withdraw(task)]
        withdrawn = [withdrawal.label for withdrawal in taken]
        outcomes = self.writer.finalize(withdrawn, batch.emit, over_people=True, emitted=batch.claims)
        confirmed = [label for label, outcome in zip(withdrawn, outcomes, strict=True) if outcome.publish]
        if confirmed:
            batch.after_flush(lambda: self.writer.confirm(confirmed))
        for withdrawal, outcome in zip(taken, outcomes, strict=True):
            if outcome.publish and withdrawal.HasField("audit"):
                item = withdrawal.audit.ingested.item
                batch.emit(TASKS, item_key(item.project_id, item.item_id), withdrawal.audit)
        fresh = [label for label, outcome in zip(withdrawn, outcomes, strict=True) if outcome is Outcome.NEW]
        for label in fresh:
            metrics.TASKS_WITHDRAWN.labels(label.ingested.item.project_id).inc()
        if fresh:
            log.info("withdrew %d waiting tasks: a newer model auto-labeled them", len(fresh))
        if self.rescore_limit:
            for project_id in dict.fromkeys(deployed):
                self._rescore(batch, project_id)

    def _withdraw(self, task: events_pb2.TaskRouted) -> bool:
        """True when the task was untouched and is now withdrawn (now or by an earlier delivery:
        the fence publishes its label at most once)."""
        return self.queue.withdraw(task.ingested.item.project_id, task.ingested.item.item_id)

    def _rescore(self, batch: Batch, project_id: str) -> None:
        waiting = self.queue.untouched(project_id, self.rescore_limit)
        for task in waiting:
            again = events_pb2.ItemIngested()
            again.CopyFrom(task.ingested)
            again.rescore.requested_at.GetCurrentTime()
            batch.emit(ITEMS, item_key(project_id, again.item.item_id), again)
        if waiting:
            log.info(
                "%s: a model was deployed; %d waiting tasks sent back for its opinion",
                project_id,
                len(waiting),
            )
