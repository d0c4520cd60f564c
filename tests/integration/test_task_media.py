"""GetTaskMedia on the real stack: the annotator holding a live lease gets the task's image bytes
(as ingest accepted them); another project's annotator, another annotator of the same project, a
client, a released or unknown lease, and a file over human-tasks' cap are refused."""

from __future__ import annotations

import uuid

import grpc
import numpy as np
import pytest
from running import PIPELINE, RunningServices
from support import wait_until

from labelloop.core import access
from labelloop.core.media import MediaStore
from labelloop.datasets.images import png_bytes
from labelloop.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    human_tasks_pb2,
    human_tasks_pb2_grpc,
    ingest_pb2,
)

CAP = 400  # human-tasks' LABELLOOP_MAX_MEDIA_BYTES in this test


def test_task_media_goes_only_to_the_annotator_holding_the_lease(stack, tmp_path, topic_prefix, redis_prefix):
    media_root = (tmp_path / "media").as_uri()
    services = RunningServices(
        stack, tmp_path, topic_prefix, redis_prefix, extra_env={"LABELLOOP_MEDIA_ROOT": media_root}
    )
    services.processes["human_tasks"].env["LABELLOOP_MAX_MEDIA_BYTES"] = str(CAP)
    try:
        services.start(PIPELINE)
        mine, theirs = f"med-{uuid.uuid4().hex[:6]}", f"oth-{uuid.uuid4().hex[:6]}"
        for project_id in (mine, theirs):
            services.create_project(
                project_id,
                ["dark", "light"],
                modality=common_pb2.MODALITY_IMAGE,
                model_name=f"none-{project_id}",
            )
        tokens = auth_pb2_grpc.TokenServiceStub(services.channel("ingest"))

        def token(name: str, role: int, project_id: str) -> str:
            request = auth_pb2.CreateTokenRequest(name=name, role=role, project_ids=[project_id])
            return tokens.CreateToken(request, timeout=15).token

        def api(secret: str) -> human_tasks_pb2_grpc.HumanTaskServiceStub:
            return human_tasks_pb2_grpc.HumanTaskServiceStub(services.channel("human_tasks", secret))

        ann, colleague = api(token("ann", access.ANNOTATOR, mine)), api(token("cy", access.ANNOTATOR, mine))
        stranger, client = api(token("bo", access.ANNOTATOR, theirs)), api(token("app", access.CLIENT, mine))
        store = MediaStore(media_root)
        small = png_bytes(np.full((8, 8), 90, dtype=np.uint8))
        big = png_bytes(np.random.default_rng(1).integers(0, 255, (32, 32), dtype=np.uint8))
        assert len(small) < CAP < len(big)
        items = [
            common_pb2.Item(item_id=name, project_id=mine, content=common_pb2.Content(media=store.put(data)))
            for name, data in (("small", small), ("big", big))
        ]
        assert (
            services.ingest().SubmitBatch(ingest_pb2.SubmitBatchRequest(items=items), timeout=30).accepted
            == 2
        )
        stats = human_tasks_pb2.GetQueueStatsRequest(project_id=mine)
        wait_until(lambda: ann.GetQueueStats(stats, timeout=5).queued >= 2, 60, interval=0.2)

        def refused(stub, lease_id: str) -> grpc.StatusCode:
            with pytest.raises(grpc.RpcError) as info:
                stub.GetTaskMedia(human_tasks_pb2.GetTaskMediaRequest(lease_id=lease_id), timeout=10)
            return info.value.code()

        leases = {}
        for _ in range(2):
            leased = ann.LeaseTask(human_tasks_pb2.LeaseTaskRequest(project_id=mine), timeout=10)
            leases[leased.task.ingested.item.item_id] = leased.lease_id
        got = ann.GetTaskMedia(human_tasks_pb2.GetTaskMediaRequest(lease_id=leases["small"]), timeout=10)
        assert (
            got.data == small
            and got.content_type == "image/png"
            and got.sha256 == items[0].content.media.sha256
        )
        assert refused(stranger, leases["small"]) == grpc.StatusCode.PERMISSION_DENIED
        assert refused(client, leases["small"]) == grpc.StatusCode.PERMISSION_DENIED
        assert refused(colleague, leases["small"]) == grpc.StatusCode.FAILED_PRECONDITION
        assert refused(ann, leases["big"]) == grpc.StatusCode.FAILED_PRECONDITION  # over the cap
        assert refused(ann, "") == grpc.StatusCode.INVALID_ARGUMENT
        assert refused(ann, uuid.uuid4().hex) == grpc.StatusCode.FAILED_PRECONDITION  # no such lease
        ann.ReleaseTask(human_tasks_pb2.ReleaseTaskRequest(lease_id=leases["small"]), timeout=10)
        assert refused(ann, leases["small"]) == grpc.StatusCode.FAILED_PRECONDITION  # no longer held
    finally:
        services.stop()
