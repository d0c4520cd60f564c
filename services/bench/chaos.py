"""`labelloop bench --chaos`: faults injected into the local stack while the bench streams.

A `Chaos` thread works through FAULTS in a random order (seeded), one fault at a time, each at a
random moment of its share of the stream (fault i of n, counted from 1, once between i/(n+2) and
(i+1)/(n+2) of the items have a final label, and never before the previous fault recovered). The
bench holds its last items back until every fault was injected (`injected_all`), since recoveries
let a backlog through that can outrun the plan; a fault whose moment still comes after the last
item's label (a caller that does not hold back) is not injected, and reported so:

- ``kill:<service>``: SIGKILL of the service's process group (no shutdown, no commit), then a
  restart, for ingest, inference, routing, human-tasks and retraining;
- ``restart:redis`` and ``restart:kafka``: a stop (SIGTERM) and a start;
- ``outage:triton`` and ``outage:mlflow``: stopped for `outage_s`, then started again.

Each fault's ``recovery_s`` runs from its start until the component is running and ready again
and a final label newer than its restart has been read (or every item has one): the stream
moves again (or, while the bench holds its last items back, every item sent has one). The faults act on the processes of a `labelloop.stack.LocalStack` (the one
`make up` starts, or one the caller built); counting `lost` and `duplicates` is the bench's
(from the raw labels topic, read_committed).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

SERVICE_KILLS = tuple(
    f"kill:{name}" for name in ("ingest", "inference", "routing", "human_tasks", "retraining")
)
FAULTS: tuple[str, ...] = (*SERVICE_KILLS, "restart:redis", "restart:kafka", "outage:triton", "outage:mlflow")


@dataclass
class FaultResult:
    """What one fault did, for the report."""

    fault: str
    at_final: int  # final labels read when it started
    started_s: float  # since the chaos began
    down_s: float  # from the fault until the component was running and ready again
    recovery_s: float | None = None  # start -> running again and the stream moving (None: never)
    error: str = ""


class Chaos:
    """Injects FAULTS into `stack` while `finals()` (the number of items with a final label)
    grows towards `total`. `start()`, then `join()` after the stream ends (`stop()` first if it
    ended early); `results()` lists each fault injected."""

    def __init__(
        self,
        stack: Any,
        finals: Callable[[], int],
        total: int,
        *,
        outage_s: float = 30.0,
        seed: int = 0,
        say: Callable[[str], None] = print,
        faults: tuple[str, ...] = FAULTS,
    ) -> None:
        self.stack = stack
        self.finals = finals
        self.total = total
        self.outage_s = outage_s
        self.say = say
        self.plan = list(faults)
        self._rng = random.Random(seed)
        self._rng.shuffle(self.plan)
        self._stop = threading.Event()
        self._results: list[FaultResult] = []
        self._began = 0.0
        self._thread = threading.Thread(target=self._run, name="labelloop-chaos", daemon=True)
        #: True while the caller holds its items back and every item it sent has a final label:
        #: then nothing can show the stream moving, and a fault counts as recovered once its
        #: component is back (the held items, sent after the last fault, show the rest).
        self.drained: Callable[[], bool] = lambda: False

    def start(self) -> None:
        self._began = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def done(self) -> bool:
        """Every fault was injected and has recovered (or the thread ended)."""
        return not self._thread.is_alive()

    @property
    def injected_all(self) -> bool:
        """Every fault of the plan was injected (the last may still be recovering), or the
        thread ended. The bench holds its last items back until then (bench/loop.py)."""
        return len(self._results) >= len(self.plan) or not self._thread.is_alive()

    def results(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self._results]

    def not_injected(self) -> list[str]:
        """The faults of the plan the stream ended before."""
        return self.plan[len(self._results) :]

    # -- the plan -------------------------------------------------------------------------------
    def _run(self) -> None:
        n = len(self.plan)
        for index, fault in enumerate(self.plan):
            # n + 2 shares: none in the first (the stream starts), the last left for recovering
            low = self.total * (index + 1) // (n + 2)
            high = max(low, self.total * (index + 2) // (n + 2) - 1)
            moment = self._rng.randint(low, high)
            while self.finals() < moment and not self._stop.is_set():
                self._stop.wait(0.1)
            if self._stop.is_set() or self.finals() >= self.total:
                return  # the stream ended first: the rest are reported as not injected
            result = FaultResult(fault, self.finals(), round(time.monotonic() - self._began, 2), 0.0)
            self._results.append(result)
            self.say(f"chaos: {fault} at {result.at_final}/{self.total} final labels")
            started = time.monotonic()
            try:
                restored = self._inject(fault, result)
            except Exception as exc:  # reported; the stack may need `make up`
                result.error = f"{type(exc).__name__}: {exc}"
                log.exception("chaos: %s failed", fault)
                continue
            baseline = self.finals()
            while True:  # (a stopped chaos still records a recovery it sees now)
                if self.finals() > baseline or self.finals() >= self.total or self.drained():
                    result.recovery_s = round(time.monotonic() - started, 2)
                    break
                if self._stop.wait(0.05):
                    break
            self.say(
                f"chaos: {fault}: back after {restored - started:.1f}s, stream moving after "
                f"{result.recovery_s}s"
            )

    def _component(self, name: str) -> Any:
        for component in self.stack.components:
            if component.name == name:
                return component
        raise LookupError(f"the local stack has no {name}")

    @staticmethod
    def _await_ports(process: Any, timeout_s: float = 60.0) -> None:
        """Wait until a killed process's ports are free again (its listening sockets can outlive
        it for a moment, and a start would refuse them as taken by another program)."""
        from labelloop.stack.process import port_is_free

        deadline = time.monotonic() + timeout_s
        while not all(port_is_free(p) for p in getattr(process, "ports", ())):
            if time.monotonic() > deadline:
                return  # the start says which port is taken
            time.sleep(0.1)

    def _inject(self, fault: str, result: FaultResult) -> float:
        """Cause `fault` and undo it; the time (monotonic) the component was ready again."""
        kind, name = fault.split(":", 1)
        process = self._component(name).process
        down = time.monotonic()
        if kind == "kill":
            pid = process.running_pid()
            if pid is None:
                raise RuntimeError(f"{name} is not running")
            os.killpg(pid, signal.SIGKILL)
            while process.running_pid() is not None:
                time.sleep(0.05)
            self._await_ports(process)
        else:
            process.stop()
            if kind == "outage":
                self._stop.wait(self.outage_s)
        process.start()  # returns once it is ready (StackError otherwise)
        ready = time.monotonic()
        result.down_s = round(ready - down, 2)
        return ready
