"""Training a small real text model for tests and serving it from the test stack's Triton."""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from labelloop.core import model_repository


def train_tfidf(texts: Sequence[str], labels: Sequence[str]):
    """A TF-IDF + logistic regression pipeline fitted on `texts`."""
    pipeline = make_pipeline(
        TfidfVectorizer(sublinear_tf=True, max_features=50_000), LogisticRegression(C=10, max_iter=1000)
    )
    pipeline.fit(list(texts), list(labels))
    return pipeline


def serve(stack, model_name: str, pipeline, labels: Sequence[str], version: int = 1) -> int:
    """Write `pipeline` as `version` of `model_name` and load it; returns the version serving."""
    model_repository.write_sklearn_version(
        stack.model_repository, model_name, version, pipeline, list(labels)
    )
    return model_repository.load_and_wait(stack.triton_grpc_url, model_name, timeout=120)
