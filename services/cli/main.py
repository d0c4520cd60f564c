"""`labelloop`: the operator's and data scientist's front door.

Talks to the ingest gRPC API (projects, items, status) at `LABELLOOP_INGEST_ADDR` and reads the
labels of record from Kafka (`LABELLOOP_KAFKA_BOOTSTRAP`). Exit codes: 0 success, 1 the
operation failed (the message says why), 2 bad usage or configuration.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from labelloop.cli.model_commands import model_app
from labelloop.cli.settings import CliSettings
from labelloop.core.settings import SettingsError, load
from labelloop.v1 import admin_pb2, admin_pb2_grpc, common_pb2, ingest_pb2, ingest_pb2_grpc

app = typer.Typer(help="Labelloop: label a live data stream with a model and people.", no_args_is_help=True)
project_app = typer.Typer(help="Create and list projects.", no_args_is_help=True)
app.add_typer(project_app, name="project")
app.add_typer(model_app, name="model")
console = Console()
err = Console(stderr=True)

MODALITIES = {
    "text": common_pb2.MODALITY_TEXT,
    "image": common_pb2.MODALITY_IMAGE,
    "audio": common_pb2.MODALITY_AUDIO,
    "video": common_pb2.MODALITY_VIDEO,
}


def settings() -> CliSettings:
    try:
        return load(CliSettings)
    except SettingsError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


def rpc_error(exc: grpc.RpcError, what: str) -> typer.Exit:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        return fail(f"{what}: the service is unavailable ({details}). Is the stack up? Try `make up`.")
    return fail(f"{what}: {code.name if code else 'error'}: {details}")


def ingest_channel(s: CliSettings) -> grpc.Channel:
    return grpc.insecure_channel(s.ingest_addr, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])


@project_app.command("create")
def project_create(
    project_id: Annotated[str, typer.Argument(help="Project id: lowercase letters, digits, '-', '_'.")],
    labels: Annotated[str, typer.Option(help="Comma-separated label set, e.g. 'ham,spam'.")],
    modality: Annotated[str, typer.Option(help="text, image, audio or video.")] = "text",
    target_precision: Annotated[float, typer.Option(help="Precision auto-labels must reach.")] = 0.95,
    annotators: Annotated[int, typer.Option(help="People per human task (majority vote).")] = 1,
    audit_rate: Annotated[float, typer.Option(help="Share of auto-labels also sent to people.")] = 0.02,
    model_name: Annotated[str, typer.Option(help="Triton model name (default: the project id).")] = "",
    description: Annotated[str, typer.Option(help="Free text.")] = "",
) -> None:
    """Create a project."""
    if modality not in MODALITIES:
        raise fail(f"--modality {modality!r}: use one of {', '.join(MODALITIES)}", 2)
    spec = common_pb2.ProjectSpec(
        project_id=project_id,
        modality=MODALITIES[modality],
        labels=[label.strip() for label in labels.split(",")],
        target_precision=target_precision,
        annotators_per_task=annotators,
        audit_rate=audit_rate,
        model_name=model_name,
        description=description,
    )
    s = settings()
    with ingest_channel(s) as channel:
        try:
            project = admin_pb2_grpc.ProjectServiceStub(channel).CreateProject(
                admin_pb2.CreateProjectRequest(spec=spec), timeout=10
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc, f"creating project {project_id!r}") from None
    console.print(
        f"created project [bold]{project.spec.project_id}[/] with {len(project.spec.labels)} labels"
    )


@project_app.command("list")
def project_list() -> None:
    """List projects."""
    s = settings()
    with ingest_channel(s) as channel:
        try:
            response = admin_pb2_grpc.ProjectServiceStub(channel).ListProjects(
                admin_pb2.ListProjectsRequest(), timeout=10
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc, "listing projects") from None
    table = Table("project", "modality", "labels", "target precision", "annotators", "audit rate", "model")
    for p in response.projects:
        spec = p.spec
        table.add_row(
            spec.project_id,
            common_pb2.Modality.Name(spec.modality).removeprefix("MODALITY_").lower(),
            ", ".join(spec.labels) if len(spec.labels) <= 6 else f"{len(spec.labels)} labels",
            f"{spec.target_precision:.2f}",
            str(spec.annotators_per_task),
            f"{spec.audit_rate:.3f}",
            spec.model_name,
        )
    console.print(table)


@app.command("import")
def import_file(
    file: Annotated[
        Path, typer.Argument(help="JSONL or CSV: text, optional id and label, other fields as metadata.")
    ],
    project: Annotated[str, typer.Option(help="The project to import into.")],
    batch_size: Annotated[int, typer.Option(help="Items per SubmitBatch call.")] = 500,
) -> None:
    """Import items from a file through the ingest API, with a progress bar and a summary."""
    from labelloop.datasets.files import load_file
    from labelloop.datasets.records import DatasetError

    try:
        records = load_file(file, require_label=False)
    except (DatasetError, FileNotFoundError) as exc:
        raise fail(str(exc), 2) from None
    s = settings()
    accepted = duplicates = rejected = 0
    problems: list[str] = []
    started = time.perf_counter()
    with (
        ingest_channel(s) as channel,
        Progress(
            TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err
        ) as bar,
    ):
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        task = bar.add_task("import", total=len(records))
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            items = [
                common_pb2.Item(
                    item_id=r["id"],
                    project_id=project,
                    content=common_pb2.Content(text=r["text"]),
                    metadata=r.get("metadata", {}),
                )
                for r in chunk
            ]
            try:
                response = stub.SubmitBatch(ingest_pb2.SubmitBatchRequest(items=items), timeout=60)
            except grpc.RpcError as exc:
                raise rpc_error(exc, f"importing {file} (after {start} items)") from None
            accepted += response.accepted
            duplicates += response.duplicates
            rejected += response.rejected
            for result in response.results:
                if result.status == ingest_pb2.SUBMIT_STATUS_REJECTED and len(problems) < 10:
                    problems.append(f"  item {start + result.index + 1}: {result.error_message}")
            bar.advance(task, len(chunk))
    seconds = time.perf_counter() - started
    console.print(
        f"imported {file}: {accepted} accepted, {duplicates} duplicates, {rejected} rejected "
        f"in {seconds:.1f}s ({len(records) / max(seconds, 1e-9):.0f} items/s)"
    )
    for line in problems:
        console.print(line)
    if rejected and not accepted:
        raise typer.Exit(1)


@app.command("export")
def export(
    project: Annotated[str, typer.Option(help="The project to export.")],
    out: Annotated[Path, typer.Option(help="Output file.")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl, csv or parquet.")] = "jsonl",
) -> None:
    """Write the latest label of every item of a project, with its source."""
    from labelloop.cli.export import FORMATS, write_labels
    from labelloop.core.label_log import latest_labels

    if fmt not in FORMATS:
        raise fail(f"--format {fmt!r}: use one of {', '.join(FORMATS)}", 2)
    s = settings()
    try:
        labels = latest_labels(s.kafka_bootstrap, s.topic_prefix, project)
    except Exception as exc:
        raise fail(f"reading labels from Kafka at {s.kafka_bootstrap}: {exc}") from None
    count = write_labels(sorted(labels.values(), key=lambda label: label.ingested.item.item_id), out, fmt)
    console.print(f"wrote {count} labels of project {project} to {out}")


@app.command("status")
def status(project: Annotated[str, typer.Option(help="The project.")]) -> None:
    """Counts of a project's progress and its human queue."""
    s = settings()
    with ingest_channel(s) as channel:
        try:
            st = admin_pb2_grpc.ProjectServiceStub(channel).GetProjectStatus(
                admin_pb2.GetProjectStatusRequest(project_id=project), timeout=10
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc, f"status of {project!r}") from None
    table = Table("", "count", title=f"project {st.project_id}")
    table.add_row("ingested", str(st.ingested))
    table.add_row("auto-labeled", str(st.auto_labeled))
    table.add_row("waiting for people", str(st.waiting_for_people))
    table.add_row("labeled by people", str(st.human_labeled))
    table.add_row("dead letters (all projects)", str(st.dead_letters))
    table.add_row("serving model version", str(st.serving_version or "none"))
    table.add_row("threshold", "admits nothing" if st.threshold > 1 else f"{st.threshold:.4f}")
    console.print(table)


@app.command("demo")
def demo() -> None:
    """The main job. For now: bring up the local stack and check every component (smoke check)."""
    from labelloop.stack.__main__ import main as stack_main

    console.print(
        "labelloop demo: the full loop lands with the bench issue; for now this is the stack smoke check."
    )
    code = stack_main(["up"])
    if code:
        raise typer.Exit(code)
    raise typer.Exit(stack_main(["status"]))


def main() -> None:
    """Entry point of the `labelloop` command."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
