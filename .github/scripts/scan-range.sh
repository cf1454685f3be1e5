#!/usr/bin/env bash
# Which commits a CI run of keyburn scans: prints the `keyburn scan`
# arguments, one per line (none: the whole history of every ref).
#
#   pull_request  the commits the pull request adds: merge-base(base, HEAD)..HEAD
#   push          the pushed commits: BEFORE..HEAD; on a branch's first push
#                 (BEFORE all zeros) or a force-push whose old tip is gone,
#                 origin/DEFAULT_BRANCH..HEAD, or the whole history when that
#                 cannot be had (pushing the default branch itself)
#   FULL=true     the whole history, whatever the event
#
# Environment: EVENT, BEFORE, BASE_SHA, DEFAULT_BRANCH, FULL. Run inside the
# checkout (fetch-depth: 0, so that the bases are there).
set -euo pipefail

commit_exists() { [ -n "$1" ] && ! [[ "$1" =~ ^0+$ ]] && git cat-file -e "$1^{commit}" 2>/dev/null; }

range_from() { # a base commit -> its range arguments, if it is not HEAD itself
  if [ "$(git rev-parse "$1^{commit}")" != "$(git rev-parse HEAD)" ]; then
    printf '%s\n' --range "$1..HEAD"
  fi
}

default_base() { # origin/DEFAULT_BRANCH, when it exists and HEAD is not on it
  local ref="origin/${DEFAULT_BRANCH:-main}"
  if git rev-parse -q --verify "$ref^{commit}" >/dev/null; then
    range_from "$ref"
  fi
}

if [ "${FULL:-false}" = "true" ]; then
  exit 0
fi
case "${EVENT:-}" in
  pull_request | pull_request_target)
    if commit_exists "${BASE_SHA:-}"; then
      range_from "$(git merge-base "$BASE_SHA" HEAD)"
    else
      default_base
    fi
    ;;
  push)
    if commit_exists "${BEFORE:-}"; then
      range_from "$BEFORE"
    else
      default_base
    fi
    ;;
esac
