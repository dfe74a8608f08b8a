#!/usr/bin/env bash
# CI, on a pull request: `pulumi preview --diff` of one stack, posted as a PR comment.
#
# Besides lib.sh's settings: GLIDEPATH_PR_NUMBER (the pull request to comment on; without
# it the comment is only printed), GH_TOKEN and GH_REPO for `gh`, GITHUB_SHA and
# GLIDEPATH_RUN_URL (named in the comment), GLIDEPATH_PLAN_FILE (where to save the preview as
# an update plan: the workflow keeps it as an artifact, and the deploy after the merge runs
# it with `pulumi up --plan`, scripts/ci/up.sh). Exits with the preview's status, so a
# failed pre-flight fails the check as well as showing up in the comment.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

check_settings
select_stack
inject_secrets

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
save_plan=()
if [[ -n "${GLIDEPATH_PLAN_FILE:-}" ]]; then
  rm -f "$GLIDEPATH_PLAN_FILE" # never leave an older plan where this one was expected
  mkdir -p "$(dirname "$GLIDEPATH_PLAN_FILE")"
  save_plan=(--save-plan "$GLIDEPATH_PLAN_FILE")
fi
# With --diff the CLI writes the providers' lines (the move, pre-flight) to stderr: keep
# both streams, in order, in one log.
run_pulumi preview --diff --color never --suppress-progress "${save_plan[@]}" \
  >"$out/preview.log" 2>&1 || status=$?
if [[ "$status" -ne 0 && -n "${GLIDEPATH_PLAN_FILE:-}" ]]; then
  rm -f "$GLIDEPATH_PLAN_FILE" # a failed preview is no plan anyone can approve
fi
scrub <"$out/preview.log"
"$PYTHON" "$CI_DIR/comment.py" body --stack "$STACK" --status "$status" \
  --log "$out/preview.log" --commit "${GITHUB_SHA:-}" --run-url "${GLIDEPATH_RUN_URL:-}" \
  >"$out/comment.md"
if [[ "$status" -eq 0 && -n "${GLIDEPATH_PLAN_FILE:-}" ]]; then
  [[ -s "$GLIDEPATH_PLAN_FILE" ]] || die "pulumi preview wrote no plan to $GLIDEPATH_PLAN_FILE"
  printf '\nSaved as the update plan `%s` (sha256): after the merge, `pulumi up` runs this plan and refuses anything else.\n' \
    "$(plan_digest "$GLIDEPATH_PLAN_FILE")" >>"$out/comment.md"
fi
if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
  cat "$out/comment.md" >>"$GITHUB_STEP_SUMMARY"
fi
if [[ -n "${GLIDEPATH_PR_NUMBER:-}" ]]; then
  gh pr comment "$GLIDEPATH_PR_NUMBER" --body-file "$out/comment.md" >/dev/null ||
    die "could not comment on pull request #$GLIDEPATH_PR_NUMBER"
  echo "glidepath-ci: preview posted on pull request #$GLIDEPATH_PR_NUMBER"
else
  echo "glidepath-ci: no GLIDEPATH_PR_NUMBER; the comment would have been:"
  cat "$out/comment.md"
fi
exit "$status"
