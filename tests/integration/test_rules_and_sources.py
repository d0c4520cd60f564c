"""Rules and the label model against the real services: the RuleService validates (errors name the field), versions
and stores a project's rules; inference adds the votes of the rules that match to every
prediction it produces (counted on the predictions topic); `labelloop rules import|list|remove|
stats` work, stats scoring each rule against the human labels of the labels topic; people's
answers teach the label model (in Redis) how each voting rule did, once per item."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from running import RunningServices
from support import wait_until

from labelloop.core import stream
from labelloop.core.label_log import replay
from labelloop.core.label_model_store import LabelModelStore
from labelloop.core.topics import LABELS, PREDICTIONS, item_key
from labelloop.v1 import common_pb2, events_pb2, human_tasks_pb2, ingest_pb2, rules_pb2, rules_pb2_grpc

LABELS_OF_PROJECT = ["sports", "politics", "tech"]


@pytest.fixture(scope="module")
def services(stack, tmp_path_factory):
    running = RunningServices(
        stack,
        tmp_path_factory.mktemp("rules"),
        f"t-rules-{uuid.uuid4().hex[:8]}",
        f"t:rules:{uuid.uuid4().hex[:8]}",
    )
    running.start(("ingest", "inference", "routing", "human_tasks"))
    yield running
    running.stop()


def keywords(name: str, label: str, *terms: str) -> rules_pb2.Rule:
    return rules_pb2.Rule(name=name, label=label, keywords=rules_pb2.KeywordMatcher(terms=terms))


def refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_rules_are_validated_versioned_and_vote_on_every_prediction(services: RunningServices) -> None:
    project = f"rules-{uuid.uuid4().hex[:6]}"
    services.create_project(project, LABELS_OF_PROJECT, model_name=f"none-{project}")
    api = rules_pb2_grpc.RuleServiceStub(services.channel("ingest"))

    def add(rule: rules_pb2.Rule, project_id: str = project) -> rules_pb2.RuleSet:
        return api.AddRule(rules_pb2.AddRuleRequest(project_id=project_id, rule=rule), timeout=10)

    # bad input: a clear status naming the field
    err = refusal(lambda: add(keywords("k", "cooking", "x")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "rule.label" in err.details()
    err = refusal(
        lambda: add(rules_pb2.Rule(name="r", label="tech", regex=rules_pb2.RegexMatcher(pattern=r"(a)\1")))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "rule.regex.pattern" in err.details()
    err = refusal(lambda: add(keywords("k", "tech", "x"), "no-such-project"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = refusal(
        lambda: api.RemoveRule(rules_pb2.RemoveRuleRequest(project_id=project, name="nope"), timeout=10)
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND and "nope" in err.details()

    assert add(keywords("ball", "sports", "goal")).version == 1
    assert add(keywords("ball", "sports", "goal", "world cup")).version == 2, "a replacement is a new version"
    add(
        rules_pb2.Rule(
            name="elect", label="politics", regex=rules_pb2.RegexMatcher(pattern=r"\belect", ignore_case=True)
        )
    )
    add(
        rules_pb2.Rule(
            name="feed", label="tech", metadata=rules_pb2.MetadataMatcher(field="feed", values=["slashdot"])
        )
    )
    add(keywords("gone", "tech", "goal"))
    rule_set = api.RemoveRule(rules_pb2.RemoveRuleRequest(project_id=project, name="gone"), timeout=10)
    assert rule_set.version == 6 and [r.name for r in rule_set.rules] == ["ball", "elect", "feed"]
    assert api.ListRules(rules_pb2.ListRulesRequest(project_id=project), timeout=10) == rule_set

    texts = {
        "a": ("A late goal at the World Cup", {}, {("rule:ball", "sports")}),
        "b": ("Election news", {"feed": "slashdot"}, {("rule:elect", "politics"), ("rule:feed", "tech")}),
        "c": ("nothing to see", {}, set()),
        "d": ("goalkeepers", {"feed": "other"}, set()),
    }
    # every item is ingested after the last change, so its votes name version 6
    ingest = services.ingest()
    for item_id, (text, metadata, _) in texts.items():
        ingest.Submit(
            ingest_pb2.SubmitRequest(
                item=common_pb2.Item(
                    item_id=item_id,
                    project_id=project,
                    content=common_pb2.Content(text=text),
                    metadata=metadata,
                )
            ),
            timeout=10,
        )

    def predictions() -> dict[str, events_pb2.Prediction]:
        records = replay(
            services.stack.bootstrap_servers, services.topic_prefix, PREDICTIONS, project_id=project
        )
        return {p.ingested.item.item_id: p for p in records}

    wait_until(lambda: len(predictions()) == len(texts), 90, message="a prediction per item")
    seen = predictions()
    assert len(seen) == len(texts)
    for item_id, (_, _, expected) in texts.items():
        prediction = seen[item_id]
        assert prediction.no_model
        assert {(v.source, v.label) for v in prediction.votes} == expected, item_id
        assert all(v.version == 6 for v in prediction.votes), item_id


def command_line(services: RunningServices, tmp_path: Path):
    """Runs `labelloop ARGS...` against the test's services with the admin token."""
    token_file = tmp_path / "admin.token"
    token_file.write_text(services.token + "\n")
    env = {
        **os.environ,
        **services.stack.service_env(),
        "COLUMNS": "250",
        "LABELLOOP_TOPIC_PREFIX": services.topic_prefix,
        "LABELLOOP_INGEST_ADDR": f"127.0.0.1:{services.grpc_ports['ingest']}",
        "LABELLOOP_TOKEN_FILE": str(token_file),
    }
    env.pop("LABELLOOP_TOKEN", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "labelloop.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def table_rows(text: str) -> dict[str, list[str]]:
    """The rows of a rich table printed by the CLI: first cell -> the other cells."""
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if "│" in line]
    return {row[0]: row[1:] for row in cells if row}


