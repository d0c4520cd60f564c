"""The Triton model-repository contract: how a classifier version is laid out on disk and loaded.

Layout (one directory per model, one integer directory per version):

    <repo>/<model_name>/config.pbtxt
    <repo>/<model_name>/<version>/model.py       the python-backend template (core/triton_model/model.py)
    <repo>/<model_name>/<version>/labels.json    {"format": 1, "family", "labels", "artifacts", "metadata"}
    <repo>/<model_name>/<version>/<artifacts>    e.g. pipeline.joblib for family "sklearn"

The model takes `TEXT` (TYPE_STRING, dims [1], batched up to `max_batch_size`) and returns
`PROBS` (TYPE_FP32, dims [n_classes]) whose columns follow `labels`, and `ESCALATE` (TYPE_BOOL,
[1]): the items a cascade's fast stage is unsure of (always false for other families); a request
that also carries the optional `EMBEDDING` (TYPE_FP32, [-1]) gets the cascade's encoder-stage
answer. The shared sentence encoder (`labelloop-encoder`) takes `TEXT` and returns `EMBEDDING`. Triton serves only the
newest version (`latest { num_versions: 1 }`): writing version N+1 and calling `load_and_wait`
swaps to it while requests keep being served.

Writers are atomic: a version is assembled in a hidden `.tmp-*` directory inside the model
directory and renamed to its number in one step, so Triton never sees a half-written version.
Used by the retraining service (writes and loads), the tests, and the operator CLI (rollback).
`<repo>` is `LABELLOOP_MODEL_REPOSITORY` in the services.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from labelloop.core.errors import AlreadyExists, DependencyUnavailable, LabelloopError, NotFound
from labelloop.core.identifiers import MODEL_NAME, MODEL_NAME_RULE

log = logging.getLogger(__name__)

CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.py"
LABELS_FILE = "labels.json"
LAYOUT_FORMAT = 1
DEFAULT_MAX_BATCH_SIZE = 256
MODEL_TEMPLATE = Path(__file__).with_name("triton_model") / MODEL_FILE
SKLEARN_PIPELINE_FILE = "pipeline.joblib"
TMP_PREFIX = ".tmp-"
DIGESTS_KEY = "sha256"  # labels.json: {artifact file name: SHA-256 hex}, checked by model.py before loading


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(directory: Path) -> str:
    """SHA-256 of a directory: over the sorted lines `<relative path>\t<file SHA-256>` of every
    file under it (the same algorithm as model.py's, which cannot import Labelloop)."""
    lines = sorted(
        f"{p.relative_to(directory).as_posix()}\t{file_sha256(p)}\n"
        for p in directory.rglob("*")
        if p.is_file()
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def artifact_sha256(path: Path) -> str:
    """The digest recorded for one artifact: a file's SHA-256, or a directory's `tree_sha256`."""
    return tree_sha256(path) if path.is_dir() else file_sha256(path)


Files = Mapping[str, bytes | str | Path] | Callable[[Path], None]
"""A version's artifact files: name -> content (bytes, text, or a file to copy), or a function
that writes them into the directory it is given."""


class ModelLoadError(LabelloopError):
    """Triton refused to load a model (or did not make it ready in time); carries Triton's message."""


def config_pbtxt(
    model_name: str,
    n_classes: int,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    output_name: str = "PROBS",
    parameters: Mapping[str, str] | None = None,
) -> str:
    """The model-level Triton config: python backend, newest version only. A classifier
    (`output_name` PROBS) takes TEXT and, optionally, EMBEDDING (a cascade's second stage) and
    returns PROBS (`n_classes` wide) and ESCALATE; another model (the shared encoder) takes TEXT
    and returns `output_name`, `n_classes` wide. `parameters` (string values) are readable by
    clients through Triton's model config API."""
    if output_name == "PROBS":  # a classifier: a cascade's second stage sends EMBEDDING too
        inputs = (
            'input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] },\n'
            '        { name: "EMBEDDING" data_type: TYPE_FP32 dims: [ -1 ] optional: true } ]\n'
        )
        outputs = (
            f'output [ {{ name: "PROBS" data_type: TYPE_FP32 dims: [ {n_classes} ] }},\n'
            '         { name: "ESCALATE" data_type: TYPE_BOOL dims: [ 1 ] } ]\n'
        )
    else:
        inputs = 'input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        outputs = f'output [ {{ name: "{output_name}" data_type: TYPE_FP32 dims: [ {n_classes} ] }} ]\n'
    return (
        f'name: "{model_name}"\n'
        'backend: "python"\n'
        f"max_batch_size: {max_batch_size}\n"
        f"{inputs}"
        f"{outputs}"
        "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
        "dynamic_batching { }\n"
        + "".join(
            f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n'
            for k, v in sorted((parameters or {}).items())
        )
    )


def model_dir(repo: Path | str, model_name: str) -> Path:
    """`<repo>/<model_name>`, the one place a model's directory is named: ValueError unless the
    name is a path-safe model name (core/identifiers.py: never '.', '..', a path or hidden)."""
    if MODEL_NAME.fullmatch(model_name) is None:
        raise ValueError(f"invalid model name {model_name!r} ({MODEL_NAME_RULE})")
    return Path(repo) / model_name


def _write_text_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def list_versions(repo: Path | str, model_name: str) -> list[int]:
    """The complete versions of `model_name` in `repo`, ascending (hidden temp dirs excluded)."""
    directory = model_dir(repo, model_name)
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(repo: Path | str, model_name: str) -> int:
    """One more than the newest version on disk (1 for a new model). Not a reservation:
    a concurrent writer of the same number makes `write_version` raise AlreadyExists."""
    versions = list_versions(repo, model_name)
    return versions[-1] + 1 if versions else 1


def read_labels(repo: Path | str, model_name: str, version: int) -> dict[str, Any]:
    """The parsed labels.json of a version (family, labels in output order, artifacts, metadata)."""
    path = model_dir(repo, model_name) / str(version) / LABELS_FILE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise NotFound(f"model {model_name!r} has no version {version} in {repo}") from None


def write_version(
    repo: Path | str,
    model_name: str,
    version: int,
    family: str,
    labels: Sequence[str],
    files: Files,
    *,
    artifacts: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    output_name: str = "PROBS",
    parameters: Mapping[str, str] | None = None,
) -> Path:
    """Write version `version` of `model_name` atomically and return its directory.

    `labels` is the class order = PROBS column order (for a model whose output is not PROBS,
    e.g. the shared encoder's EMBEDDING, one name per output column). `artifacts` names the
    family's files for model.py (e.g. {"pipeline": "pipeline.joblib"}), each recorded with its
    SHA-256, which model.py checks before loading it; `metadata` is stored as is. Writes (or
    rewrites, atomically) `config.pbtxt` for `len(labels)` classes. Raises AlreadyExists when
    the version exists; on any error nothing is left behind. Does not load it: see `load_and_wait`.
    """
    directory = model_dir(repo, model_name)
    if version < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"labels must be non-empty and unique, got {list(labels)}")
    final = directory / str(version)
    if final.exists():
        raise AlreadyExists(f"model {model_name!r} version {version} exists in {repo}")
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{version}-", dir=directory))
    try:
        if callable(files):
            files(staging)
        else:
            for name, content in files.items():
                target = staging / name
                if isinstance(content, Path):
                    shutil.copy2(content, target)
                elif isinstance(content, bytes):
                    target.write_bytes(content)
                else:
                    target.write_text(content)
        shutil.copy2(MODEL_TEMPLATE, staging / MODEL_FILE)
        named = dict(artifacts or {})
        meta = {
            "format": LAYOUT_FORMAT,
            "family": family,
            "labels": list(labels),
            "artifacts": named,
            DIGESTS_KEY: {name: artifact_sha256(staging / name) for name in sorted(set(named.values()))},
            "metadata": dict(metadata or {}),
            "written_at": time.time(),
        }
        (staging / LABELS_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700
        config = config_pbtxt(model_name, len(labels), max_batch_size, output_name, parameters)
        config_path = directory / CONFIG_FILE
        if not config_path.is_file() or config_path.read_text() != config:
            _write_text_atomically(config_path, config)
        os.rename(staging, final)  # fails if `final` appeared meanwhile (non-empty dir)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if final.exists():
            raise AlreadyExists(f"model {model_name!r} version {version} exists in {repo}") from error
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def write_sklearn_version(
    repo: Path | str,
    model_name: str,
    version: int,
    pipeline: Any,
    labels: Sequence[str] | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> Path:
    """Write a fitted scikit-learn pipeline (texts -> `predict_proba`) as family "sklearn".

    `labels` orders the output columns (default: `pipeline.classes_`); it must hold every class
    of the pipeline and may hold more (the project's whole label set): a label the pipeline never
    saw gets probability 0. The pipeline is saved with joblib as `pipeline.joblib`.
    """
    import joblib

    classes = [str(c) for c in pipeline.classes_]
    order = [str(label) for label in labels] if labels is not None else classes
    if not set(classes) <= set(order) or len(set(order)) != len(order):
        raise ValueError(f"labels {order} must be distinct and hold every class of the pipeline {classes}")
    return write_version(
        repo,
        model_name,
        version,
        "sklearn",
        order,
        lambda directory: joblib.dump(pipeline, directory / SKLEARN_PIPELINE_FILE),
        artifacts={"pipeline": SKLEARN_PIPELINE_FILE},
        metadata=metadata,
        max_batch_size=max_batch_size,
    )


def remove_version(repo: Path | str, model_name: str, version: int) -> None:
    """Delete a version atomically (renamed to a hidden dir first, then removed).

    Raises NotFound when it does not exist. Removing the served version does not unload it;
    call `load_and_wait` afterwards to serve the newest remaining one.
    """
    directory = model_dir(repo, model_name)
    path = directory / str(version)
    if not path.is_dir():
        raise NotFound(f"model {model_name!r} has no version {version} in {repo}")
    doomed = directory / f"{TMP_PREFIX}removed-{version}-{os.getpid()}-{time.monotonic_ns()}"
    os.rename(path, doomed)
    shutil.rmtree(doomed)


def retire(repo: Path | str, triton_grpc_url: str, model_name: str) -> bool:
    """Unload `model_name` from Triton and delete it from the repository (every version), so
    that Triton does not load it again at its next start. True when there was one. Triton being
    unreachable is no error (it loads from the repository, where the model is gone)."""
    import tritonclient.grpc as grpcclient

    directory = model_dir(repo, model_name)
    if not directory.is_dir():
        return False
    client = grpcclient.InferenceServerClient(triton_grpc_url)
    try:
        client.unload_model(model_name)
    except Exception as exc:  # not loaded, or Triton down: the files go anyway
        log.info("unloading %s: %s", model_name, exc)
    finally:
        client.close()
    shutil.rmtree(directory, ignore_errors=True)
    return True


def load_and_wait(triton_grpc_url: str, model_name: str, timeout: float = 120.0) -> int:
    """Ask Triton (explicit model control) to (re)load `model_name`; return the version now ready.

    Triton loads the newest version on disk and, once it is ready, unloads the previous one,
    serving requests throughout. Raises ModelLoadError with Triton's message when loading fails
    (the previously served version, if any, keeps serving), DependencyUnavailable when Triton
    cannot be reached.
    """
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(triton_grpc_url)
    try:
        try:
            client.load_model(model_name, client_timeout=timeout)
        except InferenceServerException as error:
            text = error.message() or str(error)
            if error.status() == "StatusCode.UNAVAILABLE":
                raise DependencyUnavailable("triton", text) from error
            raise ModelLoadError(f"triton could not load model {model_name!r}: {text}") from error
        deadline = time.monotonic() + timeout
        interval = 0.05
        gone_since: float | None = None
        while True:
            states = _version_states(client, model_name)
            ready = _ready(states)
            if ready:
                return max(ready)
            now = time.monotonic()
            # Retired meanwhile (model_repository.retire: unloaded and its folder deleted): Triton's
            # index no longer lists it, and no wait will make it ready. A second look a moment later
            # tells a retirement from a listing caught mid-load.
            if states:
                gone_since = None
            elif gone_since is None:
                gone_since = now
            elif now - gone_since >= GONE_GRACE_S:
                raise ModelLoadError(f"model {model_name!r} left the model repository while it loaded")
            if now >= deadline:
                raise ModelLoadError(f"model {model_name!r} loaded but not ready after {timeout:.0f}s")
            time.sleep(interval)
            interval = min(interval * 2, 1.0)
    finally:
        client.close()


#: How long a model loading in Triton may be missing from its repository index before the wait
#: for it ends (it was retired while loading).
GONE_GRACE_S = 2.0


def served_versions(triton_grpc_url: str, model_name: str) -> list[int]:
    """The versions of `model_name` Triton reports READY, ascending (empty when none)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton_grpc_url)
    try:
        return _ready_versions(client, model_name)
    finally:
        client.close()


def _version_states(client: Any, model_name: str) -> list[tuple[int, str]]:
    """(version, state) of each entry Triton's repository index lists for `model_name` (version 0:
    the model is listed without one, as a model in the repository that is not loaded)."""
    index = client.get_model_repository_index(as_json=True)
    return [
        (int(entry.get("version") or 0), str(entry.get("state", "")))
        for entry in index.get("models", [])
        if entry.get("name") == model_name
    ]


def _ready_versions(client: Any, model_name: str) -> list[int]:
    return _ready(_version_states(client, model_name))


def _ready(states: Sequence[tuple[int, str]]) -> list[int]:
    """The READY versions among `states` (_version_states), ascending."""
    return sorted(v for v, state in states if state == "READY" and v > 0)
