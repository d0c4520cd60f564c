"""Contracts for the modalities that come next, on the real stack: projects of a modality without a
model path (audio, video) are refused at creation, by the admin API and by the CLI."""

from __future__ import annotations

import subprocess
import sys
import uuid

import grpc
import pytest
from running import RunningServices

from labelloop.v1 import admin_pb2, common_pb2


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

        env = {
            **services.processes["ingest"].env,
            "LABELLOOP_INGEST_ADDR": f"127.0.0.1:{services.grpc_ports['ingest']}",
            "LABELLOOP_TOKEN": services.token,
            "COLUMNS": "1000",  # rich wraps lines at the terminal width
        }

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
