"""The chart's security wiring: NetworkPolicies (each component receives only from what needs
it), credentials only as Secret references reaching the services' environment, Kafka security
and replication in production, gRPC TLS, and `helm template` without --kube-version."""

from __future__ import annotations

import pytest
from toolchain import CHART, KUBERNETES_VERSIONS, VALUES_FILES, manifests, run

SERVICES = ("ingest", "inference", "routing", "human-tasks", "retraining")


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env_of(docs: list[dict], deployment: str) -> dict[str, dict]:
    pod = by_kind(docs, "Deployment")[deployment]["spec"]["template"]["spec"]
    return {e["name"]: e for e in pod["containers"][0]["env"]}


def allowed_components(policy: dict, port: int) -> set[str] | None:
    """Components allowed to reach `port` by `policy` (None: anyone)."""
    found: set[str] = set()
    for rule in policy["spec"]["ingress"]:
        if port not in {p["port"] for p in rule.get("ports", [])}:
            continue
        if not rule.get("from"):
            return None
        for peer in rule["from"]:
            selector = peer["podSelector"]
            for expr in selector.get("matchExpressions", []):
                if expr["key"] == "app.kubernetes.io/component":
                    found |= set(expr["values"])
            if "app.kubernetes.io/component" in selector.get("matchLabels", {}):
                found.add(selector["matchLabels"]["app.kubernetes.io/component"])
    return found


def test_helm_template_renders_without_a_kube_version(helm: str) -> None:
    result = run([helm, "template", "labelloop", str(CHART), "--namespace", "labelloop"])
    assert result.returncode == 0, result.stderr
    assert by_kind(manifests(result.stdout), "Deployment")


def test_network_policies_let_each_component_receive_only_from_what_needs_it(rendered: dict) -> None:
    docs = manifests(rendered[("default", KUBERNETES_VERSIONS[-1])])
    policies = by_kind(docs, "NetworkPolicy")
    assert set(policies) == {
        f"labelloop-{n}" for n in (*SERVICES, "annotator-web", "kafka", "redis", "mlflow", "triton")
    }
    for policy in policies.values():
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        component = policy["metadata"]["labels"]["app.kubernetes.io/component"]
        assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
    assert allowed_components(policies["labelloop-kafka"], 9092) == {*SERVICES, "kafka"}
    assert allowed_components(policies["labelloop-kafka"], 9093) == {"kafka"}
    assert allowed_components(policies["labelloop-redis"], 6379) == set(SERVICES)
    assert allowed_components(policies["labelloop-mlflow"], 5000) == {"retraining"}
    assert allowed_components(policies["labelloop-triton"], 8001) == {"inference", "retraining"}
    assert allowed_components(policies["labelloop-triton"], 8000) == {"inference", "retraining"}
    assert allowed_components(policies["labelloop-ingest"], 50051) is None, "client apps reach ingest"
    assert allowed_components(policies["labelloop-human-tasks"], 50052) is None
    assert allowed_components(policies["labelloop-annotator-web"], 8080) is None, "people reach the page"
    for quiet in ("inference", "routing", "retraining"):
        ports = {
            p["port"] for rule in policies[f"labelloop-{quiet}"]["spec"]["ingress"] for p in rule["ports"]
        }
        assert ports == {int(env_of(docs, f"labelloop-{quiet}")["LABELLOOP_METRICS_PORT"]["value"])}, quiet


