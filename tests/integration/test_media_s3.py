"""An s3:// media root, end to end on the real stack with moto's S3 server (a plain process on a
free port): `labelloop import --list` copies images into the bucket, ingest reads them there to
check type and digest (a wrong digest is refused naming the field), the accepted items reach the
`items` topic (raw records counted), and a media read through the same root returns the bytes
(the media store, and the image family's reader that Triton runs)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import s3fs  # a dev dependency (pyproject.toml), like moto[s3]
from confluent_kafka import KafkaException
from running import RunningServices
from support import free_port, wait_until

from labelloop.core.image_features import read_pixels
from labelloop.core.label_log import replay
from labelloop.core.media import MediaStore
from labelloop.core.topics import ITEMS
from labelloop.datasets.images import png_bytes
from labelloop.stack.process import ManagedProcess
from labelloop.v1 import common_pb2, ingest_pb2

MOTO_SERVER = Path(sys.executable).parent / "moto_server"


@pytest.fixture
def s3_env(tmp_path, monkeypatch) -> Iterator[dict[str, str]]:
    """moto's S3 server on a free port, and the AWS variables that point s3fs (botocore) at it."""
    if not MOTO_SERVER.exists():
        pytest.fail(f"{MOTO_SERVER} not found: run `make setup` (moto[s3] is a dev dependency)")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2) as response:
            return response.status == 200

    server = ManagedProcess(
        "moto-s3",
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        {"PATH": "/usr/bin:/bin"},
        tmp_path / "moto" / "moto.log",
        ready,
        ports=[port],
        start_timeout_s=60,
        stop_timeout_s=10,
    )
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    server.start()
    try:
        yield env
    finally:
        server.stop()


def test_an_s3_media_root_serves_import_ingest_and_reads(stack, tmp_path, topic_prefix, redis_prefix, s3_env):
    bucket = f"media-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem().mkdir(bucket)
    root = f"s3://{bucket}/labelloop"
    services = RunningServices(
        stack, tmp_path, topic_prefix, redis_prefix, extra_env={**s3_env, "LABELLOOP_MEDIA_ROOT": root}
    )
    try:
        services.start(["ingest"])
        project_id = f"s3-{uuid.uuid4().hex[:8]}"
        services.create_project(project_id, ["dark", "light"], modality=common_pb2.MODALITY_IMAGE)
        images = {f"s{n}": png_bytes(np.full((8, 8), 60 * n, dtype=np.uint8)) for n in range(3)}
        (tmp_path / "shots").mkdir()
        for name, data in images.items():
            (tmp_path / "shots" / f"{name}.png").write_bytes(data)
        listing = tmp_path / "list.jsonl"
        listing.write_text("".join(f'{{"path": "shots/{name}.png"}}\n' for name in images))
        env = {
            **services.processes["ingest"].env,
            "LABELLOOP_INGEST_ADDR": f"127.0.0.1:{services.grpc_ports['ingest']}",
            "LABELLOOP_TOKEN": services.token,
            "COLUMNS": "1000",
        }
        command = [
            sys.executable,
            "-m",
            "labelloop.cli.main",
            "import",
            "--list",
            str(listing),
            "--project",
            project_id,
        ]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, (run.stdout, run.stderr)
        assert "3 accepted, 0 duplicates, 0 rejected" in run.stdout

        def produced() -> dict[str, common_pb2.MediaRef]:
            try:
                records = replay(stack.bootstrap_servers, topic_prefix, ITEMS, project_id=project_id)
                return {e.item.item_id: e.item.content.media for e in records}
            except KafkaException:  # the topic's leader is still being elected
                return {}

        wait_until(lambda: len(produced()) >= 3, 30, interval=0.5, message=lambda: str(sorted(produced())))
        records = list(replay(stack.bootstrap_servers, topic_prefix, ITEMS, project_id=project_id))
        assert sorted(e.item.item_id for e in records) == sorted(images)  # one raw record each
        store = MediaStore(root)
        for item_id, ref in produced().items():
            assert ref.uri.startswith(f"{root}/sha256/")
            handle, size = store.open(ref.uri)
            with handle:
                assert handle.read() == images[item_id] and size == len(images[item_id])
            pixels = read_pixels(ref.uri, root, side=8)  # what the image family reads inside Triton
            assert np.allclose(pixels, np.frombuffer(bytes([60 * int(item_id[1:])]) * 64, np.uint8) / 255.0)

        # ingest really reads the object: a reference whose digest differs is refused
        wrong = common_pb2.MediaRef()
        wrong.CopyFrom(produced()["s0"])
        wrong.sha256 = hashlib.sha256(b"other bytes").hexdigest()
        item = common_pb2.Item(
            item_id="wrong", project_id=project_id, content=common_pb2.Content(media=wrong)
        )
        response = services.ingest().SubmitBatch(ingest_pb2.SubmitBatchRequest(items=[item]), timeout=30)
        assert response.rejected == 1 and response.results[0].error_field == "item.content.media.sha256"
    finally:
        services.stop()
