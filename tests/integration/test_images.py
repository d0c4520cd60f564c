"""Images on the real stack: ingest checks media references (each bad one refused with the field
named, nothing else lost), and Fashion-MNIST images go through the whole loop (ingest, inference,
routing, human tasks with a scripted annotator, retraining of the image families, Triton serving
it from the media root) until the model auto-labels some of them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import KafkaException
from running import PIPELINE, RunningServices
from support import one_label_per_item, wait_until

from labelloop.bench.annotator_client import AnnotatorClient
from labelloop.bench.throughput import _triton_rate
from labelloop.core import model_repository
from labelloop.core.label_log import replay
from labelloop.core.media import MediaStore
from labelloop.core.progress import Progress
from labelloop.core.topics import ITEMS
from labelloop.datasets import content_of
from labelloop.datasets.images import FASHION_MNIST_CLASSES, fashion_mnist_dir, load_fashion_mnist, png_bytes
from labelloop.retraining.registry import Registry
from labelloop.v1 import common_pb2, ingest_pb2, models_pb2, models_pb2_grpc

pytestmark = pytest.mark.skipif(
    not (fashion_mnist_dir() / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed: run `make setup`",
)

STREAM = 600
CHUNK = 50
MAX_MEDIA_BYTES = 4096


@pytest.fixture
def media_root(tmp_path) -> str:
    return (tmp_path / "media").as_uri()


def _env(media_root: str) -> dict[str, str]:
    return {
        "LABELLOOP_MEDIA_ROOT": media_root,
        "LABELLOOP_MAX_MEDIA_BYTES": str(MAX_MEDIA_BYTES),
        "LABELLOOP_FAMILIES": "tfidf-lr,image-lr,image-svm",
        "LABELLOOP_FIRST_MODEL_LABELS": "100",
        "LABELLOOP_RETRAIN_EVERY_LABELS": "100",
        "LABELLOOP_FAILURE_BACKOFF_SECONDS": "1",
    }


def test_ingest_refuses_bad_media_references_naming_the_field_and_keeps_the_good_ones(
    stack, tmp_path, topic_prefix, redis_prefix, media_root
):
    services = RunningServices(stack, tmp_path, topic_prefix, redis_prefix, extra_env=_env(media_root))
    try:
        services.start(["ingest"])
        project_id = f"img-{uuid.uuid4().hex[:8]}"
        services.create_project(project_id, ["dark", "light"], modality=common_pb2.MODALITY_IMAGE)
        store = MediaStore(media_root)
        good = [store.put(png_bytes(np.full((8, 8), v, dtype=np.uint8))) for v in (10, 240)]
        root = Path(store.root_path)
        text = b"just text"
        (root / "notes.png").write_bytes(text)
        big = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
        assert len(big) > MAX_MEDIA_BYTES
        (root / "big.png").write_bytes(big)
        outside = tmp_path / "outside.png"
        outside.write_bytes(png_bytes(np.zeros((8, 8), dtype=np.uint8)))

        def ref(path: Path, data: bytes, content_type: str = "image/png") -> common_pb2.MediaRef:
            return common_pb2.MediaRef(
                uri=path.as_uri(), content_type=content_type, sha256=hashlib.sha256(data).hexdigest()
            )

        wrong_digest = common_pb2.MediaRef()
        wrong_digest.CopyFrom(good[0])
        wrong_digest.sha256 = hashlib.sha256(b"other").hexdigest()
        wrong_type = common_pb2.MediaRef()
        wrong_type.CopyFrom(good[1])
        wrong_type.content_type = "image/jpeg"
        cases = [
            ("good-0", good[0], None),
            ("not-an-image", ref(root / "notes.png", text), "item.content.media.content_type"),
            ("good-1", good[1], None),
            ("too-large", ref(root / "big.png", big), "item.content.media.uri"),
            ("digest-mismatch", wrong_digest, "item.content.media.sha256"),
            ("declared-jpeg", wrong_type, "item.content.media.content_type"),
            ("outside-root", ref(outside, outside.read_bytes()), "item.content.media.uri"),
            ("missing-file", ref(root / "gone.png", b""), "item.content.media.uri"),
        ]
        items = [
            common_pb2.Item(item_id=i, project_id=project_id, content=common_pb2.Content(media=m))
            for i, m, _ in cases
        ]
        items.append(
            common_pb2.Item(
                item_id="text-in-image-project", project_id=project_id, content=common_pb2.Content(text="x")
            )
        )
        response = services.ingest().SubmitBatch(ingest_pb2.SubmitBatchRequest(items=items), timeout=30)
        fields = {r.item_id: r.error_field for r in response.results}
        for item_id, _, field in cases:
            assert fields[item_id] == (field or ""), item_id
        assert fields["text-in-image-project"] == "item.content"
        rejected = {r.item_id: r.error_message for r in response.results if r.error_field}
        assert "over the limit" in rejected["too-large"]
        assert "SHA-256" in rejected["digest-mismatch"]
        assert response.accepted == 2 and response.rejected == len(items) - 2

        def produced() -> list[str]:
            try:
                records = replay(stack.bootstrap_servers, topic_prefix, ITEMS, project_id=project_id)
                return sorted(e.item.item_id for e in records)
            except KafkaException:  # the topic's leader is still being elected
                return []

        wait_until(lambda: produced() == ["good-0", "good-1"], 30, interval=0.5, message=produced)
        media = {
            e.item.item_id: e.item.content.media
            for e in replay(stack.bootstrap_servers, topic_prefix, ITEMS, project_id=project_id)
        }
        assert media["good-0"].sha256 == good[0].sha256 and media["good-0"].uri == good[0].uri
    finally:
        services.stop()


def test_fashion_mnist_images_go_through_the_loop_until_the_image_model_auto_labels(
    stack, tmp_path, topic_prefix, redis_prefix, media_root, monkeypatch
):
    monkeypatch.setenv("LABELLOOP_MEDIA_ROOT", media_root)
    records = load_fashion_mnist(limit=STREAM, store=MediaStore(media_root))
    truth = {r["id"]: r["label"] for r in records}
    services = RunningServices(stack, tmp_path, topic_prefix, redis_prefix, extra_env=_env(media_root))
    stop = threading.Event()
    try:
        services.start([*PIPELINE, "retraining"])
        project_id = f"fmnist-{uuid.uuid4().hex[:8]}"
        project = services.create_project(
            project_id,
            list(FASHION_MNIST_CLASSES),
            modality=common_pb2.MODALITY_IMAGE,
            target_precision=0.8,
            audit_rate=0.1,
        )
        annotator = AnnotatorClient(
            f"127.0.0.1:{services.grpc_ports['human_tasks']}",
            project_id,
            "scripted",
            lambda task: truth[task.ingested.item.item_id],
            stop,
            token=services.token,
        )
        annotator.start()
        progress = Progress(services.redis, redis_prefix)
        models = models_pb2_grpc.ModelServiceStub(services.channel("retraining"))
        listing = models_pb2.ListModelsRequest(project_id=project_id)
        ingest = services.ingest()
        for start in range(0, STREAM, CHUNK):
            chunk = records[start : start + CHUNK]
            items = [
                common_pb2.Item(item_id=r["id"], project_id=project_id, content=content_of(r)) for r in chunk
            ]
            assert ingest.SubmitBatch(ingest_pb2.SubmitBatchRequest(items=items), timeout=30).rejected == 0
            done = start + len(chunk)
            wait_until(
                lambda done=done: (c := progress.counts(project_id)).auto_labeled + c.human_labeled >= done,
                120,
                interval=0.2,
                message=lambda done=done: (
                    f"chunk ending at {done} not labeled: {progress.counts(project_id)}"
                ),
            )
            wait_until(lambda: not models.ListModels(listing, timeout=10).training, 120, interval=0.2)
        stop.set()
        annotator.join(10)

        served = model_repository.served_versions(stack.triton_grpc_url, project.spec.model_name)
        assert served, "no image model is served"
        version_dir = Path(stack.model_repository) / project.spec.model_name / str(served[-1])
        meta = json.loads((version_dir / "labels.json").read_text())
        assert meta["family"] in ("image-lr", "image-svm") and meta["metadata"]["media_root"] == media_root
        skips = _assert_families_followed_the_schedule(Registry(stack.mlflow_uri, topic_prefix), project_id)
        print(f"family schedule: {skips} fits skipped")

        # every image exactly once, in the raw topic (the counts above run ahead of the commit)
        labels = wait_until(
            lambda: (
                (got := one_label_per_item(stack.bootstrap_servers, topic_prefix, project_id)).keys()
                >= set(truth)
                and got
            ),
            60,
            interval=0.5,
            message="not every image has a committed final label",
        )
        assert set(labels) == set(truth)
        auto = [i for i, label in labels.items() if label.source == common_pb2.LABEL_SOURCE_MODEL]
        assert auto, "the image model auto-labeled nothing"
        precision = sum(labels[i].labels[0] == truth[i] for i in auto) / len(auto)
        print(
            f"image loop: {len(auto)} of {STREAM} auto-labeled, precision {precision:.3f}, served v{served[-1]}"
        )
        assert precision >= 0.7, (precision, len(auto))

        # What Triton serves: every image's URI straight to the served image model, 32 per
        # request, 8 requests in flight (the bench's text measurement, services/bench/throughput.py).
        rate = _triton_rate(
            stack.triton_grpc_url, project.spec.model_name, [r["media"]["uri"] for r in records] * 3
        )
        print(f"{meta['family']} served by Triton: {rate:.0f} images/s")
        assert rate > 50
    finally:
        stop.set()
        services.stop()


def test_labelloop_import_of_an_image_folder_and_of_a_folder_with_a_bad_file(
    stack, tmp_path, topic_prefix, redis_prefix, media_root
):
    """`labelloop import FOLDER` copies the images into the media store and ingest accepts every
    reference; a folder holding a file that is no image fails with exit code 2 and a line naming
    the file, and submits nothing."""
    services = RunningServices(stack, tmp_path, topic_prefix, redis_prefix, extra_env=_env(media_root))
    try:
        services.start(["ingest"])
        project_id = f"folder-{uuid.uuid4().hex[:8]}"
        services.create_project(project_id, ["dark", "light"], modality=common_pb2.MODALITY_IMAGE)
        folder = tmp_path / "photos"
        for label, base in (("dark", 20), ("light", 220)):
            (folder / label).mkdir(parents=True)
            for n in range(3):
                (folder / label / f"{label[0]}{n}.png").write_bytes(
                    png_bytes(np.full((8, 8), base + n, dtype=np.uint8))
                )
        env = {
            **services.processes["ingest"].env,
            "LABELLOOP_INGEST_ADDR": f"127.0.0.1:{services.grpc_ports['ingest']}",
            "LABELLOOP_TOKEN": services.token,
            "COLUMNS": "1000",  # rich wraps lines at the terminal width
        }

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "labelloop.cli.main", *args]
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

        run = cli("import", str(folder), "--project", project_id)
        assert run.returncode == 0, run.stderr
        assert "6 accepted, 0 duplicates, 0 rejected" in run.stdout

        (folder / "light" / "broken.png").write_bytes(b"not an image")
        bad = cli("import", str(folder), "--project", project_id)
        assert bad.returncode == 2 and "broken.png" in bad.stderr and "not an accepted image" in bad.stderr

        def produced() -> dict[str, common_pb2.MediaRef]:
            try:
                records = replay(stack.bootstrap_servers, topic_prefix, ITEMS, project_id=project_id)
                return {e.item.item_id: e.item.content.media for e in records}
            except KafkaException:
                return {}

        wait_until(lambda: len(produced()) == 6, 30, interval=0.5, message=lambda: str(sorted(produced())))
        media = produced()
        assert sorted(media) == ["d0", "d1", "d2", "l0", "l1", "l2"]
        store = MediaStore(media_root)
        for ref in media.values():
            store.check(ref)  # the copy in the media store is the file the reference names
    finally:
        services.stop()


def _assert_families_followed_the_schedule(registry: Registry, project_id: str) -> int:
    """Every training run (MLflow, in order) fitted or skipped each image family, never the text
    one, and skipped a family only after it lost clearly at its last fit (family_schedule.py:
    coverage below the winner's) and before the labels had grown 8-fold (the default's longest
    wait), and refitted both after a training where neither admitted anything. Returns the
    number of fits skipped."""
    runs = registry.client.search_runs(
        [registry.experiment_id(project_id)], order_by=["attributes.start_time ASC"]
    )
    trainings = [r for r in runs if "families_tried" in r.data.params]
    assert trainings, "no training run in MLflow"
    last_fit: dict[str, tuple[int, float, float]] = {}  # family -> (labels, coverage, winner's)
    previous_best, skips = 0.0, 0
    for run in trainings:
        params, run_metrics = run.data.params, run.data.metrics
        tried = params["families_tried"].split(",")
        skipped = [f for f in params["families_skipped"].split(",") if f]
        labels = int(params["human_labels"])
        assert sorted(tried + skipped) == ["image-lr", "image-svm"], params
        assert previous_best > 0 or not skipped, params
        for family in skipped:
            assert family in last_fit, f"{family} skipped before it was ever fitted"
            fitted_on, coverage, best = last_fit[family]
            assert coverage < best and labels < 8 * fitted_on, (family, last_fit[family], labels)
        best = previous_best = max(run_metrics[f"{f}.calibrated_coverage"] for f in tried)
        for family in tried:
            last_fit[family] = (labels, run_metrics[f"{family}.calibrated_coverage"], best)
        skips += len(skipped)
    return skips
