"""docker-compose.yml is a valid Compose file (the Compose specification's JSON schema, from
`make setup`), after interpolation from .env as `docker compose` does it, and wires the stack
as the README says: health checks, start order, volumes, pinned images."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml
from toolchain import COMPOSE_SCHEMA, REPO, require_file

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_FILE = REPO / ".env"
LABELLOOP = {
    "ingest": ("labelloop.ingest", 9101),
    "inference": ("labelloop.inference", 9102),
    "routing": ("labelloop.routing", 9103),
    "human-tasks": ("labelloop.human_tasks", 9104),
    "retraining": ("labelloop.retraining", 9105),
}
WEB = {"annotator-web": ("labelloop.annotator_web", 9106)}
INFRASTRUCTURE = ("kafka", "redis", "triton", "mlflow", "prometheus", "grafana")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def env_file() -> dict[str, str]:
    values = {}
    for line in ENV_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(node: object, env: dict[str, str], missing: set[str]) -> object:
    """${VAR}, ${VAR:-default} and $VAR in strings, as Compose interpolates them."""
    if isinstance(node, dict):
        return {k: interpolate(v, env, missing) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, missing) for v in node]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(3)
            if name in env:
                return env[name]
            if match.group(2) is not None:
                return match.group(2)
            missing.add(name)
            return ""

        return _VARIABLE.sub(replace, node.replace("$$", "\0")).replace("\0", "$")
    return node


def compose_model() -> dict:
    missing: set[str] = set()
    model = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env_file(), missing)
    assert not missing, f"variables used in docker-compose.yml but not set in .env: {sorted(missing)}"
    assert isinstance(model, dict)
    return model


def compose_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(require_file(COMPOSE_SCHEMA, "Compose spec JSON schema").read_text())
    assert "draft-07" in schema["$schema"]
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_compose_file_matches_the_compose_spec_schema() -> None:
    errors = sorted(compose_validator().iter_errors(compose_model()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_schema_check_rejects_an_invalid_compose_file() -> None:
    model = compose_model()
    model["services"]["redis"]["depends_on"] = {"kafka": {"condition": "service_ready"}}
    model["services"]["kafka"]["restart_policy"] = "always"
    assert len(list(compose_validator().iter_errors(model))) == 2


def test_the_whole_stack_is_there_with_health_checks() -> None:
    services = compose_model()["services"]
    for name in (*INFRASTRUCTURE, *LABELLOOP, *WEB):
        assert name in services, f"{name} missing"
        assert "healthcheck" in services[name], f"{name} has no health check"


def test_labelloop_services_run_one_image_with_their_entry_point() -> None:
    services = compose_model()["services"]
    images = {services[name]["image"] for name in LABELLOOP}
    assert len(images) == 1
    for name, (module, port) in LABELLOOP.items():
        service = services[name]
        assert service["command"] == ["python", "-m", module]
        package = REPO / "services" / module.split(".", 1)[1]
        assert package.is_dir(), f"{module} has no package at {package.relative_to(REPO)}"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["environment"]["LABELLOOP_METRICS_PORT"] == str(port)
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["inference"]["depends_on"]["triton"]["condition"] == "service_healthy"
    assert services["retraining"]["depends_on"]["mlflow"]["condition"] == "service_healthy"


def test_prometheus_scrapes_every_service_on_its_metrics_port() -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t: cfg["labels"]["component"]
        for job in config["scrape_configs"]
        for cfg in job["static_configs"]
        for t in cfg["targets"]
        if "labels" in cfg
    }
    expected = {f"{name}:{port}": name for name, (_, port) in (LABELLOOP | WEB).items()} | {
        "triton:8002": "triton"
    }
    assert targets == expected


def test_the_annotator_web_app_runs_the_image_after_the_apis_it_calls() -> None:
    services = compose_model()["services"]
    web = services["annotator-web"]
    assert web["image"] == services["ingest"]["image"]
    assert web["command"] == ["python", "-m", "labelloop.annotator_web"]
    env = web["environment"]
    assert (env["LABELLOOP_METRICS_PORT"], env["LABELLOOP_WEB_PORT"]) == ("9106", "8080")
    assert env["LABELLOOP_WEB_HOST"] == "0.0.0.0"
    assert (env["LABELLOOP_HUMAN_TASKS_ADDR"], env["LABELLOOP_INGEST_ADDR"]) == (
        "human-tasks:50052",
        "ingest:50051",
    )
    assert web["ports"] == ["127.0.0.1:8080:8080"]
    assert "http://127.0.0.1:9106/readyz" in " ".join(web["healthcheck"]["test"])
    assert {k: v["condition"] for k, v in web["depends_on"].items()} == {
        "ingest": "service_healthy",
        "human-tasks": "service_healthy",
    }


def test_model_repository_is_shared_by_triton_and_retraining() -> None:
    model = compose_model()
    services = model["services"]
    assert "model-repository:/models:ro" in services["triton"]["volumes"]
    assert "model-repository:/models" in services["retraining"]["volumes"]
    assert {"kafka-data", "model-repository", "mlflow-data"} <= set(model["volumes"])
    command = services["triton"]["command"]
    assert "--model-repository=/models" in command and "--model-control-mode=explicit" in command


@pytest.mark.parametrize("mount_owner", ["prometheus", "grafana"])
def test_bind_mounts_exist(mount_owner: str) -> None:
    for volume in compose_model()["services"][mount_owner]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (REPO / source).exists(), f"{mount_owner} mounts {source}, which does not exist"


def test_images_are_pinned() -> None:
    env = env_file()
    images = {k: v for k, v in env.items() if k.endswith("_IMAGE")}
    assert len(images) >= 7
    for key, image in images.items():
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and re.search(r"\d", tag), f"{key}={image} is not pinned"


def test_redis_password_and_admin_token_come_from_env_file() -> None:
    env = env_file()
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    services = compose_model()["services"]
    assert env["REDIS_PASSWORD"] not in COMPOSE_FILE.read_text(), "no literal password in the compose file"
    redis = services["redis"]
    assert "--requirepass" in " ".join(redis["command"]) and "$REDIS_PASSWORD" in " ".join(redis["command"])
    assert redis["environment"]["REDIS_PASSWORD"] == env["REDIS_PASSWORD"]
    assert raw["redis"]["environment"]["REDIS_PASSWORD"] == "${REDIS_PASSWORD}"
    for name in LABELLOOP:
        environment = services[name]["environment"]
        assert environment["LABELLOOP_REDIS_PASSWORD"] == env["REDIS_PASSWORD"], name
        assert environment["LABELLOOP_ADMIN_TOKEN"] == env["LABELLOOP_ADMIN_TOKEN"], name
        assert "@" not in environment["LABELLOOP_REDIS_URL"], f"{name}: no password in the Redis URL"
    assert len(env["LABELLOOP_ADMIN_TOKEN"]) >= 16, "the services refuse a shorter admin token"


def test_the_llm_source_is_an_opt_in_profile_with_its_endpoint_from_the_env_file() -> None:
    service = compose_model()["services"]["llm-source"]
    assert service["profiles"] == ["llm"]  # `docker compose up` alone does not start it
    assert service["command"] == ["python", "-m", "labelloop.llm_source"]
    assert (REPO / "services" / "llm_source").is_dir()
    env = service["environment"]
    assert env["LABELLOOP_METRICS_PORT"] == "9107"
    assert "http://127.0.0.1:9107/readyz" in " ".join(service["healthcheck"]["test"])
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["llm-source"]["environment"]
    assert raw["LABELLOOP_LLM_API_KEY"] == "${LLM_API_KEY}"  # from .env, never written in the file
    assert {"LLM_BASE_URL", "LLM_MODEL", "LLM_API_KEY"} <= set(env_file())
    assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
