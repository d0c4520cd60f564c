"""The chaos mode's plan: each fault once, in a seeded order, spread over the stream, each one
after the previous recovered, with its recovery measured from the stream moving again."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from labelloop.bench.chaos import FAULTS, Chaos


class FakeProcess:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def stop(self) -> bool:
        self.log.append(f"stop {self.name}")
        return True

    def start(self) -> None:
        self.log.append(f"start {self.name}")


class Stream:
    """Final labels that grow by 25 every time the test asks (a moving stream)."""

    def __init__(self, total: int) -> None:
        self.total, self.count, self.lock = total, 0, threading.Lock()

    def __call__(self) -> int:
        with self.lock:
            self.count = min(self.total, self.count + 25)
            return self.count


def test_every_fault_once_after_the_previous_one_recovered() -> None:
    log: list[str] = []
    faults = ("restart:redis", "restart:kafka", "outage:triton", "outage:mlflow")
    stack = SimpleNamespace(
        components=[
            SimpleNamespace(name=n, process=FakeProcess(n, log))
            for n in ("kafka", "redis", "triton", "mlflow")
        ]
    )
    chaos = Chaos(stack, Stream(1000), 1000, outage_s=0.01, seed=3, say=lambda _l: None, faults=faults)
    chaos.start()
    chaos.join(30)
    assert chaos.done
    results = chaos.results()
    assert [r["fault"] for r in results] == chaos.plan and sorted(chaos.plan) == sorted(faults)
    assert all(r["recovery_s"] is not None and not r["error"] for r in results)
    at = [r["at_final"] for r in results]
    assert at == sorted(at) and at[0] >= 1000 // 6 and at[-1] < 1000, "spread over the stream, in order"
    assert log == [
        step for f in chaos.plan for step in (f"stop {f.split(':')[1]}", f"start {f.split(':')[1]}")
    ]
    assert chaos.not_injected() == []


def test_a_stream_that_ends_first_leaves_the_rest_uninjected() -> None:
    stack = SimpleNamespace(components=[])
    chaos = Chaos(stack, lambda: 0, 100, say=lambda _l: None)
    chaos.start()
    chaos.stop()
    chaos.join(5)
    assert chaos.results() == [] and sorted(chaos.not_injected()) == sorted(FAULTS)
