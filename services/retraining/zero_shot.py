"""The zero-shot prior: a model version built from the label names alone, served before the first
human label (issue 10, item 4: cold start from label names).

For a text project with no champion, retraining builds this version with no human label and the
lifecycle serves it (``RetrainingService`` finds such projects when it schedules). It is a
version of the existing ``cascade`` serving family (``core/triton_model/model.py``,
``services/inference/cascade.py``), so nothing new serves it:

- the fast stage is a scikit-learn ``DummyClassifier(strategy="uniform")``: probability
  ``1 / n`` for every label, and the bar (:data:`BAR`, above every probability) makes every item
  ESCALATE to the encoder stage;
- the encoder stage's head is the label prototypes: a ``core/encoder_runtime.LinearHead`` with
  ``coef = normalize(embed(label text)) / T`` and intercept 0, so on an item's unit-length
  embedding ``x`` it returns ``softmax(cos(x, label) / T)`` over the labels (for two labels the
  head's binary form, ``coef = (e1 - e0) / T``, gives the same softmax).

The label text is ``"<name>: <description>"`` (the description from
``ProjectSpec.label_descriptions``, optional), with ``.``, ``_`` and ``-`` in names turned into
spaces (``comp.sys.mac.hardware`` -> ``comp sys mac hardware``). ``T`` is
:data:`DEFAULT_TEMPERATURE` (0.05, ``LABELLOOP_ZERO_SHOT_TEMPERATURE``): cosine similarities of
all-MiniLM-L6-v2 between a text and short label phrases differ by a few hundredths to a few
tenths, and at 0.05 a difference of 0.1 is a probability ratio of e^2 (7.4), so the prior is
neither flat nor certain. Nothing was tuned to a stream.

What it is for: the version serves with the threshold that admits nothing (``core/thresholds``,
NOTHING) and exploration 0, so routing sends every item to people as UNCERTAIN with the margin of
the prior as priority (uncertainty sampling on the prior: the most ambiguous items first) instead
of NO_MODEL in arrival order. People's answers are recorded against this version like any
model's (``core/answers.AnswerLedger``) and the lifecycle's ``move_threshold`` loosens its
threshold when the weighted lower bound at some threshold meets the target: "once audits confirm
it, it may auto-label", with no mechanism of its own.

The first trained model replaces it (:func:`is_prior`): the gate never compares a candidate with
the prior, because a score on the first ten held-out labels says little and the prior cannot
improve, while a trained model does at every retraining. Its registered version carries the
tags ``family`` = ``zero-shot`` and ``human_labels`` = ``0``, so the retraining trigger resumes
from it as a model trained on no human label (the next training is due after
``LABELLOOP_RETRAIN_EVERY_LABELS`` labels of at least two classes).
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.dummy import DummyClassifier

from labelloop.core import encoder_runtime, model_repository
from labelloop.core.projects import ProjectStore
from labelloop.v1 import common_pb2

__all__ = [
    "BAR",
    "DEFAULT_TEMPERATURE",
    "FAMILY_NAME",
    "PriorScan",
    "ZeroShotModel",
    "ZeroShotPrior",
    "is_prior",
    "label_text",
    "prototype_head",
]

log = logging.getLogger("retraining.zero_shot")

FAMILY_NAME = "zero-shot"
"""The registered version's ``family`` tag (the Triton version's family is ``cascade``)."""
SERVING_FAMILY = "cascade"
DEFAULT_TEMPERATURE = 0.05
"""``T`` of ``softmax(cos / T)`` (see the module doc)."""
BAR = 1.01
"""The fast stage's bar: above every probability, so every item escalates to the prototypes."""
HEAD_FILE = "head.npz"
RUNTIME_FILE = "encoder_runtime.py"

_SEPARATORS = re.compile(r"[._\-]+")


def label_text(name: str, description: str = "") -> str:
    """The text a label's prototype is the embedding of: the name with ``.``, ``_`` and ``-``
    turned into spaces, then ``": <description>"`` when it has one."""
    words = " ".join(_SEPARATORS.sub(" ", name).split())
    description = " ".join(description.split())
    return f"{words}: {description}" if description else words


def prototype_head(
    label_embeddings: np.ndarray, labels: Sequence[str], temperature: float = DEFAULT_TEMPERATURE
) -> encoder_runtime.LinearHead:
    """The head whose ``predict_proba`` on unit-length embeddings is ``softmax(cos(x, e_k) / T)``
    over the labels (``e_k`` = row ``k`` of ``label_embeddings``, normalized here). ValueError
    for a non-positive temperature, a zero row, or rows that do not match the labels."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    rows = np.asarray(label_embeddings, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] != len(labels):
        raise ValueError(f"{rows.shape} label embeddings for {len(labels)} labels")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a label embedding is zero")
    scaled = rows / norms / temperature
    if len(labels) == 2:  # the head's binary form: sigmoid((e1 - e0) . x / T) = softmax's second column
        coef, intercept = (scaled[1] - scaled[0])[None, :], np.zeros(1)
    else:
        coef, intercept = scaled, np.zeros(len(labels))
    return encoder_runtime.LinearHead(coef, intercept, list(labels), list(labels))


def is_prior(family_tag: str | None) -> bool:
    """True for a registered version's ``family`` tag of the zero-shot prior."""
    return family_tag == FAMILY_NAME


