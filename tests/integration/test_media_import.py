"""`labelloop import --list` on the real stack: a CSV list with good and bad rows imports the good
ones (counted as raw records on the `items` topic, with their metadata and never the label),
prints one line per bad row naming list, line and problem (rows refused by ingest included), and
exits with code 2."""

from __future__ import annotations

import subprocess
import sys
import uuid

import numpy as np
from confluent_kafka import KafkaException
from running import RunningServices
from support import wait_until

from labelloop.core.label_log import replay
from labelloop.core.media import MediaStore
from labelloop.core.topics import ITEMS
from labelloop.datasets.images import png_bytes
from labelloop.v1 import common_pb2


def test_import_of_a_list_keeps_the_good_rows_and_names_each_bad_one(
    stack, tmp_path, topic_prefix, redis_prefix
):
    media_root = (tmp_path / "media").as_uri()
    services = RunningServices(
        stack, tmp_path, topic_prefix, redis_prefix, extra_env={"LABELLOOP_MEDIA_ROOT": media_root}
    )
    try:
        services.start(["ingest"])
        project_id = f"list-{uuid.uuid4().hex[:8]}"
        services.create_project(project_id, ["dark", "light"], modality=common_pb2.MODALITY_IMAGE)
        shots = tmp_path / "shots"
        shots.mkdir()
        for n in range(4):
            (shots / f"s{n}.png").write_bytes(png_bytes(np.full((8, 8), 50 * n, dtype=np.uint8)))
        (shots / "readme.png").write_bytes(b"plain text")
        listing = tmp_path / "list.csv"
        listing.write_text(
            "path,item_id,label,camera\n"
            "shots/s0.png,a0,dark,nikon\n"  # 2
            "shots/s1.png,,light,canon\n"  # 3: id s1
            "shots/gone.png,a2,,\n"  # 4: no such file
            "shots/readme.png,a3,,\n"  # 5: no image
            "shots/s2.png,a0,,\n"  # 6: repeats a0
            f"{shots / 's3.png'},a5,,leica\n"  # 7: absolute
            '"shots/s2.png","bad\x01id",,\n'  # 8: ingest refuses the id
        )
        env = {
            **services.processes["ingest"].env,
            "LABELLOOP_INGEST_ADDR": f"127.0.0.1:{services.grpc_ports['ingest']}",
            "LABELLOOP_TOKEN": services.token,
            "COLUMNS": "1000",  # rich wraps lines at the terminal width
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
        assert run.returncode == 2, (run.stdout, run.stderr)
        assert "3 accepted, 0 duplicates, 4 rejected" in run.stdout
        assert "the 'label' column is ignored" in run.stdout
        bad = [line for line in run.stderr.splitlines() if line.startswith(f"{listing}:")]
        assert [line.split(": ", 1)[0] for line in bad] == [f"{listing}:{n}" for n in (4, 5, 6, 8)], (
            run.stderr
        )
        assert "no such file" in bad[0] and "not an accepted image" in bad[1]
        assert "duplicate item_id 'a0'" in bad[2] and "item.item_id" in bad[3]

        def produced() -> dict[str, common_pb2.Item]:
            try:
                return {
                    e.item.item_id: e.item
                    for e in replay(stack.bootstrap_servers, topic_prefix, ITEMS, project_id=project_id)
                }
            except KafkaException:  # the topic's leader is still being elected
                return {}

        wait_until(lambda: len(produced()) >= 3, 30, interval=0.5, message=lambda: str(sorted(produced())))
        records = list(replay(stack.bootstrap_servers, topic_prefix, ITEMS, project_id=project_id))
        assert sorted(e.item.item_id for e in records) == ["a0", "a5", "s1"]  # raw records, once each
        items = produced()
        assert dict(items["a0"].metadata) == {"camera": "nikon"} and dict(items["s1"].metadata) == {
            "camera": "canon"
        }
        assert dict(items["a5"].metadata) == {"camera": "leica"}
        store = MediaStore(media_root)
        for item in items.values():
            store.check(item.content.media)

        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 2 and "0 accepted, 3 duplicates, 4 rejected" in again.stdout
    finally:
        services.stop()
