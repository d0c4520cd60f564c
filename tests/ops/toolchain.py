"""Paths, tools and rendering helpers for the operations checks (tests/ops).

The tools are installed by `make setup` (deploy/local/setup.d/10-ops-tools.sh: helm and
kubeconform under .cache/bin, the Kubernetes and Compose JSON schemas under .cache/schemas;
Debian's prometheus package for promtool). A missing one fails the test that needs it, with
the remedy in the message: nothing is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
CHART = REPO / "charts" / "labelloop"
K8S_SCHEMAS = CACHE / "schemas" / "kubernetes"
COMPOSE_SCHEMA = CACHE / "schemas" / "compose-spec.json"
# Kubernetes versions the chart is validated against: the oldest it supports and a current one
# (the same list as K8S_SCHEMA_VERSIONS in deploy/local/setup.d/10-ops-tools.sh).
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
VALUES_FILES = {"default": None, "production": CHART / "values-production.yaml"}

SETUP_HINT = "run `make setup` (deploy/local/setup.d/10-ops-tools.sh installs it)"


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(f"{what} not found at {path.relative_to(REPO)}: {SETUP_HINT}", pytrace=False)
    return path


def tool(name: str, where: Path | None) -> str:
    if where is not None:
        return str(require_file(where / name, name))
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found on PATH: {SETUP_HINT}", pytrace=False)
    return found


def run(cmd: list[str], *, input: str | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run a command; the result carries its output for the assertion message."""
    return subprocess.run(cmd, input=input, cwd=cwd, capture_output=True, text=True, timeout=300)


def helm_template(helm: str, values: Path | None, kube_version: str, *sets: str) -> str:
    cmd = [helm, "template", "labelloop", str(CHART), "--namespace", "labelloop"]
    cmd += ["--kube-version", kube_version]
    if values is not None:
        cmd += ["--values", str(values)]
    for item in sets:
        cmd += ["--set", item]
    result = run(cmd)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return result.stdout


def manifests(rendered: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]
