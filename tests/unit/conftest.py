"""Fixtures shared by unit tests."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

MODEL_PY = Path(__file__).resolve().parents[2] / "services" / "core" / "triton_model" / "model.py"


@pytest.fixture
def served_model_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Triton's model.py, imported with a stand-in for the backend's utility module."""
    monkeypatch.setitem(
        sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils")
    )
    spec = importlib.util.spec_from_file_location("_served_model_for_test", MODEL_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
