"""annotator-web settings (env `LABELLOOP_*`)."""

from __future__ import annotations

from dataclasses import dataclass

from labelloop.core.grpc_client import ClientTls
from labelloop.core.media import DEFAULT_MEDIA_ROOT
from labelloop.core.settings import CommonSettings, port, positive, setting


def _secret(value: str) -> str | None:
    return None if value == "" or len(value) >= 32 else "must be at least 32 characters (or unset)"


@dataclass(frozen=True)
class WebSettings(CommonSettings):
    """The annotator web app: where it listens, which gRPC APIs it calls, how sessions work."""

    web_host: str = setting("127.0.0.1")
    web_port: int = setting(8080, port)
    metrics_port: int = setting(9106, port)
    # The human-tasks API (LeaseTask, SubmitAnnotation, ...) and the ingest API (TokenService,
    # ProjectService), called with the logged-in person's own token.
    human_tasks_addr: str = setting("127.0.0.1:50052")
    ingest_addr: str = setting("127.0.0.1:50051")
    grpc_timeout_s: float = setting(5.0, positive)
    # TLS to those APIs (as the CLI): the CA of their certificates; for mutual TLS, this app's
    # own certificate and key (PEM files). No CA: plaintext.
    grpc_ca_file: str = setting("")
    grpc_client_cert_file: str = setting("")
    grpc_client_key_file: str = setting("")
    # Signs and encrypts the session cookie. Unset: a random key per process (sessions end on
    # restart, and several replicas need the same key: set it from a Secret).
    session_secret: str = setting("", _secret)
    session_max_age_s: int = setting(12 * 3600, positive)
    # Send the cookie over HTTPS only (set true behind TLS; the local stack is plain HTTP).
    secure_cookie: bool = setting(False)
    # How long an answer is held in the page, undoable with Ctrl+Z, before it is sent.
    undo_window_s: float = setting(4.0, positive)
    # The media store image tasks' files are read from (the root ingest checks them under), and
    # the largest file served.
    media_root: str = setting(DEFAULT_MEDIA_ROOT)
    max_media_bytes: int = setting(10 * 1024 * 1024, positive)

    def grpc_tls(self) -> ClientTls:
        """TLS of the channels to human-tasks and ingest."""
        return ClientTls(self.grpc_ca_file, self.grpc_client_cert_file, self.grpc_client_key_file)
