"""The media store: where image (later audio, video) payloads live, referenced from items by URI.

Items never carry media bytes through Kafka; they carry a ``labelloop.v1.MediaRef`` (URI, content
type, size, SHA-256). The store is one root URI read and written through fsspec: ``file:///path``
(or a plain path) on one machine or a shared volume, ``s3://bucket/prefix``-style URIs for object
storage when the matching fsspec backend (e.g. s3fs) is installed. Who uses it:

- ``labelloop import`` copies files in with :meth:`MediaStore.put` (content-addressed, so
  importing the same file twice stores it once);
- ingest checks every submitted reference with :meth:`MediaStore.check` (under the root, readable,
  an allowed type whose bytes match it, not too large, the declared size and digest);
- the annotator web app streams a file to a person with :meth:`MediaStore.open`, after its own
  project-access check.

Every refusal is an :class:`InvalidArgument` naming the ``MediaRef`` field at fault
(``item.content.media.uri`` / ``.content_type`` / ``.size_bytes`` / ``.sha256``).
"""

from __future__ import annotations

import hashlib
import posixpath
from pathlib import Path
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from labelloop.core.errors import InvalidArgument, NotFound
from labelloop.v1 import common_pb2

__all__ = [
    "CONTENT_TYPES",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MEDIA_ROOT",
    "FIELD",
    "MediaStore",
    "model_input",
    "sniff_content_type",
]

#: The local default root: ``<repo>/.cache/media`` (services/core/ → two levels up).
DEFAULT_MEDIA_ROOT = (Path(__file__).resolve().parents[2] / ".cache" / "media").as_uri()

#: The prefix of every field name in the errors (the MediaRef inside an Item).
FIELD = "item.content.media"

#: The media types accepted, with the leading bytes ("magic numbers") that identify each.
CONTENT_TYPES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),  # and b"WEBP" at offset 8, checked below
    "image/bmp": (b"BM",),
}
_SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
}
_CHUNK = 1 << 20
#: The default largest file :meth:`MediaStore.check` and :meth:`MediaStore.put` accept.
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


def sniff_content_type(head: bytes) -> str | None:
    """The media type the first bytes of a file show (from :data:`CONTENT_TYPES`), else None."""
    for content_type, magics in CONTENT_TYPES.items():
        if any(head.startswith(m) for m in magics):
            if content_type == "image/webp" and head[8:12] != b"WEBP":
                continue
            return content_type
    return None


