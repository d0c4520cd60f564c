"""`labelloop model list|promote|rollback|retrain --project P`: a project's models.

Talks to the retraining service's ModelService gRPC API at `LABELLOOP_RETRAINING_ADDR`
(default 127.0.0.1:50053). Exit codes as the rest of the CLI: 0 success, 1 the operation
failed (the message says why), 2 bad usage or configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.table import Table

from labelloop.cli.settings import CliSettings
from labelloop.core import grpc_client
from labelloop.core.grpc_client import MissingToken, resolve_token
from labelloop.core.settings import SettingsError, load, setting
from labelloop.v1 import models_pb2, models_pb2_grpc

model_app = typer.Typer(help="List, promote, roll back and retrain a project's models.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

Project = Annotated[str, typer.Option(help="The project.")]


@dataclass(frozen=True)
class ModelCliSettings(CliSettings):
    """Where the retraining service's model API listens."""

    retraining_addr: str = setting("127.0.0.1:50053")


def _stub() -> tuple[grpc.Channel, models_pb2_grpc.ModelServiceStub]:
    try:
        s = load(ModelCliSettings)
    except SettingsError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    try:
        token = resolve_token(s.token, s.token_file)
    except MissingToken as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    channel = grpc_client.channel(s.retraining_addr, token, tls=s.grpc_tls())
    return channel, models_pb2_grpc.ModelServiceStub(channel)


def _failed(exc: grpc.RpcError, what: str) -> typer.Exit:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        err.print(f"[red]error:[/] {what}: the retraining service is unavailable ({details}). Is it running?")
    else:
        err.print(f"[red]error:[/] {what}: {code.name if code else 'error'}: {details}")
    return typer.Exit(1)


def describe_threshold(
    threshold: float, upper: Mapping[str, float] | None = None, lower: Mapping[str, float] | None = None
) -> str:
    """A threshold for people: the global one, or for a multi-label project (per-label pairs
    `upper` / `lower`) how many labels can be auto-accepted "on" and "off" (a label's pair above
    1 / below 0 never is)."""
    upper, lower = dict(upper or {}), dict(lower or {})
    if not upper and not lower:
        return "admits nothing" if threshold > 1 else f"{threshold:.4f}"
    on = [x for x, t in upper.items() if t <= 1.0]
    off = [x for x, t in lower.items() if t >= 0.0]
    if not on and not off:
        return "admits nothing (per-label pairs)"
    labels = len(set(upper) | set(lower))
    return f"per-label pairs: {len(on)} of {labels} labels can be auto-accepted on, {len(off)} off"


def _in_force(done: models_pb2.ModelActionResponse) -> str:
    """The threshold a promote or rollback put in force, as :func:`describe_threshold` says it."""
    return describe_threshold(done.threshold, done.label_upper_thresholds, done.label_lower_thresholds)


@model_app.command("list")
def list_models(project: Project) -> None:
    """Registered versions (newest first), what serves, and the threshold in force."""
    channel, stub = _stub()
    with channel:
        try:
            response = stub.ListModels(models_pb2.ListModelsRequest(project_id=project), timeout=30)
        except grpc.RpcError as exc:
            raise _failed(exc, f"listing models of {project!r}") from None
    table = Table(
        "version",
        "aliases",
        "family",
        "labels",
        "accuracy",
        "macro-F1",
        "threshold",
        "triton",
        "decision",
        title=f"project {project}",
    )
    for v in response.versions:
        table.add_row(
            str(v.version),
            ", ".join(v.aliases),
            v.family,
            str(v.human_labels),
            f"{v.metrics['accuracy']:.3f}" if "accuracy" in v.metrics else "",
            f"{v.metrics['macro_f1']:.3f}" if "macro_f1" in v.metrics else "",
            describe_threshold(v.threshold, v.label_upper_thresholds, v.label_lower_thresholds),
            str(v.triton_version or ""),
            v.decision + (f": {v.reason}" if v.reason and v.decision != "promoted" else ""),
        )
    console.print(table)
    serving = response.serving_triton_version or "none"
    training = " (training now)" if response.training else ""
    in_force = describe_threshold(
        response.threshold, response.label_upper_thresholds, response.label_lower_thresholds
    )
    console.print(f"serving Triton version {serving}, threshold {in_force}{training}")


@model_app.command("promote")
def promote(
    project: Project,
    version: Annotated[int, typer.Option(help="The registered version to serve.")],
) -> None:
    """Serve a registered version as champion, with its calibrated threshold."""
    channel, stub = _stub()
    with channel:
        try:
            done = stub.PromoteModel(
                models_pb2.PromoteModelRequest(project_id=project, version=version), timeout=300
            )
        except grpc.RpcError as exc:
            raise _failed(exc, f"promoting version {version} of {project!r}") from None
    console.print(
        f"version {done.version} serves as Triton version {done.triton_version}, threshold {_in_force(done)}"
    )


@model_app.command("rollback")
def rollback(project: Project) -> None:
    """Re-serve the previous champion and its threshold."""
    channel, stub = _stub()
    with channel:
        try:
            done = stub.RollbackModel(models_pb2.RollbackModelRequest(project_id=project), timeout=300)
        except grpc.RpcError as exc:
            raise _failed(exc, f"rolling back {project!r}") from None
    console.print(
        f"rolled back: version {done.version} serves as Triton version {done.triton_version}, "
        f"threshold {_in_force(done)}"
    )


@model_app.command("retrain")
def retrain(project: Project) -> None:
    """Train now (as soon as the project has two classes and no training is running)."""
    channel, stub = _stub()
    with channel:
        try:
            done = stub.RetrainModel(models_pb2.RetrainModelRequest(project_id=project), timeout=30)
        except grpc.RpcError as exc:
            raise _failed(exc, f"requesting a training of {project!r}") from None
    after = " after the one running" if done.training_running else ""
    console.print(f"training requested{after}: {done.human_labels} human labels")
