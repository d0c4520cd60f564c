"""Model families: the contract between the retraining service and each kind of model it trains.

The retraining service trains one candidate per available family on the same human labels,
scores each on the same held-out labels, and keeps the best (families are chosen per project by
evaluation, never by hand; a family that lost clearly sits out trainings until the labels have
grown enough to change the verdict: retraining/family_schedule.py). A family only has to:

- ``fit`` on texts and their labels, given the project's full label set (every label the
  project allows, in the project's order; the training labels may cover only some of them);
- return a :class:`TrainedModel` whose ``predict_proba`` columns follow that label set (a label
  absent from training gets probability 0) and which can write itself as a version of the
  Triton model repository through :mod:`labelloop.core.model_repository` (the artifact contract
  with ``core/triton_model/model.py``; a new family also registers its loader in ``FAMILIES``
  there).

``fit`` may be slow (seconds to minutes) and is called from a training worker thread, one
training per project at a time; it must not touch Kafka, Redis or MLflow. ``params`` is what the
service logs to MLflow as the run's hyper-parameters (flat, JSON-serialisable values).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from labelloop.v1 import common_pb2

__all__ = ["ModelFamily", "RecentFits", "TrainedModel", "available_families", "families_for"]

log = logging.getLogger(__name__)


@runtime_checkable
class TrainedModel(Protocol):
    """A fitted model of one family, ready to be evaluated and written to the model repository."""

    family: str
    """The name of the family that trained it (``ModelFamily.name``)."""
    params: dict[str, Any]
    """Hyper-parameters and facts worth logging to MLflow (flat; values str/int/float/bool)."""

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape ``(len(texts), len(label_set))``, columns in the label-set
        order given to ``fit``; rows sum to 1 (up to float error)."""
        ...

    def write_version(self, repo: Path, model_name: str, version: int) -> Path:
        """Write this model as ``version`` of ``model_name`` in the Triton model repository
        ``repo`` (atomically, via ``labelloop.core.model_repository``) and return the version's
        directory. Raises ``AlreadyExists`` when that version exists. Does not load it."""
        ...


@runtime_checkable
class ModelFamily(Protocol):
    """A way of training a text classifier (e.g. TF-IDF + logistic regression)."""

    name: str
    """Stable, short identifier logged to MLflow (e.g. ``"tfidf-lr"``)."""

    def fit(self, texts: Sequence[str], labels: Sequence[str], label_set: Sequence[str]) -> TrainedModel:
        """Train on ``texts`` with their ``labels`` (each in ``label_set``; at least two distinct
        labels). ``label_set`` is the project's full, ordered label set: the output columns."""
        ...


def available_families(media_root: str | None = None) -> list[ModelFamily]:
    """The families this installation can train, cheapest first.

    A family may declare ``modality`` ("text" when it does not): the retraining service trains
    for a project only the families of the project's modality. TF-IDF + logistic regression
    (text) and the image families ``image-lr`` and ``image-svm`` (images read from ``media_root``,
    default ``<repo>/.cache/media``; retraining/images.py) are always available; the sentence-encoder family
    (``labelloop.retraining.encoder.MINILM_FAMILY``) and the two cascades of both
    (``labelloop.retraining.cascade``: ``cascade`` answers what TF-IDF is unsure of with the mean
    of both stages, ``cascade-replace`` with the encoder head's alone) are added when their
    modules and optional dependencies import.
    """
    from labelloop.core.media import DEFAULT_MEDIA_ROOT
    from labelloop.retraining.images import ImageFamily, ImageSvmFamily
    from labelloop.retraining.tfidf import TFIDF_FAMILY

    root = media_root or DEFAULT_MEDIA_ROOT
    families: list[ModelFamily] = [TFIDF_FAMILY, ImageFamily(root), ImageSvmFamily(root)]
    try:
        from labelloop.retraining.cascade import CASCADE_FAMILY, CASCADE_REPLACE_FAMILY
        from labelloop.retraining.encoder import MINILM_FAMILY
    except ImportError as error:
        log.debug("sentence-encoder families unavailable: %s", error)
    else:
        families += [MINILM_FAMILY, CASCADE_FAMILY, CASCADE_REPLACE_FAMILY]
    return families


def families_for(families: Sequence[ModelFamily], modality: int) -> list[ModelFamily]:
    """The families that train a project of ``modality`` (a ``labelloop.v1.Modality``): image
    families for image projects, text families (those declaring no modality) for the rest."""
    wanted = "image" if modality == common_pb2.MODALITY_IMAGE else "text"
    return [f for f in families if getattr(f, "modality", "text") == wanted]


def with_embedding_store(families: Sequence[ModelFamily], store: Any) -> list[ModelFamily]:
    """``families`` with every encoder-based one (those with a ``with_store`` method) reading and
    writing ``store`` (a ``labelloop.core.embeddings.EmbeddingStore`` of the shared encoder), so
    a text is encoded once across trainings, restarts and the serving cascade."""
    out: list[ModelFamily] = []
    for family in families:
        with_store = getattr(family, "with_store", None)
        out.append(with_store(store) if with_store is not None else family)
    return out


T = TypeVar("T")


class RecentFits(Generic[T]):
    """The last ``size`` fits of a deterministic family, by a digest of its hyper-parameters and
    its data, so a fit repeated within one training is answered without fitting again.

    A training fits the same data more than once: TF-IDF on its own and as the first stage of
    both cascades, the encoder head in both cascades, each on every calibration fold and then on
    the training split. ``size`` holds one training's folds and final fit with some room. What is
    returned is the stored object itself: callers wrap it without changing it. Thread-safe; two
    threads missing the same key both fit (the later one is kept)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self._fits: OrderedDict[bytes, T] = OrderedDict()
        self._lock = threading.Lock()

    def fit(
        self,
        params: str,
        texts: Sequence[Any],
        labels: Sequence[str],
        label_set: Sequence[str],
        fit: Callable[[], T],
    ) -> T:
        """The stored result for (``params``, data), else ``fit()``, stored. ``texts`` may be any
        items whose ``str`` identifies them (image ids, texts)."""
        key = _digest(params, texts, labels, label_set)
        with self._lock:
            hit = self._fits.get(key)
            if hit is not None:
                self._fits.move_to_end(key)
                return hit
        value = fit()
        with self._lock:
            self._fits[key] = value
            while len(self._fits) > self.size:
                self._fits.popitem(last=False)
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._fits)


def _digest(params: str, *parts: Sequence[Any]) -> bytes:
    h = hashlib.sha256(params.encode())
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        for x in part:
            b = str(x).encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
    return h.digest()
