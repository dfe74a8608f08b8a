#!/usr/bin/env bash
# CI, on the main branch before `up`: fetch the update plan that the merged pull request's
# preview saved, into GLIDEPATH_PLAN_FILE.
#
# GITHUB_SHA is the commit on main; GitHub names the pull request merged as that commit,
# and that pull request's head commit; the newest successful `pull_request` run of this
# workflow on that head holds the artifact `glidepath-plan-<stack>` (preview.sh saved it,
# the workflow uploaded it). Needs GH_TOKEN (actions: read, pull-requests: read), GH_REPO
# and GLIDEPATH_WORKFLOW (default glidepath.yml). Fails, so `up` never runs, when any of
# these is missing: a push to main that was no reviewed pull request has no plan.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -n "$STACK" ]] || die "GLIDEPATH_STACK is not set: name the stack to run"
[[ -n "${GLIDEPATH_PLAN_FILE:-}" ]] || die "GLIDEPATH_PLAN_FILE is not set: where to put the plan"
[[ -n "${GITHUB_SHA:-}" && -n "${GH_REPO:-}" ]] || die "GITHUB_SHA and GH_REPO must be set"
workflow=${GLIDEPATH_WORKFLOW:-glidepath.yml}
artifact="glidepath-plan-$STACK"

pull=$(gh api "repos/$GH_REPO/commits/$GITHUB_SHA/pulls" \
  --jq '[.[] | select(.merged_at != null)][0] | "\(.number) \(.head.sha)"' </dev/null) ||
  die "cannot ask GitHub which pull request $GITHUB_SHA merged"
read -r number head <<<"$pull"
[[ -n "${number:-}" && "$number" != null && -n "${head:-}" ]] ||
  die "commit $GITHUB_SHA merged no pull request: there is no reviewed plan to run"

run_id=$(gh run list --workflow "$workflow" --commit "$head" --event pull_request \
  --status success --limit 1 --json databaseId --jq '.[0].databaseId' </dev/null) ||
  die "cannot list the runs of $workflow for pull request #$number"
[[ -n "$run_id" && "$run_id" != null ]] ||
  die "pull request #$number (head ${head:0:12}) has no successful preview run of $workflow"

download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
gh run download "$run_id" --name "$artifact" --dir "$download" </dev/null >/dev/null ||
  die "run $run_id of pull request #$number has no artifact $artifact"
saved=$(find "$download" -type f -name '*.json' | head -n 2)
[[ -n "$saved" && "$(wc -l <<<"$saved")" -eq 1 ]] ||
  die "artifact $artifact of run $run_id does not hold exactly one plan"
mkdir -p "$(dirname "$GLIDEPATH_PLAN_FILE")"
cp "$saved" "$GLIDEPATH_PLAN_FILE"
echo "glidepath-ci: plan $(plan_digest "$GLIDEPATH_PLAN_FILE") (sha256) of pull request" \
  "#$number (head ${head:0:12}, run $run_id)"
