"""`labelloop sources --project P`: each label source's learned accuracy (the model, every rule,
the LLM), from the label model (`labelloop.core.label_model`) rebuilt by replaying the project's
predictions (their scores and rule votes), votes (the LLM's) and labels (people's) topics."""

from __future__ import annotations

from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.table import Table

from labelloop.cli.rule_commands import cli_settings, rpc_failed, rule_stub
from labelloop.core.label_model import rebuild
from labelloop.core.rules import source_name
from labelloop.core.topics import PREDICTIONS, VOTES
from labelloop.v1 import admin_pb2, admin_pb2_grpc, common_pb2, rules_pb2

console = Console()
err = Console(stderr=True)


def sources(project: Annotated[str, typer.Option("--project", help="The project.")]) -> None:
    """Each source's votes checked by people, coverage and learned accuracy."""
    from labelloop.core.label_log import latest_labels, replay

    s = cli_settings()
    channel, stub = rule_stub(s)
    with channel:
        try:
            spec = admin_pb2_grpc.ProjectServiceStub(channel).GetProject(
                admin_pb2.GetProjectRequest(project_id=project), timeout=10
            )
            rule_set = stub.ListRules(rules_pb2.ListRulesRequest(project_id=project), timeout=10)
        except grpc.RpcError as exc:
            raise rpc_failed(exc, f"reading project {project!r}") from None
    labels = list(spec.spec.labels)
    try:
        history = [
            (
                p.ingested.item.item_id,
                [(v.source, v.label) for v in p.votes],
                [c.probability for c in p.scores] if len(p.scores) == len(labels) else None,
            )
            for p in replay(s.kafka_bootstrap, s.topic_prefix, PREDICTIONS, project_id=project)
        ]
        late: dict[str, dict[str, str]] = {}
        for cast in replay(s.kafka_bootstrap, s.topic_prefix, VOTES, project_id=project):
            late.setdefault(cast.item_id, {})[cast.vote.source] = cast.vote.label
        human = {
            item_id: label.labels[0]
            for item_id, label in latest_labels(s.kafka_bootstrap, s.topic_prefix, project).items()
            if label.source == common_pb2.LABEL_SOURCE_HUMAN and label.labels
        }
    except Exception as exc:
        err.print(f"[red]error:[/] reading the topics from Kafka at {s.kafka_bootstrap}: {exc}")
        raise typer.Exit(1) from None
    model = rebuild(labels, history, human, [source_name(r.name) for r in rule_set.rules], late)
    console.print(f"project {project}: {len(human)} human labels, {len(history)} predictions")
    table = Table("source", "judged", "coverage", "accuracy")
    for source in model.sources():
        table.add_row(
            source,
            str(model.judged(source)),
            f"{model.coverage(source):.3f}",
            f"{model.accuracy(source):.3f}",
        )
    console.print(table)
