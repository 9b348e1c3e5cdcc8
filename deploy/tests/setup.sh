#!/usr/bin/env bash
# Installs what the deploy tests need, caching into deploy/.cache/ (safe to rerun; each step is
# skipped while its stamp still matches):
#
#   helm, kubeconform              <- Go module proxy (go install, pinned versions)
#   Kubernetes JSON schemas        <- PyPI (the kubernetes-validate wheel carries them; kubeconform's
#                                     own default location is GitHub, which CI does not reach)
#   pytest, PyYAML, confluent-kafka <- PyPI, via requirements.txt
#   podman, musl-tools, musl target <- Debian / rustup, for the image test (skipped when they fail)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="$HERE/../.cache"
mkdir -p "$CACHE/bin"
CACHE="$(cd "$CACHE" && pwd)"

HELM_VERSION=v4.3.2
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_VALIDATE_VERSION=1.37.0
# The Kubernetes version manifests are checked against (a schema set the wheel carries).
KUBERNETES_VERSION=1.33.0

log() { echo "[deploy-setup] $*" >&2; }
stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

# ---- helm and kubeconform ---------------------------------------------------------------------------
tools="helm@$HELM_VERSION kubeconform@$KUBECONFORM_VERSION"
if ! stamp_ok "$CACHE/go-tools.stamp" "$tools" || [[ ! -x "$CACHE/bin/helm" || ! -x "$CACHE/bin/kubeconform" ]]; then
    log "go install helm $HELM_VERSION, kubeconform $KUBECONFORM_VERSION"
    GOBIN="$CACHE/bin" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
    GOBIN="$CACHE/bin" go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
    echo "$tools" > "$CACHE/go-tools.stamp"
fi

# ---- Python venv --------------------------------------------------------------------------------------
VENV="$CACHE/venv"
req_hash=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if ! stamp_ok "$CACHE/venv.stamp" "$req_hash" || [[ ! -x "$VENV/bin/python" ]]; then
    log "python venv from requirements.txt"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
    echo "$req_hash" > "$CACHE/venv.stamp"
fi

# ---- Kubernetes schemas -------------------------------------------------------------------------------
schemas="$CACHE/kubernetes-json-schema"
want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION v$KUBERNETES_VERSION standalone-$(sha256sum "$HERE/standalone_schemas.py" | cut -c1-16)"
if ! stamp_ok "$CACHE/schemas.stamp" "$want"; then
    log "Kubernetes v$KUBERNETES_VERSION JSON schemas from kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
    tmp=$(mktemp -d)
    "$VENV/bin/pip" download -q --no-deps -d "$tmp" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    rm -rf "$schemas"
    mkdir -p "$schemas"
    (cd "$tmp" && python3 -m zipfile -e kubernetes_validate-*.whl unpacked)
    python3 "$HERE/standalone_schemas.py" \
        "$tmp/unpacked/kubernetes_validate/kubernetes-json-schema/v$KUBERNETES_VERSION-local-strict" \
        "$schemas/v$KUBERNETES_VERSION-standalone-strict"
    rm -rf "$tmp"
    echo "$want" > "$CACHE/schemas.stamp"
fi
echo "$KUBERNETES_VERSION" > "$CACHE/kubernetes-version"

# ---- the image build: podman, a musl C compiler, Rust's musl target ------------------------------------
# Best effort: the image test says what is missing and skips when any of these is unavailable.
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v musl-gcc >/dev/null || missing+=(musl-tools)
    # crun, podman's default runtime, refuses hybrid cgroup hierarchies; the test falls back to runc.
    command -v runc >/dev/null || missing+=(runc)
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "apt-get install ${missing[*]}"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
            >/dev/null 2>&1 || log "could not install ${missing[*]}; the image test will skip"
    fi
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    log "rustup target add x86_64-unknown-linux-musl"
    rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 \
        || log "could not add the musl target; the image test will skip"
fi
log "ready"
