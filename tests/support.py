"""Helpers for tests: waiting on conditions (never on time) and choosing free ports."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from labelloop.core.label_log import label_records
from labelloop.core.thresholds import Threshold
from labelloop.stack import StackSettings
from labelloop.v1 import events_pb2

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
_PORT_RANGE = (20000, 32767)  # below Linux's ephemeral range, so client sockets never take them
_handed_out: set[int] = set()


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    *,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `predicate` until it returns something truthy, and return that.

    Polls every `interval` seconds (the one place a short poll interval lives). Exceptions in
    `ignore` count as "not yet". Raises AssertionError with `message` (a text or a function
    producing one, e.g. with the state seen) when `timeout` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ignore as error:
            last_error = error
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            suffix = f" (last error: {last_error!r})" if last_error is not None else ""
            raise AssertionError(f"{text} — not true after {timeout:.1f}s{suffix}")
        time.sleep(interval)


def one_label_per_item(bootstrap: str, prefix: str, project_id: str) -> dict[str, events_pb2.LabelFinalized]:
    """The final label of each item of `project_id`, asserting from the RAW labels topic (every
    record, not a last-wins view; read_committed, as every consumer of the pipeline reads it)
    that no item has more than one final-label record, not even the same decision twice: a
    consume loop killed between its produce and its commit leaves an aborted transaction."""
    records = label_records(bootstrap, prefix, project_id)
    many = {
        item_id: [(label.source, list(label.labels), label.model_version) for label in labels]
        for item_id, labels in records.items()
        if len(labels) > 1
    }
    shown = dict(list(many.items())[:5])
    assert not many, f"{len(many)} items have more than one final label (source, labels, model): {shown}"
    return {item_id: labels[0] for item_id, labels in records.items()}


def exact_match_precision(served: Threshold, probs: Any, truth: Any, labels: Sequence[str]) -> float:
    """Of the rows (each label's probability, people's labels as booleans) that `served`'s
    multi-label pairs auto-label, the share whose labels are exactly right (nan: none)."""
    right = []
    for row, want in zip(probs, truth, strict=True):
        on = served.auto_labels(dict(zip(labels, row, strict=True)), labels)
        if on is not None:
            right.append(set(on) == {x for x, t in zip(labels, want, strict=True) if t})
    return sum(right) / len(right) if right else float("nan")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on now and that this process has not handed out.

    Picked at random below the ephemeral range and checked by binding it (never port 0, whose
    answer would be an ephemeral port that any outgoing connection may take next).
    """
    for _ in range(200):
        port = random.randint(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port found in {_PORT_RANGE}")


def private_stack_settings(stack_dir: Path) -> StackSettings:
    """Settings for a private local stack in `stack_dir` on free ports, using the repo's Kafka jars."""
    return StackSettings(
        stack_dir=str(stack_dir),
        kafka_libs_dir=str(REPO_ROOT / ".cache" / "kafka" / "libs"),
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        redis_port=free_port(),
        triton_http_port=free_port(),
        triton_grpc_port=free_port(),
        triton_metrics_port=free_port(),
        mlflow_port=free_port(),
    )


class RpcFailure(grpc.RpcError):
    """A gRPC call's error with a status code, for fake stubs and calls in unit tests."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code
