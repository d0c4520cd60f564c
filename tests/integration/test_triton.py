"""Triton from the local stack serving models written through the model-repository contract."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from support import wait_until

from labelloop.core import model_repository as repo
from labelloop.core.errors import AlreadyExists
from labelloop.stack import LocalStack

LABELS = ["sports", "weather", "politics"]  # deliberately not the pipeline's alphabetical class order
CORPUS = {
    "sports": [
        "the striker scored a late goal",
        "the team won the match",
        "a record sprint in the final",
        "the coach praised the defence",
        "fans cheered the home team",
        "the keeper saved a penalty",
        "the cyclist won the stage",
        "a hat trick in the derby",
    ],
    "weather": [
        "heavy rain expected tomorrow",
        "a sunny and warm afternoon",
        "snow will cover the hills",
        "strong winds and storms tonight",
        "temperatures drop below zero",
        "fog in the morning",
        "a heatwave hits the south",
        "showers clearing by evening",
    ],
    "politics": [
        "the minister resigned today",
        "parliament passed the budget",
        "the election campaign began",
        "the senate debated the bill",
        "voters head to the polls",
        "the president signed the law",
        "opposition leaders criticised the plan",
        "a new coalition government formed",
    ],
}
QUERIES = [
    "the team scored a goal",
    "rain and wind tonight",
    "the minister and the election",
    "a warm sunny day",
    "the match final",
]


def _train(c: float) -> Pipeline:
    texts = [t for label in LABELS for t in CORPUS[label]]
    targets = [label for label in LABELS for _ in CORPUS[label]]
    return make_pipeline(TfidfVectorizer(), LogisticRegression(C=c, max_iter=1000)).fit(texts, targets)


@pytest.fixture(scope="module")
def pipelines() -> tuple[Pipeline, Pipeline]:
    return _train(1.0), _train(10.0)


@pytest.fixture
def client(stack: LocalStack) -> Iterator[grpcclient.InferenceServerClient]:
    triton = grpcclient.InferenceServerClient(stack.triton_grpc_url)
    yield triton
    triton.close()


@pytest.fixture
def model_name(stack: LocalStack) -> Iterator[str]:
    """A model name unique to this test; the model is unloaded afterwards (frees its stub process)."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    triton = grpcclient.InferenceServerClient(stack.triton_grpc_url)
    try:
        triton.unload_model(name)
    finally:
        triton.close()


def infer(client: grpcclient.InferenceServerClient, model: str, texts: list[str]) -> tuple[np.ndarray, str]:
    """PROBS for `texts` in one batched request, and the version that answered."""
    text = grpcclient.InferInput("TEXT", [len(texts), 1], "BYTES")
    text.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
    result = client.infer(model, [text], client_timeout=30)
    probs = result.as_numpy("PROBS")
    assert probs is not None
    return probs, result.get_response().model_version


def expected_probs(pipeline: Pipeline, texts: list[str]) -> np.ndarray:
    columns = [list(pipeline.classes_).index(label) for label in LABELS]
    return np.asarray(pipeline.predict_proba(texts))[:, columns]


def test_batched_infer_returns_one_distribution_per_text(
    stack: LocalStack,
    client: grpcclient.InferenceServerClient,
    model_name: str,
    pipelines: tuple[Pipeline, Pipeline],
) -> None:
    path = repo.write_sklearn_version(stack.model_repository, model_name, 1, pipelines[0], LABELS)
    assert path == stack.model_repository / model_name / "1"
    assert repo.read_labels(stack.model_repository, model_name, 1)["labels"] == LABELS

    assert repo.load_and_wait(stack.triton_grpc_url, model_name, timeout=120) == 1
    probs, version = infer(client, model_name, QUERIES)

    assert version == "1"
    assert probs.shape == (len(QUERIES), len(LABELS)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, expected_probs(pipelines[0], QUERIES), rtol=1e-5)
    assert [LABELS[i] for i in probs.argmax(axis=1)][:3] == ["sports", "weather", "politics"]
    config = client.get_model_config(model_name, as_json=True)["config"]
    assert config["max_batch_size"] == 256 and config["output"][0]["dims"] == [str(len(LABELS))]


def test_a_retired_model_leaves_triton_and_the_repository(
    stack: LocalStack,
    client: grpcclient.InferenceServerClient,
    model_name: str,
    pipelines: tuple[Pipeline, Pipeline],
) -> None:
    """What `make bench` does with each run's throwaway model (Triton loads every model of the
    repository at its start)."""
    repo.write_sklearn_version(stack.model_repository, model_name, 1, pipelines[0], LABELS)
    assert repo.load_and_wait(stack.triton_grpc_url, model_name) == 1
    assert repo.retire(stack.model_repository, stack.triton_grpc_url, model_name)
    assert not (stack.model_repository / model_name).exists()
    assert not client.is_model_ready(model_name)
    assert not repo.retire(stack.model_repository, stack.triton_grpc_url, model_name), "nothing left"


