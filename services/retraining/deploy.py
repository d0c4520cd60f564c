"""The mechanics of putting a model version in front of traffic: the model repository and
Triton. No policy and no state of its own: `lifecycle.ModelLifecycle` decides what serves and
under which threshold, and is the only writer of both; it calls `Deployer.install` between its
threshold writes (the order is in lifecycle.py's docstring).

`install` writes the version into the repository (atomic: a hidden staging dir renamed to its
number) and waits until Triton serves it; on a load failure it removes the version from disk (a
Triton restart cannot pick it up), reloads the previous one and raises. `reconcile` removes, at
start, what a crash mid-deploy left on disk (the champion in MLflow is the truth).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from labelloop.core import model_repository
from labelloop.core.errors import DependencyUnavailable, PoisonMessage
from labelloop.core.model_repository import ModelLoadError
from labelloop.core.thresholds import Threshold

__all__ = ["Deployer", "copy_version", "stricter", "triton_predict"]

log = logging.getLogger(__name__)


def stricter(a: Threshold, b: Threshold) -> Threshold:
    """The threshold that admits only what both `a` and `b` admit (per class; for multi-label
    projects per label and side: a label missing from either is never confident)."""
    classes = set(a.class_thresholds) | set(b.class_thresholds)
    labels = set(a.label_upper) & set(b.label_upper)
    return replace(
        a,
        threshold=max(a.threshold, b.threshold),
        class_thresholds={c: max(a.for_label(c), b.for_label(c)) for c in classes},
        label_upper={x: max(a.label_upper[x], b.label_upper[x]) for x in labels},
        label_lower={x: min(a.label_lower.get(x, -1.0), b.label_lower.get(x, -1.0)) for x in labels},
        rescore_threshold=max(a.rescore_threshold, b.rescore_threshold),
        rescore_class_thresholds={
            c: max(a.rescore_for(c), b.rescore_for(c))
            for c in set(a.rescore_class_thresholds) | set(b.rescore_class_thresholds)
        },
    )


def copy_version(
    repo: Path, model_name: str, version: int, source_dir: Path, pause: Callable[[], None] | None = None
) -> Path:
    """Write the Triton version directory `source_dir` (any family) as `version` of
    `model_name` in `repo`, atomically. `pause` (fault injection) runs midway through the copy."""
    meta = json.loads((source_dir / model_repository.LABELS_FILE).read_text())
    skip = {model_repository.LABELS_FILE, model_repository.MODEL_FILE}
    files = sorted(p for p in source_dir.iterdir() if p.name not in skip)

    def write(directory: Path) -> None:
        for i, path in enumerate(files):
            if pause is not None and i == len(files) // 2:
                pause()
            if path.is_dir():
                shutil.copytree(path, directory / path.name)
            else:
                shutil.copy2(path, directory / path.name)
        if pause is not None and not files:
            pause()

    return model_repository.write_version(
        repo,
        model_name,
        version,
        str(meta["family"]),
        [str(x) for x in meta["labels"]],
        write,
        artifacts=meta.get("artifacts") or {},
        metadata=meta.get("metadata") or {},
    )


def triton_predict(
    url: str,
    model_name: str,
    texts: list[str],
    batch: int = 64,
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> np.ndarray:
    """PROBS of the version Triton serves for `texts` (columns: that version's labels), asked
    through the one Triton client (core/triton_client.py).

    For a cascade model (one with an ESCALATE output) and given `embed` (texts -> embeddings of
    the shared encoder), the escalated rows get the model's encoder-stage answer, as the
    inference service serves them; without `embed` they keep the fast stage's.
    DependencyUnavailable when the model does not serve or does not answer."""
    from labelloop.core.triton_client import ModelMissing, TritonClassifier

    classifier = TritonClassifier(url)
    try:
        if not texts:
            return np.zeros((0, 0))
        if not classifier.model_ready(model_name):
            raise DependencyUnavailable("triton", f"model {model_name} is not loaded")
        answer = classifier.predict(model_name, texts, batch)
        probs = np.asarray(answer.probabilities, dtype=np.float64)
        if embed is not None and answer.escalate is not None:
            rows = np.nonzero(answer.escalate)[0]
            if len(rows):
                chosen = [texts[i] for i in rows]
                probs[rows] = classifier.predict_embedded(
                    model_name, answer.model_version, chosen, embed(chosen), batch
                )
        return probs
    except (ModelMissing, PoisonMessage) as exc:
        raise DependencyUnavailable("triton", f"{model_name}: {exc}") from exc
    finally:
        classifier.close()


class Deployer:
    """Installs versions of each project's model, one installation per model at a time."""

    def __init__(
        self,
        repo: Path,
        triton_url: str,
        load_timeout_s: float = 120.0,
        fault_pause_s: float = 0.0,
    ) -> None:
        self.repo = repo
        self.triton_url = triton_url
        self.load_timeout_s = load_timeout_s
        self.fault_pause_s = fault_pause_s
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, model_name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(model_name, threading.Lock())

    def install(self, model_name: str, source_dir: Path) -> int:
        """Write `source_dir` as the next version of `model_name` and wait until Triton serves
        it (caller holds `lock(model_name)`). Returns the Triton version. Raises ModelLoadError
        or DependencyUnavailable with the version removed and the previous one still serving."""
        version = model_repository.next_version(self.repo, model_name)
        pause = None
        if self.fault_pause_s > 0:
            stop = threading.Event()

            def pause() -> None:
                log.warning(
                    "fault injection: pausing %.0fs while writing version %d", self.fault_pause_s, version
                )
                stop.wait(self.fault_pause_s)

        copy_version(self.repo, model_name, version, source_dir, pause)
        try:
            served = model_repository.load_and_wait(self.triton_url, model_name, self.load_timeout_s)
            if served != version:
                raise ModelLoadError(f"Triton serves version {served} of {model_name!r}, not {version}")
        except (ModelLoadError, DependencyUnavailable) as exc:
            self._undo(model_name, version)
            log.warning("%s: version %d did not load: %s", model_name, version, exc)
            raise
        return version

    def _undo(self, model_name: str, version: int) -> None:
        with contextlib.suppress(Exception):
            model_repository.remove_version(self.repo, model_name, version)
        if model_repository.list_versions(self.repo, model_name):
            try:
                model_repository.load_and_wait(self.triton_url, model_name, self.load_timeout_s)
            except Exception as exc:  # the old version normally never stopped serving
                log.warning("reloading %s after a failed load: %s", model_name, exc)

    def reconcile(self, model_name: str, champion_triton_version: int) -> list[int]:
        """At start: remove staging leftovers and every version on disk newer than the
        champion's (written but never announced: a crash mid-deploy). Returns removed versions."""
        model_dir = model_repository.model_dir(self.repo, model_name)
        if not model_dir.is_dir():
            return []
        for leftover in model_dir.glob(f"{model_repository.TMP_PREFIX}*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        removed = [
            v for v in model_repository.list_versions(self.repo, model_name) if v > champion_triton_version
        ]
        for v in removed:
            model_repository.remove_version(self.repo, model_name, v)
        if removed and model_repository.list_versions(self.repo, model_name):
            try:
                model_repository.load_and_wait(self.triton_url, model_name, self.load_timeout_s)
            except Exception as exc:
                log.warning("reloading %s after reconcile: %s", model_name, exc)
        return removed


def served_labels(repo: Path, model_name: str, version: int) -> list[str]:
    """The output columns of a served version (its labels.json)."""
    meta: dict[str, Any] = model_repository.read_labels(repo, model_name, version)
    return [str(x) for x in meta["labels"]]
