#!/usr/bin/env bash
# `deno task ok` on a macOS or Windows runner (.ci/run is the Linux path): builds the native
# libraries from the pinned source (no prebuilt package exists there), generates the test
# models and the chat page, then runs the checks. Tests that need something this machine lacks
# (a GPU, Chromium, pwsh, DENORT_BIN) skip with a printed reason.
set -euo pipefail
cd "$(dirname "$0")/../.."
export NO_COLOR=1
step() { printf '\n=== %s\n' "$*"; }
case "$(uname -s)" in
  Darwin) gpu=(--metal) ;;
  *) gpu=() ;;
esac
step "Native libraries from source"
scripts/build-libllama.sh --release "${gpu[@]}"
step "Test models"
deno task fixtures
step "Chat page"
deno task webui
step "deno task ok"
deno task ok
