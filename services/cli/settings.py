"""Settings of the `labelloop` command (env `LABELLOOP_*`): where the services listen and the
API token it calls them with."""

from __future__ import annotations

from dataclasses import dataclass

from labelloop.core.grpc_client import DEFAULT_TOKEN_FILE, ClientTls
from labelloop.core.media import DEFAULT_MEDIA_ROOT
from labelloop.core.settings import CommonSettings, setting


@dataclass(frozen=True)
class CliSettings(CommonSettings):
    """Addresses of the gRPC APIs the CLI talks to (defaults: the local stack)."""

    ingest_addr: str = setting("127.0.0.1:50051")
    human_tasks_addr: str = setting("127.0.0.1:50052")
    token: str = setting("")
    """The API token (`LABELLOOP_TOKEN`); empty: read `token_file`."""
    token_file: str = setting(DEFAULT_TOKEN_FILE)
    """A file holding the token (`LABELLOOP_TOKEN_FILE`): the local stack's admin token by default."""
    grpc_ca_file: str = setting("")
    """CA (PEM) of the services' gRPC certificates; set: the CLI connects with TLS."""
    grpc_client_cert_file: str = setting("")
    """The CLI's own certificate and key (PEM) for mutual TLS."""
    grpc_client_key_file: str = setting("")
    media_root: str = setting(DEFAULT_MEDIA_ROOT)
    """The media store `labelloop import FOLDER` copies images into: the same root ingest reads."""

    def grpc_tls(self) -> ClientTls:
        return ClientTls(self.grpc_ca_file, self.grpc_client_cert_file, self.grpc_client_key_file)
