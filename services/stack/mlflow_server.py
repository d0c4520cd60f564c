"""The local MLflow tracking server: SQLite backend store, artifacts served through the server.

Clients log artifacts over HTTP (`--serve-artifacts`, `mlflow-artifacts:` URIs), so they need
only the tracking URI, exactly as with a remote server. The model registry uses the same SQLite
store.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from labelloop.stack.process import ManagedProcess
from labelloop.stack.settings import StackSettings

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


class MlflowServer:
    """MLflow on 127.0.0.1:`mlflow_port`; layout `<stack_dir>/mlflow/{mlflow.db,artifacts/,mlflow.log,mlflow.pid}`.

    Ready when `GET /health` answers 200 (after the database migrations of a first start).
    """

    name = "mlflow"

    def __init__(self, settings: StackSettings, stack_dir: Path) -> None:
        self.port = settings.mlflow_port
        self.home = stack_dir / self.name
        self.artifacts_dir = self.home / "artifacts"
        env = dict(os.environ)
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        # The GenAI job runner (seven huey workers) serves nothing Labelloop uses; it costs ~1 GB and CPU.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        self.process = ManagedProcess(
            self.name,
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.home / 'mlflow.db'}",
                "--serve-artifacts",
                "--artifacts-destination",
                str(self.artifacts_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(settings.mlflow_workers),
            ],
            env,
            self.home / "mlflow.log",
            self.is_ready,
            ports=(self.port,),
            prepare=lambda: self.artifacts_dir.mkdir(parents=True, exist_ok=True),
            start_timeout_s=settings.start_timeout_s,
            stop_timeout_s=settings.stop_timeout_s,
        )

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def is_ready(self) -> bool:
        """True when `GET /health` answers 200."""
        with _DIRECT.open(f"{self.tracking_uri}/health", timeout=2) as response:
            return bool(response.status == 200)