def test_version_swap_under_load_fails_no_call(
    stack: LocalStack,
    client: grpcclient.InferenceServerClient,
    model_name: str,
    pipelines: tuple[Pipeline, Pipeline],
) -> None:
    repo.write_sklearn_version(stack.model_repository, model_name, 1, pipelines[0], LABELS)
    assert repo.load_and_wait(stack.triton_grpc_url, model_name) == 1
    # A half-written version as a concurrent writer would leave it: Triton must ignore it.
    (stack.model_repository / model_name / ".tmp-2-partial").mkdir()

    answered: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_calling() -> None:
        caller = grpcclient.InferenceServerClient(stack.triton_grpc_url)
        try:
            while not stop.is_set():
                try:
                    answered.append(infer(caller, model_name, QUERIES[:2])[1])
                except Exception as error:
                    failures.append(error)
        finally:
            caller.close()

    worker = threading.Thread(target=keep_calling, name="infer-during-swap")
    worker.start()
    try:
        wait_until(lambda: len(answered) >= 10, 30, message="background client got no answers from v1")
        repo.write_sklearn_version(stack.model_repository, model_name, 2, pipelines[1], LABELS)
        before = len(answered)
        assert repo.load_and_wait(stack.triton_grpc_url, model_name) == 2
        during = len(answered) - before
        wait_until(
            lambda: answered[-1] == "2" and answered.count("2") >= 10,
            30,
            message=lambda: f"no answers from v2: {answered[-5:]}, failures {failures[:3]}",
        )
    finally:
        stop.set()
        worker.join(timeout=60)

    assert failures == []
    assert during > 0, "no call was made while version 2 loaded"
    assert set(answered) == {"1", "2"} and answered.index("2") > answered.index("1")
    assert "1" not in answered[answered.index("2") :]
    assert repo.served_versions(stack.triton_grpc_url, model_name) == [2]
    assert not client.is_model_ready(model_name, "1") and client.is_model_ready(model_name, "2")
    probs, version = infer(client, model_name, QUERIES)
    assert version == "2"
    np.testing.assert_allclose(probs, expected_probs(pipelines[1], QUERIES), rtol=1e-5)


def test_broken_version_fails_to_load_and_the_previous_keeps_serving(
    stack: LocalStack,
    client: grpcclient.InferenceServerClient,
    model_name: str,
    pipelines: tuple[Pipeline, Pipeline],
) -> None:
    for version, pipeline in ((1, pipelines[0]), (2, pipelines[1])):
        repo.write_sklearn_version(stack.model_repository, model_name, version, pipeline, LABELS)
    assert repo.load_and_wait(stack.triton_grpc_url, model_name) == 2
    repo.write_version(
        stack.model_repository,
        model_name,
        3,
        "sklearn",
        LABELS,
        {repo.SKLEARN_PIPELINE_FILE: b"this is not a joblib pickle"},
        artifacts={"pipeline": repo.SKLEARN_PIPELINE_FILE},
    )

    with pytest.raises(repo.ModelLoadError, match=rf"'{model_name}'.*version 3 is at UNAVAILABLE") as failure:
        repo.load_and_wait(stack.triton_grpc_url, model_name, timeout=120)
    assert "pickle" in str(failure.value) and "model.py" in str(failure.value)  # Triton's traceback

    assert repo.served_versions(stack.triton_grpc_url, model_name) == [2]
    probs, version = infer(client, model_name, QUERIES)
    assert version == "2"
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)

    repo.remove_version(stack.model_repository, model_name, 3)
    assert repo.list_versions(stack.model_repository, model_name) == [1, 2]
    assert repo.load_and_wait(stack.triton_grpc_url, model_name) == 2


def test_writes_are_atomic_and_never_overwrite(tmp_path: Path, pipelines: tuple[Pipeline, Pipeline]) -> None:
    def half_written(directory: Path) -> None:
        (directory / "pipeline.joblib").write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        repo.write_version(tmp_path, "m", 1, "sklearn", LABELS, half_written)
    assert repo.list_versions(tmp_path, "m") == [] and repo.next_version(tmp_path, "m") == 1
    assert [p.name for p in (tmp_path / "m").iterdir()] == []  # no temp dir, no config either

    repo.write_sklearn_version(tmp_path, "m", 1, pipelines[0], LABELS)
    with pytest.raises(AlreadyExists):
        repo.write_sklearn_version(tmp_path, "m", 1, pipelines[1], LABELS)
    with pytest.raises(ValueError, match="hold every class of the pipeline"):
        repo.write_sklearn_version(tmp_path, "m", 2, pipelines[1], ["sports", "weather"])
    assert repo.next_version(tmp_path, "m") == 2
    assert sorted(p.name for p in (tmp_path / "m" / "1").iterdir()) == [
        "labels.json",
        "model.py",
        "pipeline.joblib",
    ]
    assert "dims: [ 3 ]" in (tmp_path / "m" / "config.pbtxt").read_text()
