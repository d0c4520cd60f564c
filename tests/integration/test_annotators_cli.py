"""`labelloop annotators --project P` against the real ingest service and Kafka: the table of each
annotator's agreement, folded from the raw `annotations` topic (a re-sent answer counted once);
an unknown project is an error naming it, with exit code 1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from running import RunningServices
from test_rules_and_sources import command_line, table_rows

from labelloop.core import stream
from labelloop.core.topics import ANNOTATIONS, item_key
from labelloop.v1 import events_pb2


@pytest.fixture(scope="module")
def services(stack, tmp_path_factory) -> Iterator[RunningServices]:
    running = RunningServices(
        stack,
        tmp_path_factory.mktemp("annotators"),
        f"t-annotators-{uuid.uuid4().hex[:8]}",
        f"t:annotators:{uuid.uuid4().hex[:8]}",
    )
    running.start(("ingest",))
    yield running
    running.stop()


def test_the_cli_shows_agreement_with_consensus_and_reviews(services: RunningServices, tmp_path) -> None:
    project = f"agree-{uuid.uuid4().hex[:6]}"
    services.create_project(project, ["ham", "spam"], model_name=f"none-{project}")

    def answer(task: str, who: str, label: str, consensus: str = "", **review: object):
        return events_pb2.AnnotationSubmitted(
            task_id=task,
            item_id=task.split(":")[0],
            project_id=project,
            annotator_id=who,
            labels=[label],
            lease_id=f"{task}-{who}",
            consensus_labels=[consensus] if consensus else [],
            **review,  # type: ignore[arg-type]
        )

    review = {
        "reason": events_pb2.TASK_REASON_REVIEW,
        "reviewed_labels": ["spam"],
        "reviewed_annotators": ["u1"],
    }
    events = [
        answer("a", "u1", "spam"),
        answer("a", "u1", "spam"),  # re-sent under the same lease: counted once
        answer("a", "u2", "spam", "spam"),
        answer("b", "u1", "spam"),
        answer("b", "u2", "ham", "ham"),  # k=2 here: no tie in this synthetic history
        answer("b:review", "u2", "ham", "ham", **review),
    ]
    producer = stream.EventProducer(services.stack.bootstrap_servers, services.topic_prefix, "test")
    for event in events:
        producer.send(ANNOTATIONS, item_key(project, event.item_id), event)
    producer.flush()
    producer.close()

    run = command_line(services, tmp_path)
    done = run("annotators", "--project", project)
    assert done.returncode == 0, done.stderr
    assert f"project {project}: 2 annotators" in done.stdout
    rows = table_rows(done.stdout)
    assert rows["u1"] == ["2", "1", "0.500", "1", "0", "0.000"]
    assert rows["u2"] == ["3", "3", "1.000", "0", "0", "-"]

    missing = run("annotators", "--project", "no-such-project")
    assert missing.returncode == 1
    assert "no-such-project" in missing.stderr and "NOT_FOUND" in missing.stderr
