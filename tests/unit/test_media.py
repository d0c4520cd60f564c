"""The media store: what ingest accepts as an image reference, and what it refuses, naming the field."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from labelloop.core.errors import InvalidArgument, NotFound
from labelloop.core.media import MediaStore, sniff_content_type
from labelloop.datasets.images import png_bytes
from labelloop.v1 import common_pb2


@pytest.fixture
def store(tmp_path):
    return MediaStore((tmp_path / "media").as_uri(), max_bytes=4096)


@pytest.fixture
def image():
    return png_bytes(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28))


def refused(store: MediaStore, ref: common_pb2.MediaRef) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        store.check(ref)
    return caught.value


def test_put_is_content_addressed_and_its_reference_checks(store, image):
    ref = store.put(image)
    assert ref.content_type == "image/png"
    assert ref.size_bytes == len(image)
    assert ref.sha256 == hashlib.sha256(image).hexdigest()
    assert ref.uri.startswith(store.root_uri + "/sha256/")
    assert store.put(image) == ref  # the same bytes: the same file, written once
    store.check(ref)
    handle, size = store.open(ref.uri)
    with handle:
        assert handle.read() == image and size == len(image)


def test_a_plain_path_root_is_the_same_as_its_file_uri(tmp_path, image):
    ref = MediaStore(str(tmp_path / "media")).put(image)
    MediaStore((tmp_path / "media").as_uri()).check(ref)


def test_a_digest_mismatch_is_refused_naming_sha256(store, image):
    ref = store.put(image)
    ref.sha256 = hashlib.sha256(b"something else").hexdigest()
    assert refused(store, ref).field == "item.content.media.sha256"


def test_a_missing_or_malformed_digest_is_refused(store, image):
    ref = store.put(image)
    for bad in ("", "abc", "Z" * 64):
        ref.sha256 = bad
        assert refused(store, ref).field == "item.content.media.sha256"


def test_a_wrong_or_unknown_content_type_is_refused(store, image, tmp_path):
    ref = store.put(image)
    ref.content_type = "image/jpeg"  # declared JPEG, the bytes are PNG
    error = refused(store, ref)
    assert error.field == "item.content.media.content_type" and "image/png" in str(error)
    ref.content_type = "text/plain"
    assert refused(store, ref).field == "item.content.media.content_type"
    # A file that is no image at all, declared as PNG.
    text = b"not an image, just text"
    path = tmp_path / "media" / "notes.png"
    path.write_bytes(text)
    fake = common_pb2.MediaRef(
        uri=path.as_uri(), content_type="image/png", sha256=hashlib.sha256(text).hexdigest()
    )
    assert "not an accepted image type" in str(refused(store, fake))


def test_a_file_over_the_limit_is_refused(store, tmp_path):
    big = png_bytes(np.random.default_rng(0).integers(0, 255, (96, 96), dtype=np.uint8))
    assert len(big) > store.max_bytes
    path = tmp_path / "media" / "big.png"
    path.write_bytes(big)
    ref = common_pb2.MediaRef(
        uri=path.as_uri(), content_type="image/png", sha256=hashlib.sha256(big).hexdigest()
    )
    error = refused(store, ref)
    assert error.field == "item.content.media.uri" and "over the limit" in str(error)
    with pytest.raises(InvalidArgument):
        store.put(big)


def test_a_wrong_declared_size_is_refused(store, image):
    ref = store.put(image)
    ref.size_bytes = len(image) + 1
    assert refused(store, ref).field == "item.content.media.size_bytes"


def test_uris_outside_the_root_are_refused(store, image, tmp_path):
    ref = store.put(image)
    outside = tmp_path / "outside.png"
    outside.write_bytes(image)
    link = tmp_path / "media" / "link.png"
    link.symlink_to(outside)
    for uri in (
        outside.as_uri(),
        store.root_uri + "/../outside.png",
        link.as_uri(),  # a symbolic link out of the root
        "s3://bucket/x.png",
        "/etc/passwd",
        "",
    ):
        escaped = common_pb2.MediaRef(uri=uri, content_type="image/png", sha256=ref.sha256)
        assert refused(store, escaped).field == "item.content.media.uri", uri


def test_a_missing_file_is_refused_by_check_and_not_found_by_open(store, image):
    ref = store.put(image)
    ref.uri = store.root_uri + "/sha256/00/missing.png"
    assert "no media file" in str(refused(store, ref))
    with pytest.raises(NotFound):
        store.open(ref.uri)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"GIF89a", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"BM\x00\x00", "image/bmp"),
        (b"%PDF-1.7", None),
    ],
)
def test_sniff_content_type(head, expected):
    assert sniff_content_type(head) == expected
