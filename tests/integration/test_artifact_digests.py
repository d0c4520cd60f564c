"""Model artifacts are trusted only when verified: every version records the SHA-256 of its
artifacts (labels.json) and of its whole directory (the MLflow run and version); Triton's loader
refuses a tampered artifact before unpickling it, and a registered version whose stored
artifacts were tampered with is refused when it is downloaded to be promoted or rolled back."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from models import train_tfidf

from labelloop.core import model_repository
from labelloop.core.errors import FailedPrecondition
from labelloop.retraining.registry import DIGEST_TAG, Registry

TEXTS, LABELS = ["good day", "bad day", "fine", "awful"], ["pos", "neg", "pos", "neg"]


def tamper(path: Path) -> None:
    """Flip the last byte of `path` (same size, different content)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_triton_refuses_a_tampered_artifact_before_loading_it(stack) -> None:
    name = f"digest-{uuid.uuid4().hex[:8]}"
    pipeline = train_tfidf(TEXTS, LABELS)
    good = model_repository.write_sklearn_version(stack.model_repository, name, 1, pipeline, ["neg", "pos"])
    meta = json.loads((good / "labels.json").read_text())
    assert meta["sha256"] == {"pipeline.joblib": model_repository.file_sha256(good / "pipeline.joblib")}
    assert model_repository.load_and_wait(stack.triton_grpc_url, name, timeout=120) == 1

    bad = model_repository.write_sklearn_version(stack.model_repository, name, 2, pipeline, ["neg", "pos"])
    tamper(bad / "pipeline.joblib")
    with pytest.raises(model_repository.ModelLoadError, match="SHA-256"):
        model_repository.load_and_wait(stack.triton_grpc_url, name, timeout=120)


def test_a_tampered_registered_version_is_refused_at_download(stack, tmp_path, topic_prefix) -> None:
    registry = Registry(stack.mlflow_uri, topic_prefix)
    project = f"p-{uuid.uuid4().hex[:8]}"
    version_dir = model_repository.write_sklearn_version(
        tmp_path / "repo", project, 1, train_tfidf(TEXTS, LABELS), ["neg", "pos"]
    )
    with registry.run(project, {"family": "tfidf-lr"}) as run_id:
        version = registry.register(project, run_id, version_dir, {"family": "tfidf-lr"})
    record = registry.get(project, version)
    assert record.tags[DIGEST_TAG] == model_repository.tree_sha256(version_dir)
    assert registry.client.get_run(run_id).data.tags[DIGEST_TAG] == record.tags[DIGEST_TAG]
    fetched = registry.download(record, tmp_path / "ok")
    assert model_repository.tree_sha256(fetched) == record.tags[DIGEST_TAG]

    (stored,) = stack.mlflow.artifacts_dir.rglob(f"{run_id}/**/pipeline.joblib")
    tamper(stored)
    with pytest.raises(FailedPrecondition, match=r"differs from the .* recorded at registration"):
        registry.download(record, tmp_path / "tampered")
