"""`labelloop rules add|import|list|remove|stats --project P`: a project's rules (labeling
functions), managed through the RuleService of the ingest API; `stats` replays the labels topic
and scores each rule as Snorkel's labeling-function analysis does (coverage, overlaps,
conflicts, empirical accuracy against the human labels).

Exit codes as the rest of the CLI: 0 success, 1 the operation failed, 2 bad usage or configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.table import Table

from labelloop.cli.settings import CliSettings
from labelloop.core import grpc_client
from labelloop.core.errors import InvalidArgument
from labelloop.core.grpc_client import MissingToken, resolve_token
from labelloop.core.rules import CompiledRules, describe_matcher, parse_rule_file, rule_stats
from labelloop.core.settings import SettingsError, load
from labelloop.v1 import common_pb2, rules_pb2, rules_pb2_grpc

rules_app = typer.Typer(help="A project's rules (labeling functions).", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
ProjectOption = Annotated[str, typer.Option("--project", help="The project.")]


def cli_settings() -> CliSettings:
    try:
        return load(CliSettings)
    except SettingsError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def rule_stub(s: CliSettings) -> tuple[grpc.Channel, rules_pb2_grpc.RuleServiceStub]:
    try:
        token = resolve_token(s.token, s.token_file)
    except MissingToken as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    channel = grpc_client.channel(s.ingest_addr, token, tls=s.grpc_tls())
    return channel, rules_pb2_grpc.RuleServiceStub(channel)


def rpc_failed(exc: grpc.RpcError, what: str) -> typer.Exit:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        err.print(f"[red]error:[/] {what}: the ingest service is unavailable ({details}). Is the stack up?")
    else:
        err.print(f"[red]error:[/] {what}: {code.name if code else 'error'}: {details}")
    return typer.Exit(1)


def _print(rule_set: rules_pb2.RuleSet) -> None:
    table = Table(
        "name", "label", "matcher", title=f"project {rule_set.project_id}: rules v{rule_set.version}"
    )
    for rule in rule_set.rules:
        table.add_row(rule.name, rule.label, describe_matcher(rule))
    console.print(table)


def _add(project: str, rules: list[rules_pb2.Rule]) -> rules_pb2.RuleSet:
    channel, stub = rule_stub(cli_settings())
    result = rules_pb2.RuleSet()
    with channel:
        for rule in rules:
            try:
                result = stub.AddRule(rules_pb2.AddRuleRequest(project_id=project, rule=rule), timeout=10)
            except grpc.RpcError as exc:
                raise rpc_failed(exc, f"adding rule {rule.name!r} to {project!r}") from None
    return result


@rules_app.command("add")
def add(
    project: ProjectOption,
    name: Annotated[
        str, typer.Option(help="The rule's name (unique in the project; replaces one of that name).")
    ],
    label: Annotated[str, typer.Option(help="The label it votes for.")],
    keyword: Annotated[
        list[str] | None, typer.Option(help="A word or phrase (repeat); matched whole, ignoring case.")
    ] = None,
    regex: Annotated[str, typer.Option(help="A regular expression searched in the text.")] = "",
    ignore_case: Annotated[bool, typer.Option(help="The regex ignores case.")] = False,
    metadata: Annotated[
        list[str] | None,
        typer.Option(help="FIELD=VALUE: votes when the item's metadata field has that value (repeat)."),
    ] = None,
) -> None:
    """Add a rule (or replace the one of that name): exactly one of --keyword, --regex, --metadata."""
    rule = rules_pb2.Rule(name=name, label=label)
    given = [bool(keyword), bool(regex), bool(metadata)]
    if sum(given) != 1:
        err.print("[red]error:[/] give exactly one of --keyword, --regex, --metadata")
        raise typer.Exit(2)
    if keyword:
        rule.keywords.terms.extend(keyword)
    elif regex:
        rule.regex.pattern = regex
        rule.regex.ignore_case = ignore_case
    else:
        pairs = [m.partition("=") for m in metadata or []]
        fields = {f for f, _, _ in pairs}
        if any(not sep for _, sep, _ in pairs) or len(fields) != 1:
            err.print("[red]error:[/] --metadata takes FIELD=VALUE, the same FIELD each time")
            raise typer.Exit(2)
        rule.metadata.field = fields.pop()
        rule.metadata.values.extend(v for _, _, v in pairs)
    _print(_add(project, [rule]))


@rules_app.command("import")
def import_rules(
    project: ProjectOption,
    path: Annotated[Path, typer.Argument(help="A rule file (YAML, see the README).")],
) -> None:
    """Add every rule of a rule file (replacing rules of the same names)."""
    try:
        rules = parse_rule_file(path.read_text(encoding="utf-8"))
    except OSError as exc:
        err.print(f"[red]error:[/] reading {path}: {exc}")
        raise typer.Exit(2) from None
    except InvalidArgument as exc:
        err.print(f"[red]error:[/] {path}: {exc}")
        raise typer.Exit(2) from None
    _print(_add(project, rules))


@rules_app.command("list")
def list_rules(project: ProjectOption) -> None:
    """The project's rules and their version."""
    channel, stub = rule_stub(cli_settings())
    with channel:
        try:
            rule_set = stub.ListRules(rules_pb2.ListRulesRequest(project_id=project), timeout=10)
        except grpc.RpcError as exc:
            raise rpc_failed(exc, f"listing the rules of {project!r}") from None
    _print(rule_set)


@rules_app.command("remove")
def remove(project: ProjectOption, name: Annotated[str, typer.Argument(help="The rule's name.")]) -> None:
    """Remove a rule."""
    channel, stub = rule_stub(cli_settings())
    with channel:
        try:
            rule_set = stub.RemoveRule(rules_pb2.RemoveRuleRequest(project_id=project, name=name), timeout=10)
        except grpc.RpcError as exc:
            raise rpc_failed(exc, f"removing rule {name!r} of {project!r}") from None
    _print(rule_set)


@rules_app.command("stats")
def stats(project: ProjectOption) -> None:
    """Each rule's coverage, overlaps and conflicts over the project's labeled items, and its
    accuracy against the human labels (the labels topic, replayed)."""
    from labelloop.core.label_log import latest_labels

    s = cli_settings()
    channel, stub = rule_stub(s)
    with channel:
        try:
            rule_set = stub.ListRules(rules_pb2.ListRulesRequest(project_id=project), timeout=10)
        except grpc.RpcError as exc:
            raise rpc_failed(exc, f"listing the rules of {project!r}") from None
    try:
        labels = latest_labels(s.kafka_bootstrap, s.topic_prefix, project)
    except Exception as exc:
        err.print(f"[red]error:[/] reading labels from Kafka at {s.kafka_bootstrap}: {exc}")
        raise typer.Exit(1) from None
    items = [
        (
            label.ingested.item,
            label.labels[0] if label.source == common_pb2.LABEL_SOURCE_HUMAN and label.labels else None,
        )
        for label in labels.values()
    ]
    human = sum(gold is not None for _, gold in items)
    console.print(
        f"project {project}: rules v{rule_set.version} over {len(items)} labeled items ({human} by people)"
    )
    table = Table("rule", "label", "votes", "coverage", "overlaps", "conflicts", "judged", "accuracy")
    for row in rule_stats(CompiledRules(rule_set), items):
        accuracy = "-" if row.accuracy is None else f"{row.accuracy:.3f}"
        table.add_row(
            row.name, row.label, str(row.votes), f"{row.coverage:.3f}", f"{row.overlaps:.3f}",
            f"{row.conflicts:.3f}", str(row.judged), accuracy,
        )  # fmt: skip
    console.print(table)
