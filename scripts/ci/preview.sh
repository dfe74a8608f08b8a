#!/usr/bin/env bash
# CI, on a pull request: `pulumi preview --diff` of one stack, posted as a PR comment.
#
# Besides lib.sh's settings: GLIDEPATH_PR_NUMBER (the pull request to comment on; without
# it the comment is only printed), GH_TOKEN and GH_REPO for `gh`, GITHUB_SHA and
# GLIDEPATH_RUN_URL (named in the comment). Exits with the preview's status, so a failed
# pre-flight fails the check as well as showing up in the comment.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

check_settings
select_stack
inject_secrets

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
# With --diff the CLI writes the providers' lines (the move, pre-flight) to stderr: keep
# both streams, in order, in one log.
run_pulumi preview --diff --color never --suppress-progress >"$out/preview.log" 2>&1 ||
  status=$?
scrub <"$out/preview.log"
"$PYTHON" "$CI_DIR/comment.py" body --stack "$STACK" --status "$status" \
  --log "$out/preview.log" --commit "${GITHUB_SHA:-}" --run-url "${GLIDEPATH_RUN_URL:-}" \
  >"$out/comment.md"
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
