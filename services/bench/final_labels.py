"""The bench's view of one project's final labels: the raw `labels` topic, tailed as it grows.

`labelloop bench` limits what it submits by, and ends on, what this watcher has read: an item
counts as finished when its final label is in the topic of record, not when a Redis counter says
so (a counter that drifts from the topic would end the run early or stall it). The watcher starts
at the topic's end offsets, which are taken before the project is created, so it reads every
label of the (new) project and nothing older.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from google.protobuf.message import DecodeError

from labelloop.bench.report import FinalLabel, from_event
from labelloop.core import kafka_clients
from labelloop.core.topics import LABELS, item_key

__all__ = ["FinalLabelWatcher"]


class FinalLabelWatcher:
    """A background reader of `<prefix>.labels` that keeps the latest final label per item of
    `project_id` (the rule compaction applies) and wakes waiters on every new one.

    Create it before the project exists (it starts at the end offsets of that moment), then
    :meth:`watch` the project; close it (or use it as a context manager) to stop the thread and
    the consumer. Raises LookupError when the topic does not exist.
    """

    def __init__(self, bootstrap: str, prefix: str, poll_s: float = 0.2) -> None:
        self._name = LABELS.name(prefix)
        self._poll_s = poll_s
        self._consumer = kafka_clients.reader(bootstrap, "labelloop-bench-labels")
        try:
            marks = kafka_clients.watermarks(self._consumer, self._name)
            if not marks:
                raise LookupError(f"topic {self._name} does not exist (is the stack up?)")
        except BaseException:
            self._consumer.close()
            raise
        self._start = [kafka_clients.TopicPartition(self._name, p, high) for p, (_, high) in marks.items()]
        self._wanted = b""
        self._project_id = ""
        self._closed = False
        self._finals: dict[str, FinalLabel] = {}
        self._events = 0
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labelloop-bench-labels", daemon=True)

    def watch(self, project_id: str) -> None:
        """Start reading the labels of `project_id` (from the offsets taken at construction)."""
        self._wanted = item_key(project_id, "").encode()
        self._project_id = project_id
        self._consumer.assign(self._start)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                records = kafka_clients.consume_available(self._consumer, 5000, self._poll_s)
                new: list[FinalLabel] = []
                for record in records:
                    if not (record.key() or b"").startswith(self._wanted):
                        continue
                    event = _label(record.value())
                    if event is not None and event.ingested.item.project_id == self._project_id:
                        new.append(from_event(event))
                if new:
                    with self._changed:
                        for label in new:
                            self._finals[label.item_id] = label
                        self._events += len(new)
                        self._changed.notify_all()
        except BaseException as exc:  # reported to the waiters
            with self._changed:
                self._error = exc
                self._changed.notify_all()

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"reading {self._name} failed: {self._error}") from self._error

    def count(self) -> int:
        """Items of the project with a final label so far."""
        with self._changed:
            self._check()
            return len(self._finals)

    def wait_beyond(self, count: int, timeout_s: float) -> int:
        """Wait until more than `count` items have a final label, at most `timeout_s`; returns
        the number now."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._finals) > count or self._error is not None, timeout_s)
            self._check()
            return len(self._finals)

    def finals(self) -> dict[str, FinalLabel]:
        """The latest final label per item id read so far (a copy)."""
        with self._changed:
            self._check()
            return dict(self._finals)

    @property
    def events(self) -> int:
        """Label events read so far (more than the items when an item was labeled twice)."""
        with self._changed:
            return self._events

    def close(self) -> None:
        """Stop the thread and close the consumer (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if not self._closed and not self._thread.is_alive():
            self._closed = True
            self._consumer.close()

    def __enter__(self) -> FinalLabelWatcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _label(value: bytes | None) -> Any:
    """The decoded label, or None for a tombstone or a corrupt record (not a label)."""
    if value is None:
        return None
    try:
        return LABELS.decode(value)
    except DecodeError:
        return None
