"""The Helm chart lints, renders, and renders valid Kubernetes objects (kubeconform -strict
against the offline schemas from `make setup`); its switches do what values.yaml says."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from promql_names import ALERT_RULES, DASHBOARDS_DIR
from toolchain import (
    CHART,
    K8S_SCHEMAS,
    KUBERNETES_VERSIONS,
    VALUES_FILES,
    helm_template,
    manifests,
    require_file,
    run,
)

# Prometheus operator CRDs: no offline schema is packaged with the Kubernetes ones, so
# kubeconform skips these two kinds and test_operator_resources_have_the_crd_shape checks them.
CRD_KINDS = ("ServiceMonitor", "PrometheusRule")
SERVICES = ("ingest", "inference", "routing", "human-tasks", "retraining", "annotator-web")


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("values", VALUES_FILES)
def test_helm_lint_strict(helm: str, values: str) -> None:
    cmd = [helm, "lint", "--strict", str(CHART)]
    if VALUES_FILES[values] is not None:
        cmd += ["--values", str(VALUES_FILES[values])]
    result = run(cmd)
    assert result.returncode == 0, f"helm lint --strict ({values}) failed:\n{result.stdout}\n{result.stderr}"
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", VALUES_FILES)
def test_rendered_chart_is_valid_kubernetes(
    kubeconform: str, rendered: dict, values: str, version: str
) -> None:
    schema_dir = require_file(K8S_SCHEMAS / f"v{version}-standalone-strict", f"Kubernetes {version} schemas")
    location = str(schema_dir.parent) + (
        "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/"
        "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    )
    cmd = [kubeconform, "-strict", "-summary", "-output", "json", "-kubernetes-version", version]
    cmd += ["-schema-location", location, "-skip", ",".join(CRD_KINDS), "-"]
    result = run(cmd, input=rendered[(values, version)])
    assert result.returncode == 0, f"kubeconform ({values}, k8s {version}):\n{result.stdout}\n{result.stderr}"
    summary = json.loads(result.stdout)["summary"]
    docs = manifests(rendered[(values, version)])
    crds = sum(1 for d in docs if d["kind"] in CRD_KINDS)
    assert summary["valid"] == len(docs) - crds > 10, summary
    assert summary["skipped"] == crds, summary


def test_kubeconform_rejects_an_invalid_manifest(kubeconform: str, rendered: dict) -> None:
    """The validation really validates: an unknown field in a Deployment spec is caught."""
    version = KUBERNETES_VERSIONS[-1]
    bad = rendered[("default", version)].replace(
        "revisionHistoryLimit: 5", "revisionHistoryLimit: 5\n  replica: 2", 1
    )
    location = (
        str(K8S_SCHEMAS)
        + "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    )
    result = run(
        [kubeconform, "-strict", "-kubernetes-version", version, "-schema-location", location, "-"], input=bad
    )
    assert result.returncode != 0
    assert "replica" in result.stdout


# The shape of the two Prometheus operator resources, as far as this chart uses them
# (monitoring.coreos.com/v1; field names from the operator's API reference).
_METADATA = {"type": "object", "required": ["name", "labels"]}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "properties": {"matchLabels": {"type": "object", "minProperties": 1}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "relabelings": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "sourceLabels": {"type": "array", "items": {"type": "string"}},
                                        "targetLabel": {"type": "string"},
                                        "action": {"enum": ["replace", "keep", "drop", "labelmap"]},
                                        "regex": {"type": "string"},
                                        "replacement": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "interval": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string"},
                                        "keep_firing_for": {"type": "string"},
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_operator_resources_have_the_crd_shape(rendered: dict) -> None:
    docs = manifests(rendered[("production", KUBERNETES_VERSIONS[-1])])
    monitors = by_kind(docs, "ServiceMonitor")
    rules = by_kind(docs, "PrometheusRule")
    assert len(monitors) == len(SERVICES) + 1  # the six services and Triton
    assert len(rules) == 1
    for doc in monitors.values():
        jsonschema.Draft7Validator(SERVICE_MONITOR_SCHEMA).validate(doc)
        relabel = doc["spec"]["endpoints"][0]["relabelings"]
        assert {"targetLabel": "component"}.items() <= relabel[0].items()
    for doc in rules.values():
        jsonschema.Draft7Validator(PROMETHEUS_RULE_SCHEMA).validate(doc)


def test_crd_shape_check_rejects_a_wrong_field() -> None:
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "x", "labels": {}},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expression": "up == 0"}]}]},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(PROMETHEUS_RULE_SCHEMA).validate(bad)


def test_prometheus_rule_carries_the_alert_rules_file(rendered: dict) -> None:
    docs = manifests(rendered[("production", KUBERNETES_VERSIONS[-1])])
    (rule,) = by_kind(docs, "PrometheusRule").values()
    assert rule["spec"]["groups"] == yaml.safe_load(ALERT_RULES.read_text())["groups"]


def test_dashboards_ship_as_sidecar_configmaps(rendered: dict) -> None:
    docs = manifests(rendered[("default", KUBERNETES_VERSIONS[-1])])
    maps = [
        d
        for d in by_kind(docs, "ConfigMap").values()
        if d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    files = sorted(DASHBOARDS_DIR.glob("*.json"))
    assert files and len(maps) == len(files)
    shipped = {name: json.loads(body) for m in maps for name, body in m["data"].items()}
    assert shipped == {f.name: json.loads(f.read_text()) for f in files}


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_service_deployment_is_production_shaped(rendered: dict, values: str) -> None:
    docs = manifests(rendered[(values, KUBERNETES_VERSIONS[-1])])
    deployments = by_kind(docs, "Deployment")
    services = by_kind(docs, "Service")
    for name in SERVICES:
        full = f"labelloop-{name}"
        assert full in deployments and full in services, f"{full} missing"
        pod = deployments[full]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["python", "-m", f"labelloop.{name.replace('-', '_')}"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["resources"]["requests"], name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        readiness = container["readinessProbe"]
        env = {e["name"]: e for e in container["env"]}
        metrics_port = int(env["LABELLOOP_METRICS_PORT"]["value"])
        if name in ("ingest", "human-tasks"):
            assert readiness["grpc"]["port"] == int(env["LABELLOOP_GRPC_PORT"]["value"])
        else:
            assert readiness["httpGet"]["path"] == "/readyz"
        assert (
            metrics_port
            == {
                "ingest": 9101,
                "inference": 9102,
                "routing": 9103,
                "human-tasks": 9104,
                "retraining": 9105,
                "annotator-web": 9106,
            }[name]
        )
        for var in (
            "LABELLOOP_KAFKA_BOOTSTRAP",
            "LABELLOOP_REDIS_URL",
            "LABELLOOP_TRITON_GRPC_URL",
            "LABELLOOP_MLFLOW_TRACKING_URI",
            "LABELLOOP_TOPIC_PREFIX",
            "LABELLOOP_MODEL_REPOSITORY",
        ):
            assert var in env, f"{name} lacks {var}"


def test_no_secret_is_rendered_and_credentials_come_from_secret_refs(rendered: dict) -> None:
    for (values, _), text in rendered.items():
        docs = manifests(text)
        assert not [d for d in docs if d["kind"] == "Secret"], values
    docs = manifests(rendered[("production", KUBERNETES_VERSIONS[-1])])
    pod = by_kind(docs, "Deployment")["labelloop-routing"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["LABELLOOP_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "labelloop-redis",
        "key": "password",
    }


def test_trial_mode_deploys_dependencies_and_production_points_at_external_ones(rendered: dict) -> None:
    version = KUBERNETES_VERSIONS[-1]
    trial = manifests(rendered[("default", version)])
    prod = manifests(rendered[("production", version)])
    assert {"labelloop-kafka", "labelloop-redis"} <= set(by_kind(trial, "StatefulSet"))
    assert "labelloop-mlflow" in by_kind(trial, "Deployment")
    assert not by_kind(prod, "StatefulSet")
    assert "labelloop-mlflow" not in by_kind(prod, "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in by_kind(prod, "Deployment")["labelloop-inference"]["spec"]["template"]["spec"]["containers"][
            0
        ]["env"]
    }
    assert env["LABELLOOP_KAFKA_BOOTSTRAP"].startswith("kafka-0.kafka.data.svc:9092")
    assert env["LABELLOOP_MLFLOW_TRACKING_URI"] == "https://mlflow.internal.example.com"
    trial_env = {
        e["name"]: e.get("value")
        for e in by_kind(trial, "Deployment")["labelloop-inference"]["spec"]["template"]["spec"][
            "containers"
        ][0]["env"]
    }
    assert trial_env["LABELLOOP_KAFKA_BOOTSTRAP"] == "labelloop-kafka:9092"
    assert trial_env["LABELLOOP_TRITON_GRPC_URL"] == "labelloop-triton:8001"


def test_external_dependency_without_an_address_fails_with_its_value_name(helm: str) -> None:
    result = run(
        [
            helm,
            "template",
            "labelloop",
            str(CHART),
            "--kube-version",
            KUBERNETES_VERSIONS[-1],
            "--set",
            "kafka.enabled=false",
        ]
    )
    assert result.returncode != 0
    assert "kafka.external.bootstrap is required" in result.stderr


def test_triton_gpu_toggle_and_shared_model_repository(helm: str, rendered: dict) -> None:
    version = KUBERNETES_VERSIONS[-1]

    def triton_and_retraining(docs: list[dict]) -> tuple[dict, dict]:
        deployments = by_kind(docs, "Deployment")
        return deployments["labelloop-triton"]["spec"]["template"]["spec"], deployments[
            "labelloop-retraining"
        ]["spec"]["template"]["spec"]

    cpu, retraining = triton_and_retraining(manifests(rendered[("default", version)]))
    gpu, _ = triton_and_retraining(manifests(rendered[("production", version)]))
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])
    args = cpu["containers"][0]["args"]
    assert "--model-repository=/models" in args and "--model-control-mode=explicit" in args
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for pod in (cpu, retraining)
        for v in pod["volumes"]
        if v["name"] == "model-repository"  # (the media volume: test_media_volume.py)
    }
    assert claims == {"labelloop-model-repository"}
    pvc = by_kind(manifests(rendered[("default", version)]), "PersistentVolumeClaim")[
        "labelloop-model-repository"
    ]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    own = manifests(helm_template(helm, None, version, "modelRepository.existingClaim=models-on-s3"))
    assert "labelloop-model-repository" not in by_kind(own, "PersistentVolumeClaim")
    cpu, retraining = triton_and_retraining(own)
    assert {
        v["persistentVolumeClaim"]["claimName"]
        for pod in (cpu, retraining)
        for v in pod["volumes"]
        if v["name"] == "model-repository"
    } == {"models-on-s3"}


def test_autoscaling_replaces_fixed_replicas(rendered: dict) -> None:
    docs = manifests(rendered[("production", KUBERNETES_VERSIONS[-1])])
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {f"labelloop-{s}" for s in ("ingest", "inference", "routing", "human-tasks")}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert "replicas" not in by_kind(docs, "Deployment")[name]["spec"]
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert pdbs["labelloop-ingest"]["spec"] == {
        "minAvailable": 2,
        "selector": by_kind(docs, "Deployment")["labelloop-ingest"]["spec"]["selector"],
    }


def test_the_annotator_web_app_calls_the_apis_in_the_release_and_has_an_optional_ingress(
    rendered: dict,
) -> None:
    version = KUBERNETES_VERSIONS[-1]
    trial = manifests(rendered[("default", version)])
    (container,) = by_kind(trial, "Deployment")["labelloop-annotator-web"]["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LABELLOOP_HUMAN_TASKS_ADDR"] == "labelloop-human-tasks:50052"
    assert env["LABELLOOP_INGEST_ADDR"] == "labelloop-ingest:50051"
    assert (env["LABELLOOP_WEB_HOST"], env["LABELLOOP_WEB_PORT"]) == ("0.0.0.0", "8080")
    assert "LABELLOOP_SESSION_SECRET" not in env
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    service = by_kind(trial, "Service")["labelloop-annotator-web"]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 8080, "metrics": 9106}
    assert not by_kind(trial, "Ingress")

    production = manifests(rendered[("production", version)])
    (container,) = by_kind(production, "Deployment")["labelloop-annotator-web"]["spec"]["template"]["spec"][
        "containers"
    ]
    env_refs = {e["name"]: e for e in container["env"]}
    assert env_refs["LABELLOOP_SESSION_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "labelloop-web",
        "key": "session-secret",
    }
    assert env_refs["LABELLOOP_SECURE_COOKIE"]["value"] == "true"
    (ingress,) = by_kind(production, "Ingress").values()
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "labelloop-annotator-web", "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "labelloop-web-tls"


def test_the_annotator_web_app_trusts_the_grpc_apis_ca_when_tls_is_on(helm: str) -> None:
    docs = manifests(
        helm_template(
            helm,
            None,
            KUBERNETES_VERSIONS[-1],
            "tls.enabled=true",
            "tls.certManager.enabled=true",
            "tls.certManager.issuerRef.name=internal-ca",
            "tls.clientCaSecret=labelloop-client-ca",
        )
    )
    pod = by_kind(docs, "Deployment")["labelloop-annotator-web"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LABELLOOP_GRPC_CA_FILE"] == "/etc/labelloop/grpc-tls/ca.crt"
    assert env["LABELLOOP_GRPC_CLIENT_CERT_FILE"] == "/etc/labelloop/grpc-tls/tls.crt"
    assert "LABELLOOP_GRPC_TLS_CERT_FILE" not in env  # it serves no gRPC
    assert {"name": "grpc-tls", "mountPath": "/etc/labelloop/grpc-tls", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {"name": "grpc-tls", "secret": {"secretName": "labelloop-grpc-tls"}} in pod["volumes"]


def test_the_llm_source_is_off_by_default_and_takes_its_api_key_from_a_secret(
    helm: str, kubeconform: str, rendered: dict
) -> None:
    version = KUBERNETES_VERSIONS[-1]
    for values in VALUES_FILES:
        assert "labelloop-llm-source" not in by_kind(manifests(rendered[(values, version)]), "Deployment")
    text = helm_template(
        helm,
        None,
        version,
        "services.llmSource.enabled=true",
        "services.llmSource.llm.baseUrl=https://llm.internal/v1",
        "services.llmSource.llm.model=small-instruct",
        "services.llmSource.llm.apiKey.existingSecret=labelloop-llm",
    )
    docs = manifests(text)
    assert not [d for d in docs if d["kind"] == "Secret"]
    pod = by_kind(docs, "Deployment")["labelloop-llm-source"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "labelloop.llm_source"]
    env = {e["name"]: e for e in container["env"]}
    assert env["LABELLOOP_LLM_BASE_URL"]["value"] == "https://llm.internal/v1"
    assert env["LABELLOOP_LLM_MODEL"]["value"] == "small-instruct"
    assert env["LABELLOOP_LLM_ASK"]["value"] == "uncertain"
    assert env["LABELLOOP_METRICS_PORT"]["value"] == "9107"
    assert env["LABELLOOP_LLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "labelloop-llm",
        "key": "api-key",
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    redis_policy = by_kind(docs, "NetworkPolicy")["labelloop-redis"]
    allowed = redis_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][1]["values"]
    assert "llm-source" in allowed  # it reaches Redis (budget, stashed votes) and Kafka
    schema_dir = require_file(K8S_SCHEMAS / f"v{version}-standalone-strict", f"Kubernetes {version} schemas")
    location = str(schema_dir.parent) + (
        "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/"
        "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    )
    cmd = [kubeconform, "-strict", "-summary", "-kubernetes-version", version]
    cmd += ["-schema-location", location, "-skip", ",".join(CRD_KINDS), "-"]
    result = run(cmd, input=text)
    assert result.returncode == 0, result.stdout + result.stderr
