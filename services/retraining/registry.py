"""The project's models in MLflow: one experiment and one registered model per project.

Names: `<deployment prefix>.<project id>` for both (the topic prefix, so deployments sharing an
MLflow server stay apart). A training is a run holding its params, held-out metrics, the
dataset snapshot reference and the model as the Triton version directory (artifact path
`triton/`, the same files the model repository holds, for every family); the run's model is
registered as a version whose tags record the gate's decision, the calibrated threshold and
the Triton version that served it. Aliases: `champion` (what serves) and `challenger` (the
newest candidate not promoted). The registered-model tag `champion_history` lists the
champions in order so rollback knows the previous one.

Uses an explicit MlflowClient (no global fluent state): safe to call from worker threads.
Raises DependencyUnavailable when the server cannot be reached.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from labelloop.core.errors import DependencyUnavailable, FailedPrecondition, NotFound
from labelloop.core.model_repository import tree_sha256
from labelloop.core.thresholds import Threshold

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__all__ = ["CHALLENGER", "CHAMPION", "Registry", "VersionRecord"]

CHAMPION = "champion"
CHALLENGER = "challenger"
ARTIFACT_PATH = "triton"
HISTORY_TAG = "champion_history"
DIGEST_TAG = (
    "labelloop.sha256"  # SHA-256 of the version's Triton directory (tree_sha256), set at registration
)
T = TypeVar("T")


@dataclass(frozen=True)
class VersionRecord:
    """A registered version as the service uses it."""

    version: int
    run_id: str
    source: str
    aliases: tuple[str, ...]
    tags: dict[str, str]
    created_ms: int

    @property
    def threshold(self) -> dict[str, Any]:
        """The calibrated threshold stored with it: {"threshold", "class_thresholds",
        "exploration_rate"} (the last absent from versions registered before it existed)."""
        return dict(json.loads(self.tags.get("threshold", '{"threshold": 2.0, "class_thresholds": {}}')))

    def serving_threshold(self, model_version: int = 0) -> Threshold:
        """The stored threshold as routing reads it, for Triton version `model_version`."""
        return Threshold.from_record(self.threshold, model_version)

    @property
    def triton_version(self) -> int:
        return int(self.tags.get("triton_version", "0") or 0)

    @property
    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in json.loads(self.tags.get("metrics", "{}")).items()}


def _not_found(exc: Exception) -> bool:
    """True for MLflow's "no such registered model" and "no such alias" (the latter is an
    INVALID_PARAMETER_VALUE saying "... alias ... not found")."""
    code = getattr(exc, "error_code", "")
    if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
        return True
    return code == "INVALID_PARAMETER_VALUE" and "alias" in str(exc) and "not found" in str(exc)


class Registry:
    """MLflow tracking + registry for the projects of one deployment."""

    def __init__(self, tracking_uri: str, prefix: str) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.prefix = prefix
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def name(self, project_id: str) -> str:
        """The experiment and registered-model name of a project."""
        return f"{self.prefix}.{project_id}" if self.prefix else project_id

    def _call(self, fn: Callable[[], T]) -> T:
        from mlflow.exceptions import MlflowException

        try:
            return fn()
        except MlflowException as exc:
            if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                raise
            if "Max retries" in str(exc) or "Connection" in str(exc):
                raise DependencyUnavailable("mlflow", str(exc)) from exc
            raise
        except OSError as exc:
            raise DependencyUnavailable("mlflow", str(exc)) from exc

    # -- runs ------------------------------------------------------------------------------
    def experiment_id(self, project_id: str) -> str:
        """The project's experiment id (created on first use)."""
        name = self.name(project_id)
        experiment = self._call(lambda: self.client.get_experiment_by_name(name))
        if experiment is not None:
            return str(experiment.experiment_id)
        try:
            return str(self._call(lambda: self.client.create_experiment(name)))
        except Exception:  # lost a creation race
            experiment = self._call(lambda: self.client.get_experiment_by_name(name))
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    @contextmanager
    def run(self, project_id: str, tags: dict[str, str]) -> Iterator[str]:
        """A run in the project's experiment: FINISHED when the block exits normally, FAILED
        when it raises (a crash leaves it RUNNING; `close_abandoned_runs` marks it KILLED)."""
        experiment = self.experiment_id(project_id)
        run = self._call(lambda: self.client.create_run(experiment, tags=tags))
        run_id = str(run.info.run_id)
        try:
            yield run_id
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")

    def log(self, run_id: str, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """Log params (stringified, 500 chars max) and metrics to a run."""
        from mlflow.entities import Metric, Param

        plist = [Param(str(k), str(v)[:500]) for k, v in params.items()]
        mlist = [Metric(str(k), float(v), 0, 0) for k, v in metrics.items()]
        self._call(lambda: self.client.log_batch(run_id, metrics=mlist, params=plist))

    def close_abandoned_runs(self, project_id: str) -> int:
        """Mark the project's RUNNING runs KILLED (left by a crash; one service owns a project's
        trainings). Returns how many."""
        experiment = self._call(lambda: self.client.get_experiment_by_name(self.name(project_id)))
        if experiment is None:
            return 0
        runs = self._call(
            lambda: self.client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
        )
        for run in runs:
            self.client.set_terminated(run.info.run_id, "KILLED")
        return len(runs)

    # -- registry ------------------------------------------------------------------------
    def register(self, project_id: str, run_id: str, version_dir: Path, tags: dict[str, str]) -> int:
        """Upload `version_dir` (a Triton version directory) as the run's `triton/` artifacts and
        register it as a new version of the project's model, with the directory's SHA-256 as the
        run's and the version's `labelloop.sha256` tag. Returns the version number."""
        from mlflow.exceptions import MlflowException

        name = self.name(project_id)
        digest = tree_sha256(version_dir)
        tags = {**tags, DIGEST_TAG: digest}
        self._call(lambda: self.client.set_tag(run_id, DIGEST_TAG, digest))
        self._call(lambda: self.client.log_artifacts(run_id, str(version_dir), ARTIFACT_PATH))
        try:
            self._call(lambda: self.client.create_registered_model(name))
        except MlflowException as exc:
            if "already exists" not in str(exc).lower() and getattr(exc, "error_code", "") != (
                "RESOURCE_ALREADY_EXISTS"
            ):
                raise
        artifact_uri = self._call(lambda: self.client.get_run(run_id)).info.artifact_uri
        mv = self._call(
            lambda: self.client.create_model_version(
                name, f"{artifact_uri}/{ARTIFACT_PATH}", run_id=run_id, tags=tags
            )
        )
        return int(mv.version)

    def tag(self, project_id: str, version: int, tags: dict[str, str]) -> None:
        """Set tags on a registered version."""
        name = self.name(project_id)
        for key, value in tags.items():
            self._set_version_tag(name, version, key, value)

    def _set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        self._call(lambda: self.client.set_model_version_tag(name, str(version), key, value))

    def set_alias(self, project_id: str, alias: str, version: int) -> None:
        self._call(lambda: self.client.set_registered_model_alias(self.name(project_id), alias, str(version)))

    def delete_alias(self, project_id: str, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        with suppress(MlflowException):
            self._call(lambda: self.client.delete_registered_model_alias(self.name(project_id), alias))

    def get(self, project_id: str, version: int) -> VersionRecord:
        """One registered version; NotFound when it does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self._call(lambda: self.client.get_model_version(self.name(project_id), str(version)))
        except MlflowException:
            raise NotFound(f"project {project_id!r} has no model version {version}") from None
        return _record(mv)

    def by_alias(self, project_id: str, alias: str) -> VersionRecord | None:
        """The version carrying `alias`, or None when the model or the alias does not exist;
        DependencyUnavailable for any other MLflow error."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self._call(lambda: self.client.get_model_version_by_alias(self.name(project_id), alias))
        except MlflowException as exc:
            if _not_found(exc):
                return None
            # anything else is not "no champion": a gate that read it so would promote unchecked
            raise DependencyUnavailable(
                "mlflow", f"reading alias {alias!r} of {project_id!r}: {exc}"
            ) from exc
        return _record(mv)

    def versions(self, project_id: str) -> list[VersionRecord]:
        """Every registered version, newest first (empty when none), with its aliases (which
        search results do not carry: they are read from the registered model)."""
        from mlflow.exceptions import MlflowException

        name = self.name(project_id)
        found = self._call(lambda: self.client.search_model_versions(f"name='{name}'"))
        try:
            model_aliases = dict(self._call(lambda: self.client.get_registered_model(name)).aliases or {})
        except MlflowException:
            model_aliases = {}
        records = []
        for mv in found:
            record = _record(mv)
            aliases = tuple(sorted(a for a, v in model_aliases.items() if int(v) == record.version))
            records.append(VersionRecord(**{**record.__dict__, "aliases": aliases}))
        return sorted(records, key=lambda r: -r.version)

    def champion_history(self, project_id: str) -> list[int]:
        """The champions in the order they were crowned (the last is the current one)."""
        from mlflow.exceptions import MlflowException

        try:
            model = self._call(lambda: self.client.get_registered_model(self.name(project_id)))
        except MlflowException:
            return []
        raw = (model.tags or {}).get(HISTORY_TAG, "")
        return [int(v) for v in raw.split(",") if v]

    def crown(self, project_id: str, version: int, history: list[int]) -> None:
        """Make `version` the champion with `history` as the champion history."""
        name = self.name(project_id)
        self._call(
            lambda: self.client.set_registered_model_tag(name, HISTORY_TAG, ",".join(map(str, history)))
        )
        self.set_alias(project_id, CHAMPION, version)

    def download(self, record: VersionRecord, dst: Path) -> Path:
        """Download a version's Triton directory into `dst` and return it, once its SHA-256
        matches the one recorded at registration; FailedPrecondition (nothing to deploy) when it
        does not, or when none was recorded."""
        import mlflow.artifacts

        path = Path(
            self._call(
                lambda: mlflow.artifacts.download_artifacts(
                    artifact_uri=record.source, dst_path=str(dst), tracking_uri=self.tracking_uri
                )
            )
        )
        expected = record.tags.get(DIGEST_TAG)
        if not expected:
            raise FailedPrecondition(
                f"version {record.version} has no recorded SHA-256 ({DIGEST_TAG}); refusing to deploy it"
            )
        actual = tree_sha256(path)
        if actual != expected:
            raise FailedPrecondition(
                f"version {record.version}: the artifacts' SHA-256 {actual} differs from the {expected} "
                "recorded at registration (tampered or corrupted); refusing to deploy it"
            )
        return path


def _record(mv: Any) -> VersionRecord:
    return VersionRecord(
        version=int(mv.version),
        run_id=str(mv.run_id or ""),
        source=str(mv.source),
        aliases=tuple(getattr(mv, "aliases", None) or ()),
        tags=dict(mv.tags or {}),
        created_ms=int(mv.creation_timestamp or 0),
    )
