#!/usr/bin/env bash
# One idempotent set-up for both README commands: Debian packages, the venv, and in
# .tools/bin the Pulumi CLI (built from Go modules), the Python language host and the
# command provider (built from the upstream sources in ../shared/vendor), the two helper
# scripts the engine runs beside them, and versitygw (the tests' S3 server). One line per
# step with its duration; a step's own output is shown only when it fails. A second run
# only checks (about 1 s).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=versions.env
. scripts/versions.env

tools="$root/.tools"
bin="$tools/bin"
logs="$tools/logs"
# Read-only upstream sources of the two plugins the module proxy does not serve; they
# are built from a writable copy under .tools/src (never edited, never tracked by git).
vendor=$(realpath -m "${GLIDEPATH_VENDOR_DIR:-$root/../shared/vendor}")
mkdir -p "$bin" "$logs"
export GOFLAGS=-mod=mod CGO_ENABLED=0

log() { printf 'bootstrap: %s\n' "$*"; }
clock() { echo "${EPOCHREALTIME//[!0-9]/}"; } # microseconds
seconds_since() { # seconds_since START_US: "12.3"
  local tenths=$((($(clock) - $1 + 50000) / 100000))
  printf '%d.%d' $((tenths / 10)) $((tenths % 10))
}
note() { printf '%s' "$*" >"$logs/note"; } # a step's action: how it did it, for its line

# step LABEL CHECK ACTION: unless CHECK holds, run ACTION with its output captured, then
# require CHECK. Prints one line; on failure the action's output too, and exits 1.
step() {
  local label=$1 check=$2 action=$3 start rc out="$logs/$3.log" how
  if "$check"; then
    log "$label ... ok (already there)"
    return 0
  fi
  start=$(clock)
  : >"$logs/note"
  set +e
  (set -e; "$action") >"$out" 2>&1 </dev/null
  rc=$?
  set -e
  if [ "$rc" -eq 0 ] && ! "$check"; then
    echo "it finished, but the result does not pass the check ($check)" >>"$out"
    rc=1
  fi
  if [ "$rc" -ne 0 ]; then
    if [ ! -s "$out" ]; then
      log "$label ... FAILED after $(seconds_since "$start") s (exit status $rc, no output)" >&2
    elif [ "$(wc -l <"$out")" -le 1 ]; then
      log "$label ... FAILED after $(seconds_since "$start") s: $(cat "$out")" >&2
    else
      log "$label ... FAILED after $(seconds_since "$start") s; its output:" >&2
      cat "$out" >&2
    fi
    exit 1
  fi
  how=$(cat "$logs/note")
  log "$label ... $(seconds_since "$start") s${how:+ ($how)}"
}

total_start=$(clock)

# --- Debian packages ------------------------------------------------------------------
packages=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients
  libvirt-daemon-driver-qemu openssh-server openssh-client iptables iproute2 tcpdump
  busybox-static linux-image-amd64 iputils-ping libvirt-dev pkg-config gcc python3-venv)
