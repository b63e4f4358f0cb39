#!/usr/bin/env bash
# Publishes a release folder (archives, SHA256SUMS, install scripts) as the GitHub release TAG,
# creating the release if it does not exist and replacing assets of the same name.
#
# Usage: scripts/ci/publish.sh TAG [DIR]      (DIR defaults to dist/release)
#
# Needs GH_TOKEN (the workflow's token). Environment: GH overrides the gh command (tests).
set -euo pipefail
tag=${1:?usage: publish.sh TAG [DIR]}
dir=${2:-dist/release}
gh=${GH:-gh}
[ -f "$dir/SHA256SUMS" ] || { echo "publish: $dir/SHA256SUMS is missing; run deno task release sums" >&2; exit 1; }
# Every archive must be listed in SHA256SUMS and match it.
(cd "$dir" && sha256sum -c --strict SHA256SUMS >&2)
for file in "$dir"/shimmy-*; do
  grep -q " $(basename "$file")\$" "$dir/SHA256SUMS" ||
    { echo "publish: $(basename "$file") is not in SHA256SUMS" >&2; exit 1; }
done
if ! "$gh" release view "$tag" >/dev/null 2>&1; then
  "$gh" release create "$tag" --title "Shimmy $tag" --generate-notes --verify-tag
fi
"$gh" release upload "$tag" "$dir"/shimmy-* "$dir/SHA256SUMS" "$dir/install.sh" "$dir/install.ps1" --clobber
echo "publish: released $tag" >&2
