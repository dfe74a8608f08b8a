# Shared by scripts/ci/preview.sh and scripts/ci/up.sh (sourced, not run).
#
# Settings (environment):
#   GLIDEPATH_STACK            the stack to preview or update (required)
#   GLIDEPATH_WORK_DIR         the Pulumi project directory (default: the repository root)
#   PULUMI_BACKEND_URL         a self-managed backend (s3://..., file://...), or
#   PULUMI_ACCESS_TOKEN        Pulumi Cloud
#   PULUMI_CONFIG_PASSPHRASE   (or _FILE) for a stack whose secrets use a passphrase
#   GLIDEPATH_INIT_STACK=yes   create the stack in the backend if it does not exist
#   GLIDEPATH_SSH_PRIVATE_KEY  optional: set into the stack as a secret before the run,
#                              over what the stack file holds (read from stdin by pulumi,
#                              never on a command line); the same value in the preview and
#                              the up, so the plan still matches
#   GLIDEPATH_ROBOT_USER, GLIDEPATH_ROBOT_PASSWORD
#                              optional, the approved up only: the providers read them from
#                              their environment. Never set into the stack: the stack's
#                              config is part of the update plan, and a pull request's
#                              preview never has them
#   GLIDEPATH_PLAN_FILE        the update plan: preview.sh saves it, up.sh requires it
# Nothing here prints a secret; pulumi runs with --non-interactive and stdin closed, so a
# missing setting fails at once instead of waiting for a prompt nobody answers.

set -euo pipefail

CI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CI_DIR/../.." && pwd)
PULUMI=${PULUMI:-pulumi}
PYTHON=${PYTHON:-python3}
STACK=${GLIDEPATH_STACK:-}
WORK_DIR=${GLIDEPATH_WORK_DIR:-$REPO_ROOT}

die() {
  echo "glidepath-ci: $*" >&2
  exit 2
}

check_settings() {
  [[ -n "$STACK" ]] || die "GLIDEPATH_STACK is not set: name the stack to run"
  [[ -f "$WORK_DIR/Pulumi.yaml" ]] || die "no Pulumi.yaml in $WORK_DIR (GLIDEPATH_WORK_DIR)"
  command -v "$PULUMI" >/dev/null || die "the pulumi CLI ($PULUMI) is not on PATH"
  if [[ -z "${PULUMI_BACKEND_URL:-}" && -z "${PULUMI_ACCESS_TOKEN:-}" ]]; then
    die "set PULUMI_BACKEND_URL (a self-managed backend) or PULUMI_ACCESS_TOKEN (Pulumi Cloud)"
  fi
  local stack_file
  stack_file=$(stack_file)
  if [[ -f "$stack_file" ]] && grep -q '^encryptionsalt:' "$stack_file" &&
    [[ -z "${PULUMI_CONFIG_PASSPHRASE:-}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
    die "stack $STACK's secrets use a passphrase: set PULUMI_CONFIG_PASSPHRASE (a CI secret)"
  fi
}

stack_file() {
  # Pulumi.yaml's stackConfigDir (glidepath: stacks) holds Pulumi.<stack>.yaml.
  local dir
  dir=$(sed -n 's/^stackConfigDir:[[:space:]]*//p' "$WORK_DIR/Pulumi.yaml")
  echo "$WORK_DIR/${dir:-.}/Pulumi.$STACK.yaml"
}

run_pulumi() {
  # argv only; stdin closed: pulumi can never wait for an answer.
  "$PULUMI" --non-interactive "$@" --stack "$STACK" --cwd "$WORK_DIR" </dev/null
}

select_stack() {
  # A missing stack is created only when asked: a misspelt name must not deploy a new one.
  run_pulumi stack select >/dev/null 2>&1 && return 0
  [[ "${GLIDEPATH_INIT_STACK:-}" == yes ]] ||
    die "stack $STACK does not exist in the backend (GLIDEPATH_INIT_STACK=yes creates it)"
  run_pulumi stack init >/dev/null || die "cannot create stack $STACK"
}

set_secret() {
  # The value goes through stdin, so it is in no process list and no log.
  local key=$1 value=$2
  printf '%s' "$value" |
    "$PULUMI" --non-interactive config set --secret --path "$key" --stack "$STACK" \
      --cwd "$WORK_DIR" >/dev/null ||
    die "could not set $key as a secret"
  echo "glidepath-ci: $key set from the CI secret"
}

inject_secrets() {
  if [[ -n "${GLIDEPATH_SSH_PRIVATE_KEY:-}" ]]; then
    set_secret glidepath:ssh.private_key "$GLIDEPATH_SSH_PRIVATE_KEY"
  fi
}

plan_digest() {
  sha256sum "$1" | cut -d' ' -f1
}

scrub() {
  # Whatever reaches a log or a comment passes here (comment.py knows the secret names).
  "$PYTHON" "$CI_DIR/comment.py" scrub
}
