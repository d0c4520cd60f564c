"""The family ``"cascade"``: TF-IDF answers first; the encoder head answers what it is unsure of.

One model version holds both stages: the fast TF-IDF pipeline and a logistic-regression head on
all-MiniLM-L6-v2 embeddings, with a bar. The fast stage's probabilities stand when its top
probability is at least the bar; below it, the head's probabilities on the item's embedding
are combined with them (:data:`DEFAULT_COMBINE`, the mean of both stages: see
``core/encoder_runtime.combine_stages``). So the encoder (the expensive part) runs only for the
items the fast family is unsure of, which are the ones that would otherwise go to people, and the
auto path of confident items never waits for it.

Served by the Triton family ``cascade`` (``core/triton_model/model.py``): a TEXT request returns
the fast probabilities and ESCALATE per row; the inference service sends the escalated texts
again with their EMBEDDING (from the embedding store, or from the shared encoder model, then
stored) and takes the combined answer (``labelloop.inference.cascade``). In process,
:meth:`CascadeModel.predict_proba` computes the same thing, so held-out evaluation and threshold
calibration see the probabilities that will serve. The embeddings come from the embedding store
when the family has one (``MinilmFamily.store``), so training never re-encodes an item the
cascade already encoded, and the reverse.

The bar is a fixed hyper-parameter (:data:`DEFAULT_BAR`): it trades encoder load for coverage;
the project's threshold is then calibrated on the cascade's output like any family's.

Two families train this model, and every training calibrates both like any other candidates,
keeping the one whose threshold admits more: ``cascade`` (the mean) and ``cascade-replace``
(the head's probabilities alone, as before 2026-12-02). They share their fits (the TF-IDF and
head fits are kept by ``families.RecentFits``), so the second costs only its predictions. The
mean ranks items better on most streams; alone the head is surer, and where the project's other
sources (an LLM) sharpen the label model's posterior it measured better (README, "Both cascades
are calibrated, the one admitting more serves"). Both serve as the Triton family ``cascade``;
``metadata.combine`` says which.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from labelloop.core import encoder_runtime, model_repository
from labelloop.core.embeddings import EmbeddingStore
from labelloop.retraining.encoder import HEAD_FILE, RUNTIME_FILE, MinilmFamily, MinilmModel
from labelloop.retraining.tfidf import TFIDF_FAMILY, TfidfFamily, TfidfModel

__all__ = ["CASCADE_FAMILY", "CASCADE_REPLACE_FAMILY", "DEFAULT_BAR", "CascadeFamily", "CascadeModel"]

FAMILY_NAME = "cascade"
"""The Triton family of every cascade version, and the name of the family that combines by mean."""
REPLACE_FAMILY_NAME = "cascade-replace"
DEFAULT_BAR = 0.9
"""Escalate an item to the encoder stage when the fast stage's top probability is below this."""
DEFAULT_COMBINE = encoder_runtime.COMBINE_MEAN
"""How an escalated item's answer is made from both stages (``metadata.combine`` of the version)."""


@dataclass
class CascadeModel:
    """A fitted cascade: ``fast`` answers rows it is sure of (top probability >= ``bar``); the
    others get both stages' answers combined as ``combine`` says (``encoder`` is a head on
    embeddings). Columns follow the label set of both."""

    fast: TfidfModel
    encoder: MinilmModel
    bar: float
    params: dict[str, Any]
    family: str = FAMILY_NAME
    combine: str = DEFAULT_COMBINE

    def escalated(self, fast_probs: np.ndarray) -> np.ndarray:
        """The rows the fast stage is unsure of (bool per row)."""
        return fast_probs.max(axis=1) < self.bar if len(fast_probs) else np.zeros((0,), dtype=bool)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """The served probabilities: the fast stage's, combined with the head's where escalated."""
        probs = self.fast.predict_proba(texts)
        rows = np.nonzero(self.escalated(probs))[0]
        if len(rows):
            head = self.encoder.predict_proba([texts[i] for i in rows])
            probs[rows] = encoder_runtime.combine_stages(probs[rows], head, self.combine)
        return probs

    def write_version(self, repo: Path, model_name: str, version: int) -> Path:
        """Write as family ``"cascade"``: the fast pipeline, the head, the runtime (for the head's
        code) and, in ``metadata``, the bar, how the stages combine and the id of the encoder the
        head expects."""

        def write_files(directory: Path) -> None:
            joblib.dump(self.fast.pipeline, directory / model_repository.SKLEARN_PIPELINE_FILE)
            self.encoder.head.save(directory / HEAD_FILE)
            shutil.copyfile(encoder_runtime.__file__, directory / RUNTIME_FILE)

        return model_repository.write_version(
            repo,
            model_name,
            version,
            FAMILY_NAME,
            self.fast.label_set,
            write_files,
            artifacts={
                "pipeline": model_repository.SKLEARN_PIPELINE_FILE,
                "head": HEAD_FILE,
                "runtime": RUNTIME_FILE,
            },
            metadata={
                "bar": self.bar,
                "combine": self.combine,
                "encoder_id": self.encoder.encoder.encoder_id,
                "embedding_dim": self.encoder.encoder.encoder.dim,
                "params": self.params,
            },
        )


@dataclass(frozen=True)
class CascadeFamily:
    """Fits the fast family and the encoder head on the same labels (see module doc)."""

    name: str = FAMILY_NAME
    bar: float = DEFAULT_BAR
    combine: str = DEFAULT_COMBINE
    fast: TfidfFamily = TFIDF_FAMILY
    encoder: MinilmFamily = field(default_factory=MinilmFamily)

    def with_store(self, store: EmbeddingStore) -> CascadeFamily:
        """This family, its encoder stage keeping embeddings in ``store``."""
        return dataclasses.replace(self, encoder=self.encoder.with_store(store))

    def fit(self, texts: Sequence[str], labels: Sequence[str], label_set: Sequence[str]) -> CascadeModel:
        """Fit both stages; raises ValueError as the stages do (two distinct labels, known labels)."""
        fast = self.fast.fit(texts, labels, label_set)
        head = self.encoder.fit(texts, labels, label_set)
        params: dict[str, Any] = {
            "bar": self.bar,
            "combine": self.combine,
            **{f"fast.{k}": v for k, v in fast.params.items()},
            **{f"encoder.{k}": v for k, v in head.params.items()},
        }
        return CascadeModel(
            fast=fast, encoder=head, bar=self.bar, params=params, family=self.name, combine=self.combine
        )


CASCADE_FAMILY = CascadeFamily()
CASCADE_REPLACE_FAMILY = CascadeFamily(name=REPLACE_FAMILY_NAME, combine=encoder_runtime.COMBINE_REPLACE)
