"""Media (the image files items reference) in docker-compose.yml and the chart: one shared volume
mounted at the path of LABELLOOP_MEDIA_ROOT wherever media is read (ingest read-write for
`labelloop import`; human-tasks, annotator-web, retraining and Triton read-only), or an s3://
root through the chart's values (no volume; the credentials' Secret where media is read); and
a Triton image that carries the Python libraries the models import, at the project's pins."""

from __future__ import annotations

import ast
import re
import sys

from test_compose import compose_model
from toolchain import KUBERNETES_VERSIONS, REPO, helm_template, manifests

READERS = ("ingest", "human-tasks", "annotator-web", "retraining")
TRITON_DIR = REPO / "deploy" / "triton"
# what the models' files import -> the distribution that provides it
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn"}
MODEL_FILES = ("triton_model/model.py", "image_features.py", "encoder_runtime.py")
# imported only by encoder_runtime.py's graph builder, which runs at setup, never inside Triton
BUILD_TIME_ONLY = {"onnx"}


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            pins[re.sub(r"\[.*\]", "", name).strip().lower()] = version.strip()
    return pins


def test_compose_mounts_one_media_volume_at_the_media_root_where_media_is_read() -> None:
    model = compose_model()
    services = model["services"]
    assert "media" in model["volumes"]
    root = services["ingest"]["environment"]["LABELLOOP_MEDIA_ROOT"]
    assert root.startswith("file:///")
    path = root.removeprefix("file://")
    for name in ("ingest", "inference", "routing", "human-tasks", "retraining", "annotator-web"):
        assert services[name]["environment"]["LABELLOOP_MEDIA_ROOT"] == root, name
    for name in (*READERS, "triton"):
        mounts = [v for v in services[name].get("volumes", []) if v.split(":")[0] == "media"]
        assert len(mounts) == 1, f"{name} does not mount the media volume"
        target, _, mode = mounts[0].split(":", 1)[1].partition(":")
        assert target == path, f"{name} mounts media at {target}, the root is {root}"
        assert mode == ("" if name == "ingest" else "ro"), f"{name} mounts media {mode or 'rw'}"
    init = services["model-repository-init"]
    assert f"media:{path}" in init["volumes"] and f"'{path}'" in " ".join(init["command"])


def test_compose_builds_triton_with_the_model_libraries() -> None:
    triton = compose_model()["services"]["triton"]
    assert triton["build"]["dockerfile"] == "deploy/triton/Dockerfile"
    assert triton["build"]["args"]["TRITON_IMAGE"].startswith("nvcr.io/nvidia/tritonserver:")
    dockerfile = (TRITON_DIR / "Dockerfile").read_text()
    assert "requirements.txt" in dockerfile and "FROM ${TRITON_IMAGE}" in dockerfile
    ignore = (TRITON_DIR / "Dockerfile.dockerignore").read_text().split()
    assert "!deploy/triton/requirements.txt" in ignore


def test_the_triton_image_pins_every_library_the_models_import_as_constraints_does() -> None:
    wanted = _pins((TRITON_DIR / "requirements.txt").read_text())
    locked = _pins((REPO / "constraints.txt").read_text())
    assert {"pillow", "fsspec", "scikit-learn", "numpy", "joblib"} <= set(wanted)
    for name, version in wanted.items():
        assert locked.get(name) == version, (
            f"{name}=={version} in the Triton image, {locked.get(name)} in constraints.txt"
        )
    imported: set[str] = set()
    for file in MODEL_FILES:
        tree = ast.parse((REPO / "services" / "core" / file).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = {
        m
        for m in imported
        if m not in sys.stdlib_module_names
        and m not in ("__future__", "triton_python_backend_utils", *BUILD_TIME_ONLY)
    }
    missing = {m for m in third_party if DISTRIBUTIONS.get(m, m).lower() not in wanted}
    assert not missing, f"the models import {sorted(missing)}, which deploy/triton/requirements.txt lacks"


def _pods(docs: list[dict]) -> dict[str, dict]:
    return {
        d["metadata"]["name"].removeprefix("labelloop-"): d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] == "Deployment"
    }


def _env(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["containers"][0].get("env", [])}


def _media_mounts(pod: dict) -> list[dict]:
    return [m for m in pod["containers"][0].get("volumeMounts", []) if m["name"] == "media"]


def test_the_chart_shares_a_read_write_many_media_claim(helm: str) -> None:
    docs = manifests(helm_template(helm, None, KUBERNETES_VERSIONS[-1]))
    claims = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert claims["labelloop-media"]["spec"]["accessModes"] == ["ReadWriteMany"]
    pods = _pods(docs)
    for name in (*READERS, "triton"):
        (mount,) = _media_mounts(pods[name])
        assert mount["mountPath"] == "/media", name
        assert bool(mount.get("readOnly")) == (name != "ingest"), name
        (volume,) = [v for v in pods[name]["volumes"] if v["name"] == "media"]
        assert volume["persistentVolumeClaim"]["claimName"] == "labelloop-media", name
    assert not _media_mounts(pods["inference"]) and not _media_mounts(pods["routing"])
    for name in READERS:
        assert _env(pods[name])["LABELLOOP_MEDIA_ROOT"] == "file:///media", name
    own = _pods(
        manifests(helm_template(helm, None, KUBERNETES_VERSIONS[-1], "media.existingClaim=team-media"))
    )
    (volume,) = [v for v in own["retraining"]["volumes"] if v["name"] == "media"]
    assert volume["persistentVolumeClaim"]["claimName"] == "team-media"


def test_an_s3_media_root_mounts_no_volume_and_hands_its_credentials_to_the_readers(helm: str) -> None:
    docs = manifests(
        helm_template(
            helm,
            None,
            KUBERNETES_VERSIONS[-1],
            "media.root=s3://labelloop-bucket/media",
            "media.envFromSecrets[0]=media-s3",
        )
    )
    assert "labelloop-media" not in {
        d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"
    }
    pods = _pods(docs)

    def secrets(pod: dict) -> set[str]:
        return {e["secretRef"]["name"] for e in pod["containers"][0].get("envFrom", [])}

    for name in (*READERS, "triton"):
        assert not _media_mounts(pods[name]), name
        assert "media-s3" in secrets(pods[name]), name
    assert "media-s3" not in secrets(pods["routing"])
    for name in READERS:
        assert _env(pods[name])["LABELLOOP_MEDIA_ROOT"] == "s3://labelloop-bucket/media", name
