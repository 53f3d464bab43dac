#!/usr/bin/env bash
# Fails when the source tree holds files that git neither tracks nor
# ignores: whatever builds, benchmarks and tests leave behind must land in an
# ignored directory (build*/, see .gitignore) or in their own temporary work
# directory. scripts/dev.sh test runs it after every stage.
#   scripts/check-tree.sh [--before FILE]
# With --before, FILE lists the untracked files present before the run
# (`git ls-files --others --exclude-standard`); the report then says which
# ones this run left. Exits 0 (clean, or not a git checkout: skipped with a
# message), 1 (untracked files).
set -euo pipefail
cd "$(dirname "$0")/.."
before=
if [[ ${1:-} == --before ]]; then before=${2:?--before needs a file}; fi
if ! command -v git >/dev/null ||
   [[ $(git rev-parse --is-inside-work-tree 2>/dev/null) != true ]]; then
  echo "check-tree: SKIP: not a git checkout, cannot tell sources from leftovers"
  exit 0
fi
left=$(git ls-files --others --exclude-standard)
if [[ -z $left ]]; then
  echo "check-tree: the tree holds only tracked or ignored files"
  exit 0
fi
echo "check-tree: FAIL: untracked files in the tree (commit them, remove them," >&2
echo "  or make whatever writes them use its work directory or an ignored one):" >&2
while IFS= read -r f; do
  if [[ -n $before ]] && grep -qxF -- "$f" "$before"; then
    echo "  $f (there before this run)" >&2
  else
    echo "  $f" >&2
  fi
done <<<"$left"
exit 1
