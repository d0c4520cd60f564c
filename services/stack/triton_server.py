"""The local Triton Inference Server: the `tritonserver` binary inside the nvidia-pytriton wheel, on CPU.

The wheel's python backend needs three things to run standalone, all set up here:
a backend directory `python/` holding `libtriton_python.so`, `triton_python_backend_utils.py` and
the backend stub built for this interpreter's X.Y; `LD_LIBRARY_PATH` starting with this
interpreter's own libpython directory, then the wheel's `nvidia_pytriton.libs`; and `PATH`
starting with this environment's `bin/`, so the stub's embedded Python imports from this venv.
Models are loaded on request (`--model-control-mode=explicit`), and at start every model in
the repository is loaded (`--load-model=*`), so a restarted Triton serves what it served before;
a model that fails to load does not stop the server (`--exit-on-error=false`).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from labelloop.stack.process import ManagedProcess, StackError
from labelloop.stack.settings import StackSettings


def pytriton_dir() -> Path:
    """`<site-packages>/pytriton/tritonserver` of the installed nvidia-pytriton wheel."""
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


class TritonServer:
    """Triton on 127.0.0.1: gRPC `triton_grpc_port`, HTTP `triton_http_port`, metrics `triton_metrics_port`.

    Layout under `<stack_dir>/triton/`: `backends/python/` (assembled), `triton.log`, `triton.pid`.
    The model repository is `model_repository` (by default `<stack_dir>/model-repository`).
    Ready when `is_server_ready()` answers True over gRPC.
    """

    name = "triton"

    def __init__(self, settings: StackSettings, stack_dir: Path, model_repository: Path) -> None:
        self.grpc_port = settings.triton_grpc_port
        self.http_port = settings.triton_http_port
        self.metrics_port = settings.triton_metrics_port
        self.home = stack_dir / self.name
        self.backend_dir = self.home / "backends"
        self.model_repository = model_repository
        server_dir = pytriton_dir()
        self._server_dir = server_dir
        env = dict(os.environ)
        libs = [
            str(sysconfig.get_config_var("LIBDIR")),
            str(server_dir.parent.parent / "nvidia_pytriton.libs"),
        ]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        env["PATH"] = os.pathsep.join([str(Path(sys.prefix) / "bin"), env.get("PATH", os.defpath)])
        self.process = ManagedProcess(
            self.name,
            [
                str(server_dir / "bin" / "tritonserver"),
                f"--model-repository={model_repository}",
                "--model-control-mode=explicit",
                "--load-model=*",
                # ready = the server answers; a model that failed to load must not make Triton
                # as a whole unready (each model's readiness is asked separately)
                "--strict-readiness=false",
                f"--backend-directory={self.backend_dir}",
                f"--cache-directory={server_dir / 'caches'}",
                "--http-address=127.0.0.1",
                f"--http-port={self.http_port}",
                "--grpc-address=127.0.0.1",
                f"--grpc-port={self.grpc_port}",
                "--metrics-address=127.0.0.1",
                f"--metrics-port={self.metrics_port}",
                "--allow-gpu-metrics=false",
                "--disable-auto-complete-config",
                "--exit-on-error=false",
            ],
            env,
            self.home / "triton.log",
            self.is_ready,
            ports=(self.grpc_port, self.http_port, self.metrics_port),
            prepare=self._prepare,
            start_timeout_s=settings.start_timeout_s,
            stop_timeout_s=settings.stop_timeout_s,
        )

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port} (grpc), {self.http_port} (http), {self.metrics_port} (metrics)"

    def _prepare(self) -> None:
        """Assemble `<home>/backends/python/` and create the model repository."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self._server_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
        backend = self._server_dir / "backends" / "python"
        sources = [backend / "libtriton_python.so", backend / "triton_python_backend_utils.py", stub]
        missing = [str(s) for s in sources if not s.is_file()]
        if missing:
            raise StackError(
                f"triton: the nvidia-pytriton wheel lacks {', '.join(missing)} (Python {version})"
            )
        target = self.backend_dir / "python"
        target.mkdir(parents=True, exist_ok=True)
        for source in sources:
            copy = target / source.name
            if not copy.is_file() or copy.stat().st_size != source.stat().st_size:
                shutil.copy2(source, copy)
        self.model_repository.mkdir(parents=True, exist_ok=True)

    def is_ready(self) -> bool:
        """True when the server reports ready over gRPC."""
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            return bool(client.is_server_ready(client_timeout=2))
        finally:
            client.close()
