#!/usr/bin/env bash
# Installs the Shimmy executable for this machine from a GitHub release.
#
# Usage: install.sh [--flavour auto|cpu|cuda|vulkan] [--version vX.Y.Z] [--dir DIR]
#
#   --flavour   which build: auto (default) picks cuda when nvidia-smi sees a GPU, else vulkan
#               when vulkaninfo lists a GPU, else cpu. macOS arm64 always gets the Metal build.
#   --version   a release tag (default: the latest release)
#   --dir       install folder (default: ~/.local/bin)
#
# The download is checked against the release's SHA256SUMS before anything is installed.
#
# Environment (each overrides the matching detection or default):
#   SHIMMY_REPO              owner/name on GitHub (default: the repository this script came from)
#   SHIMMY_INSTALL_BASE_URL  release URL prefix (default: https://github.com/$SHIMMY_REPO/releases)
#   SHIMMY_INSTALL_DIR, SHIMMY_VERSION, SHIMMY_FLAVOUR
#   SHIMMY_OS, SHIMMY_ARCH   instead of uname -s / uname -m
set -euo pipefail

REPO=${SHIMMY_REPO:-__SHIMMY_REPO__}
BASE_URL=${SHIMMY_INSTALL_BASE_URL:-https://github.com/$REPO/releases}
# `deno task release installers --repo owner/name` fills in the placeholder on publishing
# (spelled in two halves here, so that this check survives the filling in).
case "$BASE_URL" in
  *__SHIMMY_"REPO__"*) echo "install.sh: set SHIMMY_REPO=owner/name (the GitHub repository)" >&2; exit 1 ;;
esac
dir=${SHIMMY_INSTALL_DIR:-$HOME/.local/bin}
version=${SHIMMY_VERSION:-latest}
flavour=${SHIMMY_FLAVOUR:-auto}

fail() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --flavour) [ $# -ge 2 ] || fail "--flavour needs a value"; flavour=$2; shift ;;
    --flavour=*) flavour=${1#*=} ;;
    --version) [ $# -ge 2 ] || fail "--version needs a value"; version=$2; shift ;;
    --version=*) version=${1#*=} ;;
    --dir) [ $# -ge 2 ] || fail "--dir needs a value"; dir=$2; shift ;;
    --dir=*) dir=${1#*=} ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown option $1 (see --help)" ;;
  esac
  shift
done
case "$flavour" in
  auto|cpu|cuda|vulkan) ;;
  *) fail "--flavour must be auto, cpu, cuda or vulkan, not $flavour" ;;
esac

case "${SHIMMY_OS:-$(uname -s)}" in
  Linux|linux) os=linux ;;
  Darwin|darwin|macos) os=macos ;;
  MINGW*|MSYS*|CYGWIN*|windows) fail "on Windows, use install.ps1 (see the README)" ;;
  *) fail "no release for OS $(uname -s); build from source (see the README)" ;;
esac
case "${SHIMMY_ARCH:-$(uname -m)}" in
  x86_64|amd64|x64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) fail "no release for CPU $(uname -m); build from source (see the README)" ;;
esac

# Which GPU builds exist for this OS and CPU.
gpu_builds=""
[ "$os-$arch" = linux-x64 ] && gpu_builds="cuda vulkan"

has_nvidia() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; }
has_vulkan() {
  command -v vulkaninfo >/dev/null 2>&1 &&
    vulkaninfo --summary 2>/dev/null | grep -E 'deviceType *= *PHYSICAL_DEVICE_TYPE_(DISCRETE|INTEGRATED)_GPU' >/dev/null
}

if [ "$flavour" = auto ]; then
  flavour=cpu
  if [ -n "$gpu_builds" ]; then
    if has_nvidia; then flavour=cuda; elif has_vulkan; then flavour=vulkan; fi
  fi
  say "detected $os-$arch, flavour $flavour"
elif [ "$flavour" != cpu ]; then
  case " $gpu_builds " in
    *" $flavour "*) ;;
    *) fail "there is no $flavour build for $os-$arch (available: cpu${gpu_builds:+ $gpu_builds})" ;;
  esac
fi

asset=shimmy-$os-$arch
[ "$flavour" != cpu ] && asset=$asset-$flavour
archive=$asset.tar.gz
if [ "$version" = latest ]; then url=$BASE_URL/latest/download; else url=$BASE_URL/download/$version; fi

download() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    fail "needs curl or wget"
  fi
}
sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shimmy-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

say "downloading $url/$archive"
download "$url/$archive" "$tmp/$archive" || fail "cannot download $url/$archive"
download "$url/SHA256SUMS" "$tmp/SHA256SUMS" || fail "cannot download $url/SHA256SUMS"
expected=$(awk -v name="$archive" '$2 == name || $2 == "*" name { print $1 }' "$tmp/SHA256SUMS")
[ -n "$expected" ] || fail "SHA256SUMS has no line for $archive"
actual=$(sha256 "$tmp/$archive")
[ "$actual" = "$expected" ] ||
  fail "checksum mismatch for $archive (expected $expected, got $actual); nothing was installed"
say "checksum OK ($actual)"

mkdir -p "$tmp/x"
tar -xzf "$tmp/$archive" -C "$tmp/x"
[ -f "$tmp/x/shimmy" ] || fail "$archive holds no shimmy executable"
mkdir -p "$dir"
# Copy beside the target, then rename: a running shimmy is never half overwritten.
cp "$tmp/x/shimmy" "$dir/.shimmy.new.$$"
chmod 755 "$dir/.shimmy.new.$$"
mv -f "$dir/.shimmy.new.$$" "$dir/shimmy"
say "installed $dir/shimmy ($asset, ${version})"

case ":$PATH:" in
  *":$dir:"*) say "run: shimmy serve --model /path/to/model.gguf" ;;
  *) say "$dir is not on your PATH; add it, e.g.: echo 'export PATH=\"$dir:\$PATH\"' >> ~/.profile" ;;
esac
