"""The image families "image-lr" and "image-svm": trained on Fashion-MNIST pixels read by URI from the media store,
written as a model-repository version, and served by the runtime copy the version carries."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from labelloop.core.media import MediaStore
from labelloop.datasets.images import fashion_mnist_dir, load_fashion_mnist
from labelloop.retraining.families import available_families, families_for
from labelloop.retraining.images import ImageFamily, ImageSvmFamily
from labelloop.v1 import common_pb2

installed = pytest.mark.skipif(
    not (fashion_mnist_dir() / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed: run `make setup`",
)


def test_families_are_matched_to_the_project_modality(tmp_path):
    families = available_families(tmp_path.as_uri())
    text = [f.name for f in families_for(families, common_pb2.MODALITY_TEXT)]
    image = [f.name for f in families_for(families, common_pb2.MODALITY_IMAGE)]
    assert "tfidf-lr" in text and "image-lr" not in text and "image-svm" not in text
    assert image == ["image-lr", "image-svm"]


@installed
@pytest.mark.parametrize("family", [ImageFamily, ImageSvmFamily])
def test_an_image_family_learns_fashion_mnist_and_its_version_serves_the_same_probabilities(tmp_path, family):
    root = (tmp_path / "media").as_uri()
    records = load_fashion_mnist(limit=1_400, store=MediaStore(root))
    train, test = records[:1_000], records[1_000:]
    labels = sorted({r["label"] for r in records})
    model = family(root).fit([r["media"]["uri"] for r in train], [r["label"] for r in train], labels)
    uris = [r["media"]["uri"] for r in test]
    probs = model.predict_proba(uris)
    assert probs.shape == (len(test), len(labels))
    accuracy = np.mean([labels[i] == r["label"] for i, r in zip(probs.argmax(axis=1), test, strict=True)])
    assert accuracy > 0.70, accuracy

    version_dir = model.write_version(tmp_path / "repo", "fm", 1)
    meta = json.loads((version_dir / "labels.json").read_text())
    assert meta["family"] == family(root).name and meta["metadata"]["media_root"] == root
    spec = importlib.util.spec_from_file_location("served_image_features", version_dir / "image_features.py")
    assert spec is not None and spec.loader is not None
    runtime = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtime)
    served = runtime.ImageClassifier(Path(version_dir), meta)
    np.testing.assert_allclose(served.predict_proba(uris[:50]), probs[:50], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not under the media root"):
        served.predict_proba([(tmp_path / "elsewhere.png").as_uri()])


def _coverage_at(probs: np.ndarray, truth: list[int], precision: float) -> float:
    """The largest share of items, most confident first, whose labels are ``precision`` right."""
    order = np.argsort(-probs.max(axis=1))
    right = probs.argmax(axis=1)[order] == np.asarray(truth)[order]
    running = np.cumsum(right) / np.arange(1, len(right) + 1)
    ok = np.flatnonzero(running >= precision)
    return float((ok.max() + 1) / len(right)) if len(ok) else 0.0


@installed
def test_the_svm_family_ranks_what_it_is_sure_of_better_from_few_labels(tmp_path):
    """Why image-svm exists: from 200 labels its confidence admits a real share of later items at
    95% precision, where logistic regression's admits almost nothing."""
    root = (tmp_path / "media").as_uri()
    records = load_fashion_mnist(limit=1_200, store=MediaStore(root))
    train, test = records[:200], records[200:]
    labels = sorted({r["label"] for r in records})
    truth = [labels.index(r["label"]) for r in test]
    coverage = {}
    for family in (ImageFamily(root), ImageSvmFamily(root)):
        model = family.fit([r["media"]["uri"] for r in train], [r["label"] for r in train], labels)
        coverage[family.name] = _coverage_at(
            model.predict_proba([r["media"]["uri"] for r in test]), truth, 0.95
        )
    assert coverage["image-svm"] > 0.3 and coverage["image-svm"] > coverage["image-lr"] + 0.15, coverage