def _uniform_stage(labels: Sequence[str]) -> DummyClassifier:
    """A fitted scikit-learn classifier that gives every label ``1 / n`` whatever the text."""
    stage = DummyClassifier(strategy="uniform", random_state=0)
    stage.fit(np.zeros((len(labels), 1)), list(labels))
    return stage


@dataclass
class ZeroShotModel:
    """The prior for one label set: ``predict_proba`` is what the served version answers (the
    fast stage's uniform probabilities always escalate, so the prototypes' answer)."""

    labels: list[str]
    label_texts: list[str]
    head: encoder_runtime.LinearHead
    embed: Callable[[list[str]], np.ndarray]
    encoder_id: str
    dim: int
    temperature: float
    params: dict[str, Any] = field(default_factory=dict)
    family: str = FAMILY_NAME

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``softmax(cos(item, label) / T)``, columns in label order."""
        if not texts:
            return np.zeros((0, len(self.labels)))
        return self.head.predict_proba(self.embed(list(texts)))

    def write_version(self, repo: Path, model_name: str, version: int) -> Path:
        """Write as a ``cascade`` version (``core/triton_model/model.py``'s CascadePredictor):
        the uniform fast stage, the prototype head, the runtime, and ``metadata.bar`` above 1."""
        fast = _uniform_stage(self.labels)

        def write_files(directory: Path) -> None:
            joblib.dump(fast, directory / model_repository.SKLEARN_PIPELINE_FILE)
            self.head.save(directory / HEAD_FILE)
            shutil.copyfile(encoder_runtime.__file__, directory / RUNTIME_FILE)

        return model_repository.write_version(
            repo,
            model_name,
            version,
            SERVING_FAMILY,
            self.labels,
            write_files,
            artifacts={
                "pipeline": model_repository.SKLEARN_PIPELINE_FILE,
                "head": HEAD_FILE,
                "runtime": RUNTIME_FILE,
            },
            metadata={
                "bar": BAR,
                "encoder_id": self.encoder_id,
                "embedding_dim": self.dim,
                "prior": FAMILY_NAME,
                "label_texts": self.label_texts,
                "params": self.params,
            },
        )


@dataclass(frozen=True)
class ZeroShotPrior:
    """Builds the prior of a label set with the shared encoder (``embed``: texts -> unit-length
    embeddings of encoder ``encoder_id``, the one the inference cascade asks Triton for)."""

    embed: Callable[[list[str]], np.ndarray]
    encoder_id: str
    dim: int
    temperature: float = DEFAULT_TEMPERATURE

    def build(self, labels: Sequence[str], descriptions: Mapping[str, str] | None = None) -> ZeroShotModel:
        """The prior of ``labels`` (with their optional descriptions)."""
        labels = [str(x) for x in labels]
        texts = [label_text(x, (descriptions or {}).get(x, "")) for x in labels]
        head = prototype_head(self.embed(texts), labels, self.temperature)
        params: dict[str, Any] = {
            "family": FAMILY_NAME,
            "temperature": self.temperature,
            "bar": BAR,
            "described_labels": sum(1 for x in labels if (descriptions or {}).get(x, "").strip()),
            "n_labels": len(labels),
        }
        return ZeroShotModel(
            labels, texts, head, self.embed, self.encoder_id, self.dim, self.temperature, params
        )


class PriorScan:
    """Which text projects to offer a prior: each project once per process (the prior itself
    checks for a champion, so an old project costs one MLflow read), a failed one again after
    `retry_s`. The project list is read at most every `every_s` seconds (the retraining loop
    calls `due` after every batch and when idle). Thread-safe; `clock` is injectable."""

    def __init__(self, retry_s: float, every_s: float = 2.0, clock: Callable[[], float] = time.monotonic):
        self.retry_s = retry_s
        self.every_s = every_s
        self.clock = clock
        self._offered: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._next_scan = 0.0
        self._lock = threading.Lock()

    def due(self, projects: ProjectStore) -> list[str]:
        """Text projects not offered yet (or whose offer failed `retry_s` ago), now marked offered."""
        now = self.clock()
        with self._lock:
            if now < self._next_scan:
                return []
            self._next_scan = now + self.every_s
        try:
            listed = projects.list()
        except Exception as exc:  # Redis down: the next call tries again; never fails the loop
            log.warning("zero-shot prior: cannot list projects: %s", exc)
            return []
        out = []
        with self._lock:
            for project in listed:
                pid = project.spec.project_id
                if project.spec.modality != common_pb2.MODALITY_TEXT or pid in self._offered:
                    continue
                if now < self._retry_at.get(pid, 0.0):
                    continue
                self._offered.add(pid)
                out.append(pid)
        return out

    def failed(self, pid: str) -> None:
        """The offer of `pid` failed: offer it again after `retry_s`."""
        with self._lock:
            self._offered.discard(pid)
            self._retry_at[pid] = self.clock() + self.retry_s