missing_packages() {
  local -A installed=()
  local name status
  while read -r name status; do
    if [ "$status" = "install ok installed" ]; then installed[$name]=1; fi
  done < <(dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>/dev/null || true)
  for name in "${packages[@]}"; do
    [ -n "${installed[$name]:-}" ] || echo "$name"
  done
}
debian_packages_ok() { [ -z "$(missing_packages)" ]; }
install_debian_packages() {
  local missing
  mapfile -t missing < <(missing_packages)
  note "installed ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}
step "Debian packages" debian_packages_ok install_debian_packages

# --- Python virtualenv ----------------------------------------------------------------
stamp="$root/.venv/.requirements.sha256"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
venv_ok() { [ -x .venv/bin/python ]; }
create_venv() { python3 -m venv .venv; }
step "venv" venv_ok create_venv

requirements_ok() { [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; }
install_requirements() {
  note "libvirt-python builds from source"
  .venv/bin/python -m pip install --upgrade pip
  .venv/bin/python -m pip install -r requirements.txt
  echo "$want" >"$stamp"
}
step "Python requirements" requirements_ok install_requirements

# --- The Pulumi CLI ---------------------------------------------------------------------
have_version() { [ -x "$1" ] && [ "$("$1" version 2>/dev/null)" = "$2" ]; }
cli_ok() { have_version "$bin/pulumi" "$PULUMI_CLI_VERSION"; }
build_cli() {
  local on_path build="$tools/build"
  on_path=$(PATH=${PATH//$bin:/} command -v pulumi || true)
  if [ -n "$on_path" ] && have_version "$on_path" "$PULUMI_CLI_VERSION"; then
    note "the one on PATH: $on_path"
    ln -sfn "$on_path" "$bin/pulumi"
    return 0
  fi
  note "built from Go modules"
  mkdir -p "$build"
  cd "$build"
  [ -f go.mod ] || go mod init glidepath-tools
  go get "github.com/pulumi/pulumi/pkg/v3@$PULUMI_CLI_VERSION" \
    "github.com/pulumi/pulumi/sdk/v3@$PULUMI_CLI_VERSION"
  go build -trimpath -tags osusergo,grpcnotrace \
    -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_CLI_VERSION" \
    -o "$bin/pulumi.new" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  mv -f "$bin/pulumi.new" "$bin/pulumi"
}
step "Pulumi CLI $PULUMI_CLI_VERSION" cli_ok build_cli

# --- The two plugins, built from ../shared/vendor (the language host: or taken from a
# normal Pulumi install on PATH, which ships it beside `pulumi`).
# The folder of the `pulumi` install on PATH that .tools/bin/pulumi links to, if any.
path_install() {
  [ -L "$bin/pulumi" ] || return 1
  dirname "$(readlink -f "$bin/pulumi")"
}
# build_vendored NAME OUTPUT LDFLAG PACKAGE: SOURCE.md's build, from a writable copy.
build_vendored() {
  local src="$vendor/$1" copy="$tools/src/$1"
  if [ ! -f "$src/go.mod" ]; then
    echo "no source to build $1 from: $src/go.mod is missing (GLIDEPATH_VENDOR_DIR names the vendor folder; default ../shared/vendor)"
    return 1
  fi
  note "built from $src"
  rm -rf "$copy"
  mkdir -p "$tools/src"
  cp -R "$src" "$copy"
  chmod -R u+w "$copy"
  cd "$copy"
  # -buildvcs=false: the copy sits inside glidepath's git checkout, whose commit is not
  # the plugin's.
  go build -trimpath -buildvcs=false -ldflags "-X $3" -o "$2.new" "$4"
  mv -f "$2.new" "$2"
}

# The real, Go-built language host (an ELF binary, not a script) of the CLI's version.
language_host_is_real() {
  local magic=
  [ -f "$1" ] && [ -x "$1" ] || return 1
  IFS= read -r -n 4 -d '' magic <"$1" || true
  [ "$magic" = $'\x7fELF' ] && [ "$("$1" -version 2>/dev/null)" = "$PULUMI_CLI_VERSION" ]
}
language_host_ok() { language_host_is_real "$bin/pulumi-language-python"; }
build_language_host() {
  local dir
  rm -f "$bin/pulumi-language-python" # also a shell shim an older bootstrap left
  if dir=$(path_install) && language_host_is_real "$dir/pulumi-language-python"; then
    note "from the install on PATH: $dir"
    ln -sfn "$dir/pulumi-language-python" "$bin/pulumi-language-python"
    return 0
  fi
  build_vendored pulumi-language-python "$bin/pulumi-language-python" \
    "github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_CLI_VERSION" .
}
step "language host $PULUMI_CLI_VERSION" language_host_ok build_language_host

# The command provider goes into the CLI's plugin cache (PULUMI_HOME, as engine/ sets
# it), where the engine finds it by version: on PATH it would be an "ambient" plugin,
# with a warning on every run.
pulumi_home="$tools/pulumi-home"
command_provider_ok() {
  PULUMI_HOME="$pulumi_home" "$bin/pulumi" plugin ls --json 2>/dev/null |
    .venv/bin/python -c 'import json, sys
want = sys.argv[1].lstrip("v")
found = [p for p in json.load(sys.stdin) if (p["kind"], p["name"], p["version"]) == ("resource", "command", want)]
sys.exit(0 if found else 1)' "$PULUMI_COMMAND_VERSION"
}
build_command_provider() {
  local built="$tools/src/pulumi-resource-command"
  rm -f "$bin/pulumi-resource-command" "$tools/stamps/pulumi-resource-command" # older layout
  build_vendored pulumi-command "$built" \
    "github.com/pulumi/pulumi-command/provider/pkg/version.Version=$PULUMI_COMMAND_VERSION" \
    ./provider/cmd/pulumi-resource-command
  PULUMI_HOME="$pulumi_home" "$bin/pulumi" plugin install resource command \
    "$PULUMI_COMMAND_VERSION" --file "$built" --reinstall
}
step "command provider $PULUMI_COMMAND_VERSION" command_provider_ok build_command_provider

# --- The two scripts the engine runs beside the binaries, from the sdk/v3 module --------
# (the module cache keeps them read-only and not executable).
sdk_module="github.com/pulumi/pulumi/sdk/v3@$PULUMI_CLI_VERSION"
helpers=(cmd/pulumi-language-python-exec dist/pulumi-resource-pulumi-python)
helpers_ok() {
  local sdk h
  sdk="$(go env GOMODCACHE)/$sdk_module/python"
  for h in "${helpers[@]}"; do
    [ -x "$bin/${h#*/}" ] && [ ! -L "$bin/${h#*/}" ] && cmp -s "$sdk/$h" "$bin/${h#*/}" || return 1
  done
}
install_helpers() {
  local sdk h
  GOFLAGS= go mod download "$sdk_module"
  sdk="$(go env GOMODCACHE)/$sdk_module/python"
  for h in "${helpers[@]}"; do
    rm -f "$bin/${h#*/}"
    install -m 0755 "$sdk/$h" "$bin/${h#*/}"
  done
}
step "helper scripts" helpers_ok install_helpers

# --- The S3-compatible server the team-backend tests keep their state on --------------
# versitygw (Apache-2.0, Versity's production S3 gateway) with its posix backend: a real
# S3 server on loopback, started and stopped by the tests (tests/support/s3_server.py).
# docs/gitops.md says why this one and not SeaweedFS or s3proxy.
s3_server_ok() {
  [ -x "$bin/versitygw" ] &&
    [ "$("$bin/versitygw" --version 2>/dev/null | sed -n 's/^Version *: *//p')" = "$VERSITYGW_VERSION" ]
}
build_s3_server() {
  note "built from Go modules"
  mkdir -p "$tools/build/versitygw"
  GOFLAGS= GOBIN="$tools/build/versitygw" go install -trimpath \
    -ldflags "-s -w -X main.Version=$VERSITYGW_VERSION" \
    "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  mv -f "$tools/build/versitygw/versitygw" "$bin/versitygw"
}
step "S3 server versitygw $VERSITYGW_VERSION" s3_server_ok build_s3_server

log "ready in $(seconds_since "$total_start") s: pulumi and pulumi-language-python" \
  "$PULUMI_CLI_VERSION and versitygw $VERSITYGW_VERSION in .tools/bin, the command provider" \
  "$PULUMI_COMMAND_VERSION in the plugin cache"
