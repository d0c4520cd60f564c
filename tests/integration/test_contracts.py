"""Contracts for the modalities that come next, on the real stack: projects of a modality without a
model path (audio, video) are refused at creation, by the admin API and by the CLI; spans and
boxes in answers are validated by human-tasks (each bad one refused naming its field, nothing
recorded), stored with the answer, carried into the `annotations` event and the final label, and
exported by `labelloop export`."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import grpc
import numpy as np
import pytest
from confluent_kafka import KafkaException
from running import PIPELINE, RunningServices
from support import wait_until

from labelloop.core.label_log import label_records, replay
from labelloop.core.media import MediaStore
from labelloop.core.topics import ANNOTATIONS
from labelloop.datasets.images import png_bytes
from labelloop.v1 import admin_pb2, common_pb2, human_tasks_pb2, ingest_pb2


def cli_env(services: RunningServices, **extra: str) -> dict[str, str]:
    return {
        **services.processes["ingest"].env,
        "LABELLOOP_INGEST_ADDR": f"127.0.0.1:{services.grpc_ports['ingest']}",
        "LABELLOOP_TOKEN": services.token,
        "COLUMNS": "1000",  # rich wraps lines at the terminal width
        **extra,
    }


def test_audio_and_video_projects_are_refused_by_the_admin_api_and_the_cli(
    stack, tmp_path, topic_prefix, redis_prefix
):
    services = RunningServices(stack, tmp_path, topic_prefix, redis_prefix)
    try:
        services.start(["ingest"])
        admin = services.admin()
        for modality in (common_pb2.MODALITY_AUDIO, common_pb2.MODALITY_VIDEO):
            project_id = f"av-{uuid.uuid4().hex[:8]}"
            with pytest.raises(grpc.RpcError) as info:
                services.create_project(project_id, ["a", "b"], modality=modality)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details().startswith("spec.modality: ")
            assert "no model path" in info.value.details()
            with pytest.raises(grpc.RpcError) as missing:
                admin.GetProject(admin_pb2.GetProjectRequest(project_id=project_id), timeout=10)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # nothing was stored

        env = cli_env(services)

        def create(project_id: str, modality: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "labelloop.cli.main", "project", "create", project_id]
            command += ["--labels", "a,b", "--modality", modality]
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

        for modality in ("audio", "video"):
            refused = create(f"cli-{modality}-{uuid.uuid4().hex[:6]}", modality)
            assert refused.returncode == 2, refused
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1 and "INVALID_ARGUMENT" in lines[0], refused.stderr
            assert "spec.modality" in lines[0] and modality in lines[0], refused.stderr
        accepted = create(f"cli-image-{uuid.uuid4().hex[:6]}", "image")
        assert accepted.returncode == 0, accepted.stderr
    finally:
        services.stop()


TEXT = "Ada met Bob in Paris"
SPANS = [common_pb2.Span(start=0, end=3, label="person"), common_pb2.Span(start=15, end=20, label="place")]
BOX = common_pb2.Box(x=1, y=2, w=5.5, h=4, label="place")


def _tasks_queued(stub, project_id: str, n: int) -> None:
    request = human_tasks_pb2.GetQueueStatsRequest(project_id=project_id)
    wait_until(lambda: stub.GetQueueStats(request, timeout=5).queued >= n, 60, interval=0.2)


def _lease(stub, project_id: str) -> human_tasks_pb2.LeaseTaskResponse:
    leased = stub.LeaseTask(
        human_tasks_pb2.LeaseTaskRequest(project_id=project_id, annotator_id="ann"), timeout=10
    )
    assert leased.has_task
    return leased


def _refused(stub, lease_id: str, label: str, **regions) -> str:
    """Submit an answer that must be refused; returns the status details."""
    request = human_tasks_pb2.SubmitAnnotationRequest(
        lease_id=lease_id, annotator_id="ann", labels=[label], **regions
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.SubmitAnnotation(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return info.value.details()


def test_spans_and_boxes_are_validated_stored_carried_into_the_label_and_exported(
    stack, tmp_path, topic_prefix, redis_prefix
):
    media_root = (tmp_path / "media").as_uri()
    services = RunningServices(
        stack, tmp_path, topic_prefix, redis_prefix, extra_env={"LABELLOOP_MEDIA_ROOT": media_root}
    )
    try:
        services.start(PIPELINE)
        stub = services.human_tasks()
        labels = ["person", "place"]
        text_project, image_project = f"spans-{uuid.uuid4().hex[:6]}", f"boxes-{uuid.uuid4().hex[:6]}"
        # no model is served under these names: every item becomes a human task
        services.create_project(text_project, labels, model_name=f"none-{text_project}")
        services.create_project(
            image_project, labels, modality=common_pb2.MODALITY_IMAGE, model_name=f"none-{image_project}"
        )
        image = MediaStore(media_root).put(png_bytes(np.full((8, 8), 100, dtype=np.uint8)))
        items = [
            common_pb2.Item(item_id="t0", project_id=text_project, content=common_pb2.Content(text=TEXT)),
            common_pb2.Item(item_id="m0", project_id=image_project, content=common_pb2.Content(media=image)),
        ]
        assert (
            services.ingest().SubmitBatch(ingest_pb2.SubmitBatchRequest(items=items), timeout=30).accepted
            == 2
        )
        _tasks_queued(stub, text_project, 1)
        _tasks_queued(stub, image_project, 1)

        text_lease = _lease(stub, text_project).lease_id
        bad_spans = [
            ([common_pb2.Span(start=15, end=21, label="place")], "spans[0].end: is 21, past the end"),
            ([common_pb2.Span(start=4, end=4, label="person")], "spans[0].end: is 4, not after start 4"),
            ([SPANS[0], common_pb2.Span(start=-1, end=2, label="place")], "spans[1].start"),
            ([common_pb2.Span(start=0, end=3, label="animal")], "spans[0].label: 'animal' is not in"),
        ]
        for spans, expected in bad_spans:
            assert _refused(stub, text_lease, "person", spans=spans).startswith(expected)
        assert _refused(stub, text_lease, "person", boxes=[BOX]).startswith("boxes[0]: the item has no image")
        done = stub.SubmitAnnotation(
            human_tasks_pb2.SubmitAnnotationRequest(
                lease_id=text_lease, annotator_id="ann", labels=["person"], spans=SPANS
            ),
            timeout=10,
        )
        assert done.finalized

        image_lease = _lease(stub, image_project).lease_id
        for box, field in (
            (common_pb2.Box(x=0, y=0, w=-2, h=3, label="place"), "boxes[0].w"),
            (common_pb2.Box(x=0, y=0, w=2, h=0, label="place"), "boxes[0].h"),
            (common_pb2.Box(x=-1, y=0, w=2, h=2, label="place"), "boxes[0].x"),
            (common_pb2.Box(x=0, y=0, w=2, h=2, label="car"), "boxes[0].label"),
        ):
            assert _refused(stub, image_lease, "place", boxes=[box]).startswith(field + ": ")
        assert _refused(stub, image_lease, "place", spans=[SPANS[0]]).startswith(
            "spans[0]: the item has no text"
        )
        done = stub.SubmitAnnotation(
            human_tasks_pb2.SubmitAnnotationRequest(
                lease_id=image_lease, annotator_id="ann", labels=["place"], boxes=[BOX]
            ),
            timeout=10,
        )
        assert done.finalized

        def annotations(project_id: str) -> list:
            try:
                return list(replay(stack.bootstrap_servers, topic_prefix, ANNOTATIONS, project_id=project_id))
            except KafkaException:  # the topic's leader is still being elected
                return []

        wait_until(lambda: annotations(text_project) and annotations(image_project), 30, interval=0.3)
        # one raw record per project: the refused answers recorded nothing
        (text_answer,) = annotations(text_project)
        (image_answer,) = annotations(image_project)
        assert list(text_answer.spans) == SPANS and not text_answer.boxes
        assert list(image_answer.boxes) == [BOX] and not image_answer.spans

        wait_until(
            lambda: label_records(stack.bootstrap_servers, topic_prefix, image_project), 30, interval=0.3
        )
        text_labels = label_records(stack.bootstrap_servers, topic_prefix, text_project)
        image_labels = label_records(stack.bootstrap_servers, topic_prefix, image_project)
        assert list(text_labels) == ["t0"] and len(text_labels["t0"]) == 1
        assert list(image_labels) == ["m0"] and len(image_labels["m0"]) == 1
        assert list(text_labels["t0"][0].spans) == SPANS and list(text_labels["t0"][0].labels) == ["person"]
        assert list(image_labels["m0"][0].boxes) == [BOX]

        env = cli_env(services, LABELLOOP_TOPIC_PREFIX=topic_prefix)
        rows = {}
        for project_id in (text_project, image_project):
            out = tmp_path / f"{project_id}.jsonl"
            command = [
                sys.executable,
                "-m",
                "labelloop.cli.main",
                "export",
                "--project",
                project_id,
                "--out",
                str(out),
            ]
            run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stderr
            (line,) = out.read_text().splitlines()
            rows[project_id] = json.loads(line)
        assert json.loads(rows[text_project]["spans"]) == [
            {"start": 0, "end": 3, "label": "person"},
            {"start": 15, "end": 20, "label": "place"},
        ]
        assert json.loads(rows[text_project]["boxes"]) == []
        assert json.loads(rows[image_project]["boxes"]) == [
            {"x": 1.0, "y": 2.0, "w": 5.5, "h": 4.0, "label": "place"}
        ]
    finally:
        services.stop()
