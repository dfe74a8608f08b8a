#!/usr/bin/env bash
# CI, on the main branch after approval: `pulumi up` of one stack.
#
# Refuses to run anywhere else: GITHUB_REF must be the deploy branch (refs/heads/main, or
# GLIDEPATH_DEPLOY_BRANCH) and GLIDEPATH_DEPLOY_ENVIRONMENT must be `production`, which
# the workflow sets only on the job that declares `environment: production` (the job
# GitHub holds until a reviewer approves). Besides lib.sh's settings.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

branch=${GLIDEPATH_DEPLOY_BRANCH:-main}
[[ "${GITHUB_REF:-}" == "refs/heads/$branch" ]] ||
  die "refusing pulumi up: it runs on $branch only (GITHUB_REF=${GITHUB_REF:-unset})"
[[ "${GITHUB_EVENT_NAME:-}" != pull_request* ]] ||
  die "refusing pulumi up: not from a pull request event"
[[ "${GLIDEPATH_DEPLOY_ENVIRONMENT:-}" == production ]] ||
  die "refusing pulumi up: only in the approved job (environment: production sets GLIDEPATH_DEPLOY_ENVIRONMENT)"

plan=${GLIDEPATH_PLAN_FILE:-}
[[ -n "$plan" && -s "$plan" ]] ||
  die "refusing pulumi up: no approved plan (GLIDEPATH_PLAN_FILE=${plan:-unset}): it runs only what a reviewed preview saved"

check_settings
select_stack
inject_secrets

echo "glidepath-ci: running the approved plan $(plan_digest "$plan") (sha256)"
status=0
# The engine relays each provider's progress lines as they happen (the migration's
# progress, the cutover's first packet); the log is the record of the move.
run_pulumi up --yes --plan "$plan" --color never --suppress-progress 2>&1 | scrub ||
  status=$?
exit "$status"
