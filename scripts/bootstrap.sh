#!/usr/bin/env bash
# One idempotent set-up for both README commands: Debian packages, the venv, and the
# Pulumi CLI, Python language host, helper scripts and command provider built from Go
# modules into .tools/bin. A second run only checks and takes seconds.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=versions.env
. scripts/versions.env

tools="$root/.tools"
bin="$tools/bin"
mkdir -p "$bin"

log() { printf 'bootstrap: %s\n' "$*"; }

# --- Debian packages ------------------------------------------------------------------
packages=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients
  libvirt-daemon-driver-qemu openssh-server openssh-client iptables iproute2 tcpdump
  busybox-static linux-image-amd64 iputils-ping libvirt-dev pkg-config gcc python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python virtualenv ----------------------------------------------------------------
stamp="$root/.venv/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python requirements (libvirt-python builds from source)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "$want" >"$stamp"
fi

# --- Go-built tools ---------------------------------------------------------------------
export GOFLAGS=-mod=mod CGO_ENABLED=0
build="$tools/build"
gobuild() { # gobuild OUTPUT VERSION_VAR VERSION PACKAGE
  (cd "$build" && go build -trimpath -tags osusergo,grpcnotrace \
    -ldflags "-X $2=$3" -o "$1" "$4")
}
ensure_build_module() {
  mkdir -p "$build"
  [ -f "$build/go.mod" ] || (cd "$build" && go mod init glidepath-tools >/dev/null 2>&1)
  (cd "$build" && go get "$@" >/dev/null)
}

have_version() { [ -x "$1" ] && "$1" version 2>/dev/null | grep -qx "$2"; }

if ! have_version "$bin/pulumi" "$PULUMI_CLI_VERSION"; then
  on_path=$(PATH=${PATH//$bin:/} command -v pulumi || true)
  if [ -n "$on_path" ] && have_version "$on_path" "$PULUMI_CLI_VERSION"; then
    log "using the pulumi $PULUMI_CLI_VERSION already on PATH: $on_path"
    ln -sf "$on_path" "$bin/pulumi"
    for f in "$(dirname "$on_path")"/pulumi-language-python*; do ln -sf "$f" "$bin/"; done
  else
    log "building the Pulumi CLI $PULUMI_CLI_VERSION from Go modules (several minutes the first time)"
    ensure_build_module "github.com/pulumi/pulumi/pkg/v3@$PULUMI_CLI_VERSION" \
      "github.com/pulumi/pulumi/sdk/v3@$PULUMI_CLI_VERSION"
    gobuild "$bin/pulumi" github.com/pulumi/pulumi/sdk/v3/go/common/version.Version \
      "$PULUMI_CLI_VERSION" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  fi
fi

if [ ! -x "$bin/pulumi-language-python" ] && [ -n "$PULUMI_LANGUAGE_PYTHON_MODULE_VERSION" ]; then
  log "building the Python language host ($PULUMI_LANGUAGE_PYTHON_MODULE_VERSION)"
  ensure_build_module "github.com/pulumi/pulumi/pkg/v3@$PULUMI_CLI_VERSION" \
    "github.com/pulumi/pulumi/sdk/v3@$PULUMI_CLI_VERSION" \
    "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3@$PULUMI_LANGUAGE_PYTHON_MODULE_VERSION"
  gobuild "$bin/pulumi-language-python" github.com/pulumi/pulumi/sdk/v3/go/common/version.Version \
    "$PULUMI_CLI_VERSION" github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
fi

if [ ! -x "$bin/pulumi-language-python" ] || grep -q 'engine.langhost' "$bin/pulumi-language-python"; then
  # No real language host could be had: install glidepath's minimal one (engine/langhost.py).
  cat >"$bin/pulumi-language-python" <<SHIM
#!/bin/sh
# glidepath's stand-in Python language host (README, Engine notes).
PYTHONPATH="$root\${PYTHONPATH:+:\$PYTHONPATH}" exec "$root/.venv/bin/python" -u -m engine.langhost "\$@"
SHIM
  chmod 0755 "$bin/pulumi-language-python"
fi

# The two scripts the engine runs beside the binaries; the module cache keeps them 0444.
sdk_dir=$(cd "$build" 2>/dev/null && go list -m -f '{{.Dir}}' "github.com/pulumi/pulumi/sdk/v3" 2>/dev/null || true)
if [ -z "$sdk_dir" ]; then
  ensure_build_module "github.com/pulumi/pulumi/sdk/v3@$PULUMI_CLI_VERSION"
  sdk_dir=$(cd "$build" && go list -m -f '{{.Dir}}' "github.com/pulumi/pulumi/sdk/v3")
fi
install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$bin/pulumi-language-python-exec"
install -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$bin/pulumi-resource-pulumi-python"

if [ ! -x "$bin/pulumi-resource-command" ] && [ -n "$PULUMI_COMMAND_MODULE_VERSION" ]; then
  log "building the command provider $PULUMI_COMMAND_VERSION ($PULUMI_COMMAND_MODULE_VERSION)"
  GOBIN="$bin" go install -trimpath \
    -ldflags "-X github.com/pulumi/pulumi-command/provider/pkg/version.Version=$PULUMI_COMMAND_VERSION" \
    "github.com/pulumi/pulumi-command/provider/cmd/pulumi-resource-command@$PULUMI_COMMAND_MODULE_VERSION"
fi

for missing_tool in pulumi-resource-command; do
  [ -x "$bin/$missing_tool" ] || log "note: $missing_tool is not available here (README, Engine notes)"
done
log "ready: pulumi $("$bin/pulumi" version)"