def publish_labels(services: RunningServices, project: str, labels: list[tuple[str, str, str, int]]) -> None:
    """Final labels (item id, text, label, source) on the labels topic, waited for."""
    producer = stream.EventProducer(services.stack.bootstrap_servers, services.topic_prefix, "test")
    for item_id, text, label, source in labels:
        item = common_pb2.Item(item_id=item_id, project_id=project, content=common_pb2.Content(text=text))
        producer.send(
            LABELS,
            item_key(project, item_id),
            events_pb2.LabelFinalized(
                ingested=events_pb2.ItemIngested(item=item),
                labels=[label],
                source=source,  # type: ignore[arg-type]
            ),
        )
    producer.flush()
    producer.close()

    def published() -> int:
        bootstrap = services.stack.bootstrap_servers
        return len(list(replay(bootstrap, services.topic_prefix, LABELS, project_id=project)))

    wait_until(lambda: published() == len(labels), 60, message="the labels are in the topic")


def test_people_label_the_voted_items_and_sources_shows_each_rules_learned_accuracy(
    services: RunningServices, tmp_path: Path
) -> None:
    project = f"src-{uuid.uuid4().hex[:6]}"
    services.create_project(project, LABELS_OF_PROJECT, model_name=f"none-{project}")
    api = rules_pb2_grpc.RuleServiceStub(services.channel("ingest"))
    for rule in [
        keywords("ball", "sports", "ball"),
        keywords("vote", "politics", "vote"),
        keywords("idle", "tech", "zzzz"),
    ]:
        api.AddRule(rules_pb2.AddRuleRequest(project_id=project, rule=rule), timeout=10)
    texts = {"1": "ball game", "2": "ball vote", "3": "vote today", "4": "nothing"}
    ingest = services.ingest()
    for item_id, text in texts.items():
        item = common_pb2.Item(item_id=item_id, project_id=project, content=common_pb2.Content(text=text))
        ingest.Submit(ingest_pb2.SubmitRequest(item=item), timeout=10)

    def predicted() -> int:
        bootstrap = services.stack.bootstrap_servers
        return len(list(replay(bootstrap, services.topic_prefix, PREDICTIONS, project_id=project)))

    wait_until(lambda: predicted() == len(texts), 90, message="a prediction per item")
    human = common_pb2.LABEL_SOURCE_HUMAN
    publish_labels(
        services,
        project,
        [
            (i, t, "politics" if i in "23" else "sports" if i == "1" else "tech", human)
            for i, t in texts.items()
        ],
    )
    done = command_line(services, tmp_path)("sources", "--project", project)
    assert done.returncode == 0, done.stderr
    assert "4 human labels, 4 predictions" in done.stdout
    rows = table_rows(done.stdout)
    # ball votes on 1 (right) and 2 (wrong), vote on 2 and 3 (both right), idle never; each over
    # 4 items; accuracy smoothed toward the prior 0.7 with the weight of 2 votes
    assert rows["rule:ball"] == ["2", "0.500", f"{(1 + 1.4) / 4:.3f}"]
    assert rows["rule:vote"] == ["2", "0.500", f"{(2 + 1.4) / 4:.3f}"]
    assert rows["rule:idle"] == ["0", "0.000", "0.700"]
    assert "model" not in rows, "no model served: it cast no votes"


