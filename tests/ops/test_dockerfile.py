"""deploy/Dockerfile: multi-stage, pinned base, non-root, health check, one image for the five
entry points. (No Docker engine here: this reads the Dockerfile; building it is for CI hosts
with Docker.)"""

from __future__ import annotations

import re

from toolchain import REPO

DOCKERFILE = REPO / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_multi_stage_build_from_a_pinned_python_base() -> None:
    steps = instructions()
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(froms) >= 2, "expected a build stage and a runtime stage"
    (base,) = {
        rest.split("=", 1)[1]
        for keyword, rest in steps
        if keyword == "ARG" and rest.startswith("PYTHON_IMAGE=")
    }
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    env = dict(
        line.split("=", 1)
        for line in (REPO / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["PYTHON_IMAGE"] == base, ".env and the Dockerfile name different base images"
    assert any(keyword == "COPY" and rest.startswith("--from=build") for keyword, rest in steps)


def test_runs_as_a_non_root_user_with_a_health_check() -> None:
    steps = instructions()
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    (healthcheck,) = [rest for keyword, rest in steps if keyword == "HEALTHCHECK"]
    assert "/healthz" in healthcheck and "LABELLOOP_METRICS_PORT" in healthcheck


def test_default_command_is_a_service_entry_point() -> None:
    (cmd,) = [rest for keyword, rest in instructions() if keyword == "CMD"]
    assert cmd == '["python", "-m", "labelloop.ingest"]'


def test_build_context_is_limited_to_what_the_image_needs() -> None:
    ignore = (REPO / "deploy" / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"]
    for needed in ("!pyproject.toml", "!constraints.txt", "!services/", "!proto/"):
        assert needed in ignore
