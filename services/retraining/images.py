"""The image families: HOG + pixels (grayscale, 28x28) -> standardise -> PCA -> a classifier.

- "image-lr": whitened PCA (60 components) -> logistic regression.
- "image-svm": PCA (100 components, not whitened) -> an RBF support-vector machine with Platt
  probabilities. Its confidence ranks items far better from few labels: on Fashion-MNIST, the
  share of 5,000 later items a threshold at 95% precision admits was 0.44 from 100 labels
  (logistic regression: 0.00), 0.63 from 400 (0.56), 0.71 from 800 (0.65) and 0.81 from 3,000
  (0.75); on scikit-learn's digits (8x8, resized) 0.82 from 50 labels (0.66) and 0.99 from 100
  (0.93). It costs about 2 s to fit 3,000 images on this VM (logistic regression: under 1 s).

Both are trained at every training of an image project, and the one whose calibrated threshold
admits the most serves (retraining/training.py), like the text families.

Its inputs are the items' media URIs (what retraining's dataset and the inference service give a
model for an image item); the pixels are read from the media root through
``core/image_features.py``, which every version also carries as its "runtime" artifact, so Triton
computes the same features (``core/triton_model/model.py``, family "image-lr"). HOG is computed
in numpy (scikit-image is not in the lock); with the pixels it reaches about 83% accuracy on
Fashion-MNIST from 1,000 labels, 84.5% from 2,000. Trained only for image projects
(``modality = "image"``; the retraining service matches a family's modality to the project's).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from labelloop.core import image_features, model_repository

__all__ = ["FAMILY_NAME", "SVM_FAMILY_NAME", "ImageFamily", "ImageModel", "ImageSvmFamily"]

FAMILY_NAME = "image-lr"
SVM_FAMILY_NAME = "image-svm"
RUNTIME_FILE = "image_features.py"
PIPELINE_FILE = "pipeline.joblib"


@dataclass
class ImageModel:
    """A fitted pixel pipeline whose outputs follow ``label_set``."""

    pipeline: Pipeline
    label_set: list[str]
    params: dict[str, Any]
    media_root: str
    side: int
    family: str = FAMILY_NAME
    _columns: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        classes = [str(c) for c in self.pipeline.classes_]
        self._columns = [classes.index(label) if label in classes else -1 for label in self.label_set]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities in ``label_set`` order for the images at the URIs ``texts``."""
        probs = self.pipeline.predict_proba(image_features.features(list(texts), self.media_root, self.side))
        out = np.zeros((probs.shape[0], len(self.label_set)), dtype=np.float64)
        for j, i in enumerate(self._columns):
            if i >= 0:
                out[:, j] = probs[:, i]
        return out

    def write_version(self, repo: Path, model_name: str, version: int) -> Path:
        """Write as its family: the pipeline (joblib) and the feature runtime module."""
        import joblib

        def write_files(directory: Path) -> None:
            joblib.dump(self.pipeline, directory / PIPELINE_FILE)
            shutil.copyfile(image_features.__file__, directory / RUNTIME_FILE)

        return model_repository.write_version(
            repo,
            model_name,
            version,
            self.family,
            self.label_set,
            write_files,
            artifacts={"pipeline": PIPELINE_FILE, "runtime": RUNTIME_FILE},
            metadata={"params": self.params, "media_root": self.media_root, "side": self.side},
        )


@dataclass(frozen=True)
class ImageFamily:
    """Fixed defaults: HOG and 28x28 pixels, standardised, whitened PCA to at most 60 components,
    C=0.1 (on Fashion-MNIST: 74% accuracy from 200 labels, 83% from 1,000, 84.5% from 2,000)."""

    media_root: str
    name: str = FAMILY_NAME
    modality: str = "image"
    side: int = image_features.DEFAULT_SIDE
    components: int = 60
    c: float = 0.1
    max_iter: int = 1000

    def fit(self, texts: Sequence[str], labels: Sequence[str], label_set: Sequence[str]) -> ImageModel:
        """Fit on the images at the URIs ``texts``; ValueError with fewer than two labels."""
        if len(set(labels)) < 2:
            raise ValueError("need at least two distinct labels to train")
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} images but {len(labels)} labels")
        unknown = sorted(set(labels) - set(label_set))
        if unknown:
            raise ValueError(f"labels {unknown} are not in the label set {list(label_set)}")
        features = image_features.features(list(texts), self.media_root, self.side)
        components = max(1, min(self.components, features.shape[0] - 1, features.shape[1]))
        pipeline = Pipeline([("scale", StandardScaler()), *self._steps(components)])
        with warnings.catch_warnings():
            # scikit-learn 1.9 deprecates SVC(probability=True) for CalibratedClassifierCV, whose
            # one-vs-rest sigmoids rank far worse here (coverage at 95% on Fashion-MNIST: 0.00
            # from 400 labels, 0.24 from 3,000, against libsvm's pairwise coupling's 0.63 and
            # 0.81). The lock pins 1.9.1; the parameter goes in 1.11.
            warnings.filterwarnings("ignore", "The `probability` parameter was deprecated", FutureWarning)
            pipeline.fit(features, list(labels))
        params: dict[str, Any] = {
            "features": f"hog 4x4 cells 9 bins + grayscale pixels {self.side}x{self.side}",
            "pca_components": components,
            "classifier": type(pipeline[-1]).__name__,
            "C": self.c,
        }
        return ImageModel(
            pipeline, [str(x) for x in label_set], params, self.media_root, self.side, self.name
        )

    def _steps(self, components: int) -> list[tuple[str, Any]]:
        """The pipeline after standardisation: whitened PCA, logistic regression."""
        return [
            ("pca", PCA(n_components=components, whiten=True, random_state=0)),
            ("lr", LogisticRegression(C=self.c, max_iter=self.max_iter)),
        ]


@dataclass(frozen=True)
class ImageSvmFamily(ImageFamily):
    """The same features, PCA to at most 100 components (not whitened: an RBF kernel wants the
    distances PCA keeps), an RBF SVM (C=10, gamma "scale") with Platt probabilities (libsvm's
    internal 5-fold fit, seeded so a refit is the same model)."""

    name: str = SVM_FAMILY_NAME
    components: int = 100
    c: float = 10.0

    def _steps(self, components: int) -> list[tuple[str, Any]]:
        return [
            ("pca", PCA(n_components=components, random_state=0)),
            ("svm", SVC(C=self.c, gamma="scale", probability=True, random_state=0)),
        ]
