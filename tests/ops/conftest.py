"""Fixtures for the operations checks: the tools (failing with `make setup` as the remedy
when one is missing) and the chart rendered once per values file and Kubernetes version."""

from __future__ import annotations

import pytest
from toolchain import CACHE, KUBERNETES_VERSIONS, VALUES_FILES, helm_template, tool


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm", CACHE / "bin")


@pytest.fixture(scope="session")
def kubeconform() -> str:
    return tool("kubeconform", CACHE / "bin")


@pytest.fixture(scope="session")
def promtool() -> str:
    return tool("promtool", None)


@pytest.fixture(scope="session")
def rendered(helm: str) -> dict[tuple[str, str], str]:
    """helm template output for each values file and Kubernetes version, rendered once."""
    return {
        (name, version): helm_template(helm, values, version)
        for name, values in VALUES_FILES.items()
        for version in KUBERNETES_VERSIONS
    }
