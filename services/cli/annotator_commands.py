"""`labelloop annotators --project P`: each annotator's agreement with the consensus of the tasks
they answered and with the reviews of their labels (human_tasks/agreement.py), folded from the
project's `annotations` topic: the same counters human-tasks keeps in Redis as answers arrive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.table import Table

from labelloop.cli.rule_commands import cli_settings, rpc_failed, rule_stub
from labelloop.human_tasks.agreement import AnnotatorAgreement, replay_agreement
from labelloop.v1 import admin_pb2, admin_pb2_grpc

console = Console()
err = Console(stderr=True)

COLUMNS = ("annotator", "answered", "agreed", "consensus agreement", "reviewed", "upheld", "review agreement")


def agreement_rows(rows: Sequence[AnnotatorAgreement]) -> list[list[str]]:
    """The table's rows, one per annotator ("-" where a rate has no data)."""

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    return [
        [
            r.annotator,
            str(r.answered),
            str(r.agreed),
            rate(r.consensus_agreement),
            str(r.reviewed),
            str(r.upheld),
            rate(r.review_agreement),
        ]
        for r in rows
    ]


def annotators(project: Annotated[str, typer.Option("--project", help="The project.")]) -> None:
    """Each annotator's agreement with consensus and with reviews (admin: reads Kafka)."""
    from labelloop.core.label_log import replay
    from labelloop.core.topics import ANNOTATIONS

    s = cli_settings()
    channel, _ = rule_stub(s)
    with channel:
        try:
            admin_pb2_grpc.ProjectServiceStub(channel).GetProject(
                admin_pb2.GetProjectRequest(project_id=project), timeout=10
            )
        except grpc.RpcError as exc:
            raise rpc_failed(exc, f"reading project {project!r}") from None
    try:
        rows = replay_agreement(
            a
            for a in replay(s.kafka_bootstrap, s.topic_prefix, ANNOTATIONS, project_id=project)
            if a.project_id == project
        )
    except Exception as exc:
        err.print(f"[red]error:[/] reading the annotations topic from Kafka at {s.kafka_bootstrap}: {exc}")
        raise typer.Exit(1) from None
    console.print(f"project {project}: {len(rows)} annotators")
    table = Table(*COLUMNS)
    for row in agreement_rows(rows):
        table.add_row(*row)
    console.print(table)
