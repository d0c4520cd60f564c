"""The annotator page's JavaScript type-checks (`// @ts-check` modules, strict, with the DOM
types) under the pinned TypeScript compiler that `make setup` installs into .cache/node."""

from __future__ import annotations

import subprocess

import pytest
from support import REPO_ROOT

TSC = REPO_ROOT / ".cache" / "node" / "node_modules" / ".bin" / "tsc"
PROJECT = REPO_ROOT / "services" / "annotator_web" / "tsconfig.json"


def test_every_page_module_is_checked() -> None:
    for module in (PROJECT.parent / "static").glob("*.js"):
        assert module.read_text().startswith("// @ts-check\n"), f"{module.name} is not type-checked"


def test_the_page_scripts_type_check() -> None:
    if not TSC.exists():
        pytest.fail("TypeScript is not installed: run make setup (deploy/local/setup.d/41-typescript.sh)")
    result = subprocess.run([str(TSC), "-p", str(PROJECT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
