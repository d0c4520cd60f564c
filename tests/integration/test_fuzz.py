"""Property-based fuzzing (hypothesis) of the running services: generated, adversarial requests to
every unary gRPC method get a clear status (never INTERNAL, UNKNOWN or UNAVAILABLE while every
dependency is up), corrupt and hostile records on every topic are dead-lettered or handled, no
service restarts, and valid traffic around them is still labeled.

Requests are built from each method's request descriptor with random field values (text with
control characters, separators and non-ASCII, huge and negative numbers, nested messages), with
ids drawn half the time from what exists (a real project, a real lease), so deep paths are hit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from running import SERVICES, RunningServices
from support import one_label_per_item, wait_until

from labelloop.core import stream
from labelloop.core.label_log import replay
from labelloop.core.topics import ALL_TOPICS, DEAD_LETTERS
from labelloop.v1 import admin_pb2, common_pb2, human_tasks_pb2, ingest_pb2

CASES = 1000  # per method
PROJECT = f"fuzz-{uuid.uuid4().hex[:6]}"
LABELS = ["ham", "spam"]
BAD_STATUSES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE}

hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", " ", "abc\n", "x:audit", "x:who", "..", ".", "a/b", "a,b", "\x00", "é" * 5, PROJECT]
    ),
    st.text(alphabet="abc:/,.\n\x00 -_", max_size=300),
)


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return hostile_text
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(
            allow_nan=True, allow_infinity=True, width=32 if t == FieldDescriptor.TYPE_FLOAT else 64
        )
    if t == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 12)
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return st.integers(-(2**63), 2**63 - 1)
    return st.integers(-(2**31), 2**31 - 1)


@st.composite
def fill(draw: st.DrawFn, descriptor: Descriptor, message: Message, depth: int = 0) -> Message:
    """Set a random subset of `message`'s fields to random values (nested up to depth 3)."""
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is None:
                entries = draw(st.dictionaries(hostile_text, scalar(value_field), max_size=3))
                getattr(message, field.name).update(entries)
            continue
        if field.message_type is not None:
            if depth >= 3 or field.message_type.full_name.startswith("google.protobuf"):
                continue
            if field.label == FieldDescriptor.LABEL_REPEATED:
                for _ in range(draw(st.integers(0, 2))):
                    draw(fill(field.message_type, getattr(message, field.name).add(), depth + 1))
            else:
                draw(fill(field.message_type, getattr(message, field.name), depth + 1))
            continue
        if field.label == FieldDescriptor.LABEL_REPEATED:
            getattr(message, field.name).extend(draw(st.lists(scalar(field), max_size=4)))
        else:
            setattr(message, field.name, draw(scalar(field)))
    return message