def test_network_policies_can_be_switched_off_and_narrowed(helm: str) -> None:
    from toolchain import helm_template

    off = manifests(helm_template(helm, None, KUBERNETES_VERSIONS[-1], "networkPolicy.enabled=false"))
    assert not by_kind(off, "NetworkPolicy")
    narrowed = manifests(
        helm_template(
            helm,
            None,
            KUBERNETES_VERSIONS[-1],
            "networkPolicy.apiFrom[0].namespaceSelector.matchLabels.team=annotators",
        )
    )
    for name in ("ingest", "human-tasks"):  # the narrowed peers, and the annotator web app
        rule = by_kind(narrowed, "NetworkPolicy")[f"labelloop-{name}"]["spec"]["ingress"][0]
        assert rule["from"][0] == {"namespaceSelector": {"matchLabels": {"team": "annotators"}}}
        assert rule["from"][1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "annotator-web"
        assert len(rule["from"]) == 2
    web = manifests(
        helm_template(
            helm,
            None,
            KUBERNETES_VERSIONS[-1],
            "networkPolicy.webFrom[0].namespaceSelector.matchLabels.name=ingress-nginx",
        )
    )
    (page,) = [
        r
        for r in by_kind(web, "NetworkPolicy")["labelloop-annotator-web"]["spec"]["ingress"]
        if {"port": 8080, "protocol": "TCP"} in r["ports"]
    ]
    assert page["from"] == [{"namespaceSelector": {"matchLabels": {"name": "ingress-nginx"}}}]


@pytest.mark.parametrize("values", VALUES_FILES)
def test_credentials_reach_every_service_only_from_secrets(rendered: dict, values: str) -> None:
    docs = manifests(rendered[(values, KUBERNETES_VERSIONS[-1])])
    assert not by_kind(docs, "Secret"), "no Secret is ever rendered"
    for name in SERVICES:
        env = env_of(docs, f"labelloop-{name}")
        token = env["LABELLOOP_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert token == {"name": "labelloop-admin-token", "key": "token", "optional": True}
        for secret_var in ("LABELLOOP_ADMIN_TOKEN", "LABELLOOP_REDIS_PASSWORD", "LABELLOOP_KAFKA_PASSWORD"):
            if secret_var in env:
                assert "value" not in env[secret_var], f"{name}: {secret_var} is a literal"
        assert env["LABELLOOP_REDIS_PASSWORD_FILE"]["value"] == "", (
            "no local-stack password file in a cluster"
        )
        if values == "production":
            assert env["LABELLOOP_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "labelloop-redis"
            assert env["LABELLOOP_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "labelloop-kafka"
            assert "@" not in env["LABELLOOP_REDIS_URL"]["value"], "no password in the Redis URL"


def test_production_kafka_is_authenticated_and_replicated(rendered: dict) -> None:
    docs = manifests(rendered[("production", KUBERNETES_VERSIONS[-1])])
    for name in SERVICES:
        env = {k: v.get("value") for k, v in env_of(docs, f"labelloop-{name}").items()}
        assert env["LABELLOOP_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["LABELLOOP_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env["LABELLOOP_KAFKA_CA_FILE"] == "/etc/labelloop/kafka-ca/ca.crt"
        assert (env["LABELLOOP_TOPIC_REPLICATION_FACTOR"], env["LABELLOOP_TOPIC_MIN_INSYNC_REPLICAS"]) == (
            "3",
            "2",
        )
        pod = by_kind(docs, "Deployment")[f"labelloop-{name}"]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["kafka-ca"]["secret"]["secretName"] == "labelloop-kafka-ca"
    trial = manifests(rendered[("default", KUBERNETES_VERSIONS[-1])])
    trial_env = {k: v.get("value") for k, v in env_of(trial, "labelloop-routing").items()}
    assert trial_env["LABELLOOP_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"


def test_grpc_tls_from_cert_manager_with_a_client_ca(helm: str) -> None:
    from toolchain import helm_template

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
    (certificate,) = by_kind(docs, "Certificate").values()
    assert certificate["spec"]["secretName"] == "labelloop-grpc-tls"
    assert "labelloop-ingest.labelloop.svc" in certificate["spec"]["dnsNames"]
    for name in ("ingest", "human-tasks"):
        env = {k: v.get("value") for k, v in env_of(docs, f"labelloop-{name}").items()}
        assert env["LABELLOOP_GRPC_TLS_CERT_FILE"] == "/etc/labelloop/grpc-tls/tls.crt"
        assert env["LABELLOOP_GRPC_TLS_CLIENT_CA_FILE"] == "/etc/labelloop/grpc-client-ca/ca.crt"
        pod = by_kind(docs, "Deployment")[f"labelloop-{name}"]["spec"]["template"]["spec"]
        assert "grpc" not in pod["containers"][0]["readinessProbe"], "kubelet's gRPC probe speaks no TLS"
    assert "LABELLOOP_GRPC_TLS_CERT_FILE" not in env_of(docs, "labelloop-routing")
    missing = run([helm, "template", "labelloop", str(CHART), "--set", "tls.enabled=true"])
    assert missing.returncode != 0 and "tls.existingSecret" in missing.stderr


def test_mlflow_basic_auth_credentials_come_from_one_secret(helm: str) -> None:
    from toolchain import helm_template

    docs = manifests(
        helm_template(
            helm, None, KUBERNETES_VERSIONS[-1], "mlflow.auth.existingSecret=labelloop-mlflow-admin"
        )
    )
    assert not by_kind(docs, "Secret")
    mlflow = by_kind(docs, "Deployment")["labelloop-mlflow"]["spec"]["template"]["spec"]["containers"][0]
    assert "--app-name=basic-auth" in mlflow["args"]
    env = {e["name"]: e for e in mlflow["env"]}
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "labelloop-mlflow-admin",
        "key": "password",
    }
    ini = by_kind(docs, "ConfigMap")["labelloop-mlflow-auth"]["data"]["basic_auth.ini"]
    assert "admin_username = labelloop" in ini and "password" not in ini.replace("admin_password", "")
    retraining = env_of(docs, "labelloop-retraining")
    assert retraining["MLFLOW_TRACKING_USERNAME"]["value"] == "labelloop"
    assert (
        retraining["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        == "labelloop-mlflow-admin"
    )
    plain = manifests(helm_template(helm, None, KUBERNETES_VERSIONS[-1]))
    assert "MLFLOW_TRACKING_PASSWORD" not in env_of(plain, "labelloop-retraining")
    assert (
        "--app-name=basic-auth"
        not in by_kind(plain, "Deployment")["labelloop-mlflow"]["spec"]["template"]["spec"]["containers"][0][
            "args"
        ]
    )


def test_the_llm_source_reaches_kafka_and_redis_only_when_enabled(helm: str) -> None:
    def policies(*sets: str) -> dict[str, dict]:
        args = [helm, "template", "labelloop", str(CHART), "--namespace", "labelloop"]
        for value in sets:
            args += ["--set", value]
        result = run(args)
        assert result.returncode == 0, result.stderr
        return by_kind(manifests(result.stdout), "NetworkPolicy")

    off = policies()
    assert "llm-source" not in allowed_components(off["labelloop-kafka"], 9092)  # type: ignore[operator]
    on = policies("services.llmSource.enabled=true", "services.llmSource.llm.baseUrl=http://llm:8000/v1")
    assert "llm-source" in allowed_components(on["labelloop-kafka"], 9092)  # type: ignore[operator]
    assert "llm-source" in allowed_components(on["labelloop-redis"], 6379)  # type: ignore[operator]