class MediaStore:
    """One media root (a URI or a local path) and the operations on the files under it.

    Thread-safe for reads; :meth:`put` writes to a temporary name and renames on local roots.
    """

    def __init__(self, root: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        if not root:
            raise InvalidArgument("media_root", "is empty")
        self.fs, path = fsspec.core.url_to_fs(root)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root_path = self._normal(path)
        self.protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        if self.local:
            Path(self.root_path).mkdir(parents=True, exist_ok=True)

    @property
    def root_uri(self) -> str:
        """The root as a URI (``file:///...`` for a local root)."""
        return self.uri_of(self.root_path)

    def _normal(self, path: str) -> str:
        if self.local:
            return str(Path(path).resolve())
        return posixpath.normpath(path).rstrip("/")

    def uri_of(self, path: str) -> str:
        """The URI of a path of this store's file system."""
        if self.local:
            return Path(path).as_uri()
        return f"{self.protocol}://{path}"

    def resolve(self, uri: str) -> str:
        """The file-system path of ``uri``, which must lie under the root.

        Raises InvalidArgument (``item.content.media.uri``) for an empty URI, another scheme, or a
        path outside the root (``..`` segments and, on local roots, symbolic links are resolved
        first, so neither can escape it).
        """
        field = f"{FIELD}.uri"
        if not uri:
            raise InvalidArgument(field, "is empty")
        scheme = uri.split("://", 1)[0] if "://" in uri else ""
        expected = "file" if self.local else self.protocol
        if scheme != expected:
            raise InvalidArgument(
                field, f"{uri!r} is not a {expected}:// URI under the media root {self.root_uri}"
            )
        path = self._normal(self.fs._strip_protocol(uri))
        if not path.startswith(self.root_path + "/"):
            raise InvalidArgument(field, f"{uri!r} is not under the media root {self.root_uri}")
        return path

    def open(self, uri: str) -> tuple[IO[bytes], int]:
        """Open the file of ``uri`` for reading: (binary file, size in bytes). The caller closes it.

        Raises InvalidArgument when the URI is not under the root, NotFound when no file is there.
        """
        path = self.resolve(uri)
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            raise NotFound(f"no media file at {uri!r}") from None
        if info.get("type") != "file":
            raise NotFound(f"no media file at {uri!r}")
        return self.fs.open(path, "rb"), int(info["size"])

    def check(self, ref: common_pb2.MediaRef) -> None:
        """Check a submitted reference against the file it names; raise InvalidArgument if it fails.

        Checks, in order: the URI is under the root and names a readable file; the file is at most
        ``max_bytes``; ``size_bytes``, when set (non-zero), equals the file's size; ``content_type``
        is one of :data:`CONTENT_TYPES` and the file's leading bytes show that type; ``sha256`` is
        set (64 hex digits) and equals the digest of the file's bytes. Reads the file once.
        """
        try:
            handle, size = self.open(ref.uri)
        except NotFound as exc:
            raise InvalidArgument(f"{FIELD}.uri", str(exc)) from None
        with handle:
            if size > self.max_bytes:
                raise InvalidArgument(
                    f"{FIELD}.uri", f"the file is {size} bytes, over the limit of {self.max_bytes}"
                )
            if ref.size_bytes and ref.size_bytes != size:
                raise InvalidArgument(
                    f"{FIELD}.size_bytes", f"says {ref.size_bytes} bytes, the file has {size}"
                )
            if ref.content_type not in CONTENT_TYPES:
                raise InvalidArgument(
                    f"{FIELD}.content_type",
                    f"{ref.content_type!r} is not accepted; accepted: {', '.join(CONTENT_TYPES)}",
                )
            expected = ref.sha256.lower()
            if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
                raise InvalidArgument(f"{FIELD}.sha256", "must be the file's SHA-256 as 64 hex digits")
            digest = hashlib.sha256()
            head = b""
            while chunk := handle.read(_CHUNK):
                if not head:
                    head = chunk[:16]
                digest.update(chunk)
        sniffed = sniff_content_type(head)
        if sniffed != ref.content_type:
            found = sniffed or "not an accepted image type"
            raise InvalidArgument(
                f"{FIELD}.content_type", f"says {ref.content_type!r}, the file's bytes are {found}"
            )
        if digest.hexdigest() != expected:
            raise InvalidArgument(
                f"{FIELD}.sha256", f"says {expected}, the file's SHA-256 is {digest.hexdigest()}"
            )

    def put(self, data: bytes, content_type: str | None = None) -> common_pb2.MediaRef:
        """Store ``data`` under the root, content-addressed, and return its reference.

        The path is ``<root>/sha256/<first two hex digits>/<digest><suffix>``, so storing the same
        bytes again writes nothing and returns the same reference. ``content_type`` defaults to the
        type the bytes show; raises InvalidArgument (``content_type``) when they show no accepted
        type or another one than the given type.
        """
        if len(data) > self.max_bytes:
            raise InvalidArgument("data", f"is {len(data)} bytes, over the limit of {self.max_bytes}")
        sniffed = sniff_content_type(data[:16])
        if sniffed is None or (content_type is not None and content_type != sniffed):
            found = sniffed or "not an accepted image type"
            raise InvalidArgument(
                "content_type", f"the bytes are {found}; accepted: {', '.join(CONTENT_TYPES)}"
            )
        digest = hashlib.sha256(data).hexdigest()
        path = posixpath.join(self.root_path, "sha256", digest[:2], digest + _SUFFIXES[sniffed])
        if not self.fs.exists(path):
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{digest[:8]}"
            with self.fs.open(tmp, "wb") as out:
                out.write(data)
            self.fs.mv(tmp, path)
        return common_pb2.MediaRef(
            uri=self.uri_of(path), content_type=sniffed, size_bytes=len(data), sha256=digest
        )


def model_input(item: common_pb2.Item) -> str:
    """The string a model reads for ``item`` (Triton's TEXT input, a family's ``fit`` input): its
    text, or for a media item its URI (image families read the file from the media root)."""
    if item.content.WhichOneof("body") == "media":
        return item.content.media.uri
    return item.content.text