def requests(
    message_type: type[Message], overrides: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[Message]:
    """Random requests of `message_type`; each top-level field in `overrides` is, half the
    time, drawn from its strategy instead (e.g. an existing project id)."""

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = draw(fill(message_type.DESCRIPTOR, message_type()))
        for name, strategy in overrides.items():
            if draw(st.booleans()):
                value = draw(strategy)
                if isinstance(value, Message):
                    getattr(message, name).CopyFrom(value)
                else:
                    setattr(message, name, value)
        return message

    return build()


@pytest.fixture(scope="module")
def services(stack, tmp_path_factory) -> Iterator[RunningServices]:
    running = RunningServices(
        stack,
        tmp_path_factory.mktemp("fuzz"),
        f"t-fuzz-{uuid.uuid4().hex[:8]}",
        f"t:fuzz:{uuid.uuid4().hex[:8]}",
    )
    running.start(SERVICES)
    running.create_project(PROJECT, LABELS, audit_rate=0.0)
    yield running
    running.stop()


def pids(services: RunningServices) -> dict[str, int | None]:
    return {name: process.running_pid() for name, process in services.processes.items()}


def exercise(call, request: Message) -> None:
    try:
        call(request, timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() not in BAD_STATUSES, f"{exc.code()}: {exc.details()} for {request!r}"


METHODS = {
    "Submit": ("ingest", ingest_pb2.SubmitRequest),
    "SubmitBatch": ("ingest", ingest_pb2.SubmitBatchRequest),
    "CreateProject": ("admin", admin_pb2.CreateProjectRequest),
    "GetProject": ("admin", admin_pb2.GetProjectRequest),
    "ListProjects": ("admin", admin_pb2.ListProjectsRequest),
    "GetProjectStatus": ("admin", admin_pb2.GetProjectStatusRequest),
    "LeaseTask": ("human_tasks", human_tasks_pb2.LeaseTaskRequest),
    "SubmitAnnotation": ("human_tasks", human_tasks_pb2.SubmitAnnotationRequest),
    "ReleaseTask": ("human_tasks", human_tasks_pb2.ReleaseTaskRequest),
    "GetQueueStats": ("human_tasks", human_tasks_pb2.GetQueueStatsRequest),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_generated_requests_get_a_clear_status(services: RunningServices, method: str) -> None:
    before = pids(services)
    stub_name, request_type = METHODS[method]
    call = getattr(getattr(services, stub_name)(), method)
    project = st.just(PROJECT)
    item = st.builds(
        lambda text, item_id: common_pb2.Item(
            item_id=item_id, project_id=PROJECT, content=common_pb2.Content(text=text)
        ),
        hostile_text,
        hostile_text,
    )
    overrides: dict[str, st.SearchStrategy[Any]] = {
        "project_id": project,
        "lease_id": st.sampled_from([uuid.uuid4().hex, "0" * 32]),
        "item": item,
    }
    present = {f.name for f in request_type.DESCRIPTOR.fields}
    strategy = requests(request_type, {k: v for k, v in overrides.items() if k in present})

    @settings(
        max_examples=CASES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def check(request: Message) -> None:
        exercise(call, request)

    check()
    assert pids(services) == before, "a service restarted"


def test_corrupt_records_on_every_topic_are_dead_lettered_and_valid_items_still_labeled(
    services: RunningServices, stack
) -> None:
    before = pids(services)
    producer = stream.EventProducer(stack.bootstrap_servers, services.topic_prefix, "fuzz")

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.binary(max_size=200), st.sampled_from(ALL_TOPICS), st.binary(max_size=40))
    def corrupt(value: bytes, topic, key: bytes) -> None:
        if topic is not DEAD_LETTERS:
            producer.send(topic, key, value)

    corrupt()
    for topic in ALL_TOPICS:  # hostile but well-formed: an unknown project, an empty item
        if topic is not DEAD_LETTERS:
            producer.send(topic, b"fuzz/x", topic.message_type())
    producer.flush()
    # valid traffic after the garbage, in a project of its own (the fuzzed one has a long queue):
    # no model, so every item reaches a person, who answers
    valid = f"valid-{uuid.uuid4().hex[:6]}"
    services.create_project(valid, LABELS, audit_rate=0.0)
    ids = [f"after-{i}" for i in range(5)]
    response = services.ingest().SubmitBatch(
        ingest_pb2.SubmitBatchRequest(
            items=[
                common_pb2.Item(item_id=i, project_id=valid, content=common_pb2.Content(text=f"valid {i}"))
                for i in ids
            ]
        ),
        timeout=30,
    )
    assert response.accepted == len(ids)
    stub = services.human_tasks()

    def answer_one() -> bool:
        lease = stub.LeaseTask(
            human_tasks_pb2.LeaseTaskRequest(project_id=valid, annotator_id="a"), timeout=10
        )
        if lease.has_task:
            stub.SubmitAnnotation(
                human_tasks_pb2.SubmitAnnotationRequest(
                    lease_id=lease.lease_id, annotator_id="a", labels=["ham"]
                ),
                timeout=10,
            )
        labels = one_label_per_item(stack.bootstrap_servers, services.topic_prefix, valid)
        return set(ids) <= set(labels)

    wait_until(answer_one, 180, interval=0.2, message="valid items after the garbage were not labeled")
    letters = list(replay(stack.bootstrap_servers, services.topic_prefix, DEAD_LETTERS))
    assert letters, "garbage was dead-lettered"
    # the status counts offsets (transaction markers too), on a reader ingest keeps open
    for _ in range(2):
        status = services.admin().GetProjectStatus(
            admin_pb2.GetProjectStatusRequest(project_id=valid), timeout=10
        )
        assert status.dead_letters >= len(letters), (status.dead_letters, len(letters))
    assert pids(services) == before, "a service restarted"
    producer.close()
