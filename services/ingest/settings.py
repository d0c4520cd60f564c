"""Ingest settings (env `LABELLOOP_*`)."""

from __future__ import annotations

from dataclasses import dataclass

from labelloop.core.media import DEFAULT_MEDIA_ROOT
from labelloop.core.settings import CommonSettings, port, positive, setting


@dataclass(frozen=True)
class IngestSettings(CommonSettings):
    """Ingest: the client-facing gRPC API (IngestService and the admin ProjectService)."""

    grpc_port: int = setting(50051, port)
    metrics_port: int = setting(9101, port)
    max_text_bytes: int = setting(512 * 1024, positive)  # SpamAssassin has 300 KB e-mails
    max_metadata_bytes: int = setting(16_384, positive)
    max_batch_items: int = setting(5_000, positive)
    media_root: str = setting(DEFAULT_MEDIA_ROOT)
    """Where image items' files live (`file:///path`, a path, or an fsspec URI such as `s3://b/p`);
    a media reference outside it is rejected. Default: `<repo>/.cache/media`."""
    max_media_bytes: int = setting(10 * 1024 * 1024, positive)
    """The largest media file ingest accepts (the file is read once to check its SHA-256)."""
    pending_ttl_s: float = setting(60.0, positive)
