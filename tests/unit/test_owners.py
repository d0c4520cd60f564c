"""One owner per piece of state (issue 11): the code that writes a project's threshold, its
serving version and its final labels lives in one module each. A scan of the source, so a second
writer added anywhere fails here."""

from __future__ import annotations

import re
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"


def _writers(pattern: str) -> set[str]:
    regex = re.compile(pattern)
    return {
        str(path.relative_to(SERVICES))
        for path in SERVICES.rglob("*.py")
        if "v1" not in path.parts and regex.search(path.read_text())
    }


def test_only_the_model_lifecycle_writes_thresholds() -> None:
    # the throughput bench pins its own synthetic project's threshold at 0 (a harness, no loop)
    assert _writers(r"(?i)threshold\w*(\([^)]*\))?\.set\(") == {
        "retraining/lifecycle.py",
        "bench/throughput.py",
    }


def test_only_the_model_lifecycle_writes_the_serving_version() -> None:
    assert _writers(r"(?i)serving\w*(\([^)]*\))?\.set\(") == {"retraining/lifecycle.py"}


def test_only_the_fence_produces_final_labels() -> None:
    assert _writers(r"(emit|send|produce)\(\s*LABELS\b") == {"core/final_labels.py"}
