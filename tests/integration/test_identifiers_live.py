"""Identifiers against the real Redis: a model name belongs to one project per deployment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labelloop.core import redis_store
from labelloop.core.errors import AlreadyExists
from labelloop.core.projects import ProjectStore
from labelloop.stack import LocalStack
from labelloop.v1 import common_pb2


@pytest.fixture
def projects(stack: LocalStack, redis_prefix: str) -> Iterator[ProjectStore]:
    client = redis_store.connect(stack.redis_url, stack.redis_password)
    yield ProjectStore(client, redis_prefix, cache_s=0)
    keys = list(client.scan_iter(match=f"{redis_prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def spec(project_id: str, model_name: str = "") -> common_pb2.ProjectSpec:
    return common_pb2.ProjectSpec(project_id=project_id, labels=["a", "b"], model_name=model_name)


def test_two_projects_cannot_share_a_model_name(projects: ProjectStore) -> None:
    projects.create(spec("one", "shared"))
    with pytest.raises(AlreadyExists, match="model name 'shared' is used by project 'one'"):
        projects.create(spec("two", "shared"))
    projects.create(spec("two"))  # its own id as its model name: fine
    with pytest.raises(AlreadyExists, match="model name 'two' is used by project 'two'"):
        projects.create(spec("three", "two"))
    with pytest.raises(AlreadyExists, match="project 'two' already exists"):
        projects.create(spec("two", "other"))
    assert [p.spec.model_name for p in projects.list()] == ["shared", "two"]


def test_a_project_from_before_the_claim_still_owns_its_model_name(projects: ProjectStore) -> None:
    legacy = common_pb2.Project(
        spec=common_pb2.ProjectSpec(project_id="old", labels=["a", "b"], model_name="m")
    )
    projects.client.hset(projects.key, "old", legacy.SerializeToString())
    with pytest.raises(AlreadyExists, match="used by project 'old'"):
        projects.create(spec("new", "m"))


def test_rejections_are_counted_under_known_projects_only(stack: LocalStack, projects: ProjectStore) -> None:
    from prometheus_client import REGISTRY

    from labelloop.core.progress import Progress
    from labelloop.ingest.ingestor import IngestLimits, Ingestor

    projects.create(spec("known"))
    prefix = projects.key.rsplit(":", 1)[0]
    ingestor = Ingestor(projects, Progress(projects.client, prefix), projects.client, None, IngestLimits())  # type: ignore[arg-type]
    hostile = [f"no-such-{i}" for i in range(5)] + ["abc\n", "x" * 300]
    items = [common_pb2.Item(project_id=p, content=common_pb2.Content(text="t")) for p in hostile]
    items.append(common_pb2.Item(project_id="known", content=common_pb2.Content(text=" ")))
    results = ingestor.submit(items, "test")
    assert [r.error_field for r in results] == ["item.project_id"] * len(hostile) + ["item.content.text"]
    series = {
        sample.labels["project"]
        for metric in REGISTRY.collect()
        if metric.name == "labelloop_items_rejected"
        for sample in metric.samples
    }
    assert not series & set(hostile), "an unknown project id became a metric label"
    assert {"-", "known"} <= series