def test_the_cli_imports_lists_removes_and_scores_rules(services: RunningServices, tmp_path: Path) -> None:
    project = f"cli-{uuid.uuid4().hex[:6]}"
    services.create_project(project, LABELS_OF_PROJECT, model_name=f"none-{project}")
    run = command_line(services, tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run("rules", *args)

    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(
        "rules:\n"
        "  - {name: ball, label: sports, keywords: [ball]}\n"
        "  - {name: vote, label: politics, keywords: [vote]}\n"
    )
    done = cli("import", str(rule_file), "--project", project)
    assert done.returncode == 0, done.stderr
    assert "rules v2" in done.stdout and "keywords: ball" in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: x, label: sports}\n")
    done = cli("import", str(bad), "--project", project)
    assert done.returncode == 2 and "rules[0]: needs exactly one" in done.stderr
    done = cli("add", "--project", project, "--name", "r", "--label", "nope", "--keyword", "x")
    assert done.returncode == 1 and "INVALID_ARGUMENT" in done.stderr and "rule.label" in done.stderr
    done = cli("add", "--project", project, "--name", "tmp", "--label", "tech", "--regex", "v[0-9]+")
    assert done.returncode == 0 and "rules v3" in done.stdout
    done = cli("remove", "--project", project, "tmp")
    assert (
        done.returncode == 0 and "rules v4" in done.stdout and "tmp" not in done.stdout.split("rules v4")[1]
    )

    # labels of record: three human labels, one model label
    publish_labels(
        services,
        project,
        [
            ("1", "ball game", "sports", common_pb2.LABEL_SOURCE_HUMAN),
            ("2", "ball vote", "politics", common_pb2.LABEL_SOURCE_HUMAN),
            ("3", "vote today", "politics", common_pb2.LABEL_SOURCE_HUMAN),
            ("4", "ball", "sports", common_pb2.LABEL_SOURCE_MODEL),
        ],
    )
    done = cli("stats", "--project", project)
    assert done.returncode == 0, done.stderr
    assert "over 4 labeled items (3 by people)" in done.stdout
    rows = table_rows(done.stdout)
    # ball votes on 1, 2, 4 (coverage 3/4) and overlaps/conflicts with vote on 2; judged on the
    # human labels 1 (right) and 2 (wrong); vote: 2 and 3, both right
    assert rows["ball"] == ["sports", "3", "0.750", "0.250", "0.250", "2", "0.500"]
    assert rows["vote"] == ["politics", "2", "0.500", "0.250", "0.250", "2", "1.000"]


def test_peoples_answers_teach_the_label_model_once_per_item(services: RunningServices) -> None:
    project = f"lm-{uuid.uuid4().hex[:6]}"
    services.create_project(project, LABELS_OF_PROJECT, model_name=f"none-{project}")
    api = rules_pb2_grpc.RuleServiceStub(services.channel("ingest"))
    for rule in [keywords("ball", "sports", "ball"), keywords("vote", "politics", "vote")]:
        api.AddRule(rules_pb2.AddRuleRequest(project_id=project, rule=rule), timeout=10)
    truth = {"1": ("ball game", "sports"), "2": ("ball vote", "politics"), "3": ("quiet", "tech")}
    ingest = services.ingest()
    for item_id, (text, _) in truth.items():
        item = common_pb2.Item(item_id=item_id, project_id=project, content=common_pb2.Content(text=text))
        ingest.Submit(ingest_pb2.SubmitRequest(item=item), timeout=10)
    # no model serves: every item becomes a task; a person answers each with its true label
    human = services.human_tasks()
    answered: set[str] = set()

    def answer_one() -> bool:
        lease = human.LeaseTask(
            human_tasks_pb2.LeaseTaskRequest(project_id=project, annotator_id="ann"), timeout=10
        )
        if lease.has_task:
            item_id = lease.task.ingested.item.item_id
            assert {(v.source, v.label) for v in lease.task.prediction.votes} <= {
                ("rule:ball", "sports"),
                ("rule:vote", "politics"),
            }
            human.SubmitAnnotation(
                human_tasks_pb2.SubmitAnnotationRequest(
                    lease_id=lease.lease_id, annotator_id="ann", labels=[truth[item_id][1]]
                ),
                timeout=10,
            )
            answered.add(item_id)
        return answered == set(truth)

    wait_until(answer_one, 120, message="every item answered")
    store = LabelModelStore(services.redis, services.redis_prefix)
    model = store.load(project, LABELS_OF_PROJECT)
    assert list(model.class_counts) == [1, 1, 1]
    ball, vote = model.counts["rule:ball"], model.counts["rule:vote"]
    # ball: right on 1, wrong on 2, abstained on 3; vote: abstained on 1, right on 2 and 3 abstained
    assert (ball[0, 0], ball[1, 0], ball[2, 3], ball.sum()) == (1, 1, 1, 3)
    assert (vote[0, 3], vote[1, 1], vote[2, 3], vote.sum()) == (1, 1, 1, 3)
    # each source's learned accuracy is a gauge of human-tasks: smoothed toward 0.7 (weight 2)
    metrics_url = f"http://127.0.0.1:{services.ports['human_tasks']}/metrics"
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        exported = response.read().decode()
    for source, accuracy in [("rule:ball", (1 + 1.4) / 4), ("rule:vote", (1 + 1.4) / 3)]:
        line = f'labelloop_source_accuracy{{project="{project}",source="{source}"}}'
        assert any(
            row.startswith(line) and float(row.split()[-1]) == pytest.approx(accuracy)
            for row in exported.splitlines()
        ), line
    # delivered again (at-least-once): counted once
    replayed = events_pb2.Prediction(
        ingested=events_pb2.ItemIngested(item=common_pb2.Item(item_id="1", project_id=project)),
        votes=[events_pb2.SourceVote(source="rule:ball", label="sports", version=2)],
    )
    assert not store.observe_prediction(replayed, "sports", LABELS_OF_PROJECT)
    assert store.load(project, LABELS_OF_PROJECT).counts["rule:ball"].sum() == 3
