"""MLflow tracking server from the local stack: runs, artifacts through the server, the registry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import mlflow
import mlflow.sklearn
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from labelloop.stack import LocalStack

TEXTS = ["win money now", "cheap pills", "meeting at noon", "lunch tomorrow?", "free prize", "see you at 5"]
LABELS = ["spam", "spam", "ham", "ham", "spam", "ham"]


@pytest.fixture
def tracking(stack: LocalStack) -> Iterator[MlflowClient]:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(stack.mlflow_uri)
    mlflow.set_registry_uri(stack.mlflow_uri)
    try:
        yield MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri)
    finally:
        mlflow.set_tracking_uri(previous)


def _pipeline() -> Pipeline:
    return make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, LABELS)


def test_run_with_params_and_metrics(tracking: MlflowClient) -> None:
    experiment_id = tracking.create_experiment(f"test-run-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({"C": 1.0, "features": "tfidf"})
        for step, f1 in enumerate([0.5, 0.7, 0.8]):
            mlflow.log_metric("f1", f1, step=step)
        mlflow.log_text("confusion matrix here", "reports/confusion.txt")

    stored = tracking.get_run(run.info.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"C": "1.0", "features": "tfidf"}
    assert stored.data.metrics == {"f1": 0.8}
    assert [m.value for m in tracking.get_metric_history(run.info.run_id, "f1")] == [0.5, 0.7, 0.8]
    # Artifacts go through the server (mlflow-artifacts:), not to a path only this machine sees.
    assert stored.info.artifact_uri.startswith("mlflow-artifacts:")
    assert [a.path for a in tracking.list_artifacts(run.info.run_id, "reports")] == ["reports/confusion.txt"]


def test_register_a_model_version_and_resolve_its_alias(stack: LocalStack, tracking: MlflowClient) -> None:
    name = f"test-model-{uuid.uuid4().hex[:8]}"
    pipeline = _pipeline()
    experiment_id = tracking.create_experiment(f"test-registry-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.sklearn.log_model(
            pipeline, name="model", registered_model_name=name, pip_requirements=["scikit-learn"]
        )
    assert str(info.registered_model_version) == "1"

    tracking.set_registered_model_alias(name, "champion", "1")
    champion = tracking.get_model_version_by_alias(name, "champion")
    assert (champion.name, champion.version, champion.status) == (name, "1", "READY")
    assert "champion" in tracking.get_registered_model(name).aliases

    loaded = mlflow.sklearn.load_model(f"models:/{name}@champion")
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), pipeline.predict_proba(TEXTS))
    assert any(stack.mlflow.artifacts_dir.rglob("MLmodel")), "the model's files are not in the server's store"