@installed
def test_the_reference_policy_runs_on_images_with_the_image_features(tmp_path):
    from labelloop.bench.reference import image_model, run_reference

    root = (tmp_path / "media").as_uri()
    records = load_fashion_mnist(limit=400, store=MediaStore(root))
    report = run_reference(
        [r["media"]["uri"] for r in records],
        [r["label"] for r in records],
        target_precision=0.8,
        new_model=image_model(root),
    ).as_report()
    assert report["items"] == 400 and report["human_labeled"] + report["auto_labeled"] == 400
    assert report["retrains"] >= 1 and report["auto_labeled"] > 0

    # The bench's path: seeds in workers, cached under a key that names the media root.
    from labelloop.bench.reference import run_reference_seeds

    uris, labels = [r["media"]["uri"] for r in records], [r["label"] for r in records]
    first = run_reference_seeds(uris, labels, 0.8, seeds=[0], cache_dir=tmp_path / "cache", media_root=root)
    assert first.runs[0]["human_labeled"] == report["human_labeled"]
    again = run_reference_seeds(uris, labels, 0.8, seeds=[0], cache_dir=tmp_path / "cache", media_root=root)
    assert again.runs[0]["cached"] is True


def test_hog_votes_for_the_gradient_orientation_and_is_normalised():
    from labelloop.core.image_features import hog

    vertical_edge = np.zeros((1, 28, 28), dtype=np.float32)
    vertical_edge[:, :, 14:] = 1.0  # the gradient points along x: orientation 0 degrees
    horizontal_edge = vertical_edge.transpose(0, 2, 1)  # along y: 90 degrees
    v, h = hog(vertical_edge), hog(horizontal_edge)
    assert v.shape == h.shape == (1, 6 * 6 * 4 * 9)
    v_bins = v.reshape(-1, 9).sum(axis=0)
    h_bins = h.reshape(-1, 9).sum(axis=0)
    assert v_bins.argmax() == 0 and h_bins.argmax() == 4
    assert np.all(v <= 1.0) and np.all(v >= 0.0)
    assert not np.any(hog(np.zeros((1, 28, 28), dtype=np.float32))), "a flat image has no gradient"


def test_a_content_addressed_image_is_decoded_once_and_any_other_is_read_again(tmp_path):
    """A training reads each labeled image about 8 times: the media store's content-addressed
    files (their path names their bytes) are decoded once per process; a file referenced by any
    other path may change, so it is read each time."""
    from PIL import Image

    from labelloop.core import image_features
    from labelloop.datasets.images import png_bytes

    store = MediaStore(tmp_path.as_uri())
    root = store.root_uri
    dark, light = np.full((28, 28), 10, dtype=np.uint8), np.full((28, 28), 200, dtype=np.uint8)
    stored = store.put(png_bytes(dark)).uri
    assert "/sha256/" in stored
    before = image_features.read_pixels(stored, root)
    assert before.dtype == np.float32 and before.shape == (784,)
    assert before == pytest.approx(np.full(784, 10 / 255.0))
    Path(store.resolve(stored)).unlink()  # gone from disk: the decoded pixels were kept
    assert np.array_equal(image_features.read_pixels(stored, root), before)

    referenced = tmp_path / "upload" / "shoe.png"
    referenced.parent.mkdir()
    Image.fromarray(dark).save(referenced)
    assert image_features.read_pixels(referenced.as_uri(), root) == pytest.approx(np.full(784, 10 / 255.0))
    Image.fromarray(light).save(referenced)  # the same path, other bytes: read again
    assert image_features.read_pixels(referenced.as_uri(), root) == pytest.approx(np.full(784, 200 / 255.0))
    # A file under a digest-like path that is not the store's layout is not trusted either.
    fake = tmp_path / "sha256" / "ab" / ("cd" + "0" * 62 + ".png")
    fake.parent.mkdir(parents=True)
    Image.fromarray(dark).save(fake)
    image_features.read_pixels(fake.as_uri(), root)
    Image.fromarray(light).save(fake)
    assert image_features.read_pixels(fake.as_uri(), root) == pytest.approx(np.full(784, 200 / 255.0))
