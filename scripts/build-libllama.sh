#!/usr/bin/env bash
# Builds libllama (and optionally llama.cpp's reference tools) from the llama.cpp source
# pinned by node-llama-cpp@3.22.1 (its llama/gitRelease.bundle, tag v0.5.0).
#
# Usage: scripts/build-libllama.sh [--cuda] [--vulkan] [--metal] [--native] [--release]
#                                  [--bundle-cuda-runtime] [--reference-tools] [--source-only]
#                                  [--out DIR] [--cuda-arch LIST] [--jobs N] [--dry-run]
#
#   --cuda / --vulkan / --metal  build that GPU backend (output lib/<os>-<arch>-<gpu>)
#   --native                     tune the CPU backend for this machine (-march=native)
#   --release                    portable build for a release: on x64 (and arm64 Linux) every
#                                CPU variant as a loadable backend, picked at run time
#   --bundle-cuda-runtime        copy the CUDA runtime and cuBLAS libraries into the output,
#                                so the release runs where only the NVIDIA driver is installed
#   --dry-run                    print the cmake configure command and stop
#   Windows: run from Git Bash inside an MSVC developer environment; Ninja is used when present.
#   macOS: --metal embeds the Metal shaders in the library (no .metal file to ship).
#   --reference-tools            also build llama-simple, llama-server and llama-bench
#                                into <out>/bin (oracle tests and bench/)
#   --source-only                only fetch and unpack the source into .cache/ (headers,
#                                vocab GGUFs); build nothing
#   --out DIR                    install directory (default lib/<os>-<arch>[-<gpu>])
#   --cuda-arch LIST             CMAKE_CUDA_ARCHITECTURES (default: SHIMMY_CUDA_ARCH, else 90
#                                for Hopper)
#   --jobs N                     parallel compile jobs (default: all cores)
#
# Environment: SHIMMY_CACHE_DIR (default .cache) keeps the source and build trees, so a
# second run only rebuilds what changed. Idempotent.
set -euo pipefail

NLC_VERSION=3.22.1
LLAMA_TAG=v0.5.0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SHIMMY_CACHE_DIR:-$ROOT/.cache}
SRC=$CACHE/llama.cpp-$LLAMA_TAG

gpu="" native=0 tools=0 source_only=0 out="" cuda_arch=${SHIMMY_CUDA_ARCH:-90} release=0 bundle_cuda=0 dry_run=0
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) gpu=cuda ;;
    --vulkan) gpu=vulkan ;;
    --metal) gpu=metal ;;
    --native) native=1 ;;
    --release) release=1 ;;
    --bundle-cuda-runtime) bundle_cuda=1 ;;
    --dry-run) dry_run=1 ;;
    --reference-tools) tools=1 ;;
    --source-only) source_only=1 ;;
    --out) out=$2; shift ;;
    --cuda-arch) cuda_arch=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-libllama: unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
  shift
done

step() { printf '\n==> %s\n' "$*" >&2; }

fetch_source() {
  if [ -f "$SRC/include/llama.h" ] && [ -f "$SRC/.shimmy-source-ok" ]; then
    step "llama.cpp $LLAMA_TAG source already in $SRC"
    return
  fi
  mkdir -p "$CACHE"
  local tarball=$CACHE/node-llama-cpp-$NLC_VERSION.tgz
  if [ ! -s "$tarball" ]; then
    step "Downloading node-llama-cpp@$NLC_VERSION (carries the llama.cpp source bundle)"
    if command -v npm >/dev/null 2>&1; then
      (cd "$CACHE" && npm pack --silent "node-llama-cpp@$NLC_VERSION" >/dev/null)
    else
      local registry=${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org}
      curl -fsSL "${registry%/}/node-llama-cpp/-/node-llama-cpp-$NLC_VERSION.tgz" -o "$tarball"
    fi
  fi
  step "Unpacking the git bundle"
  local unpack=$CACHE/node-llama-cpp-$NLC_VERSION
  rm -rf "$unpack" "$SRC"
  mkdir -p "$unpack"
  tar xzf "$tarball" -C "$unpack" package/llama/gitRelease.bundle package/llama/patches
  git clone --quiet "$unpack/package/llama/gitRelease.bundle" "$SRC"
  for patch in "$unpack"/package/llama/patches/*.diff; do
    [ -e "$patch" ] || continue
    step "Applying $(basename "$patch") (the same patches node-llama-cpp applies)"
    git -C "$SRC" apply "$patch"
  done
  rm -rf "$unpack"
  touch "$SRC/.shimmy-source-ok"
}

[ "$dry_run" = 1 ] || fetch_source
[ "$source_only" = 1 ] && { step "Source ready: $SRC"; exit 0; }

case "${SHIMMY_BUILD_OS:-$(uname -s)}" in
  Linux) os=linux ;;
  Darwin) os=mac ;;
  MINGW*|MSYS*|CYGWIN*) os=win ;;
  *) echo "build-libllama: unsupported OS $(uname -s)" >&2; exit 1 ;;
esac
case "${SHIMMY_BUILD_ARCH:-$(uname -m)}" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
flavour=$os-$arch${gpu:+-$gpu}
out=${out:-$ROOT/lib/$flavour}
build=$CACHE/build-$flavour$([ "$native" = 1 ] && echo -native || true)$([ "$tools" = 1 ] && echo -tools || true)$([ "$release" = 1 ] && echo -release || true)

cmake_args=(
  -S "$SRC" -B "$build"
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=ON
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES="$([ "$tools" = 1 ] && echo ON || echo OFF)"
  -DLLAMA_BUILD_TOOLS="$([ "$tools" = 1 ] && echo ON || echo OFF)"
  -DLLAMA_BUILD_SERVER="$([ "$tools" = 1 ] && echo ON || echo OFF)"
  -DLLAMA_CURL=OFF
  -DLLAMA_OPENSSL=OFF
  -DGGML_NATIVE="$([ "$native" = 1 ] && echo ON || echo OFF)"
  # ggml's own threadpool, as in the prebuilt libraries: Shimmy decodes from more than one
  # thread, and OpenMP keeps a spinning thread team per calling thread.
  -DGGML_OPENMP=OFF
  -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON
)
case "$os" in
  # Each library finds the others in its own folder (the extracted lib/<flavour>/).
  linux) cmake_args+=(-DCMAKE_INSTALL_RPATH='$ORIGIN;$ORIGIN/..') ;;
  mac) cmake_args+=(-DCMAKE_INSTALL_RPATH='@loader_path' -DCMAKE_INSTALL_NAME_DIR='@rpath') ;;
  win)
    # MSVC from the developer environment; Ninja is faster than the Visual Studio generator
    # and puts every DLL in bin/.
    command -v ninja >/dev/null 2>&1 && cmake_args+=(-G Ninja)
    cmake_args+=(-DCMAKE_C_COMPILER=cl -DCMAKE_CXX_COMPILER=cl) ;;
esac
if [ "$release" = 1 ] && { [ "$arch" = x64 ] || [ "$os" = linux ]; }; then
  # Like the prebuilt packages: one CPU backend per instruction-set level, loaded at run time.
  cmake_args+=(-DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON)
fi
case "$gpu" in
  cuda) cmake_args+=(-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$cuda_arch") ;;
  vulkan) cmake_args+=(-DGGML_VULKAN=ON) ;;
  metal) cmake_args+=(-DGGML_METAL=ON -DGGML_METAL_EMBED_LIBRARY=ON) ;;
esac
if [ "$dry_run" = 1 ]; then
  printf '%q ' cmake "${cmake_args[@]}"
  echo
  exit 0
fi

step "Configuring $flavour in $build"
cmake "${cmake_args[@]}" >"$CACHE/cmake-configure-$flavour.log" 2>&1 || {
  tail -40 "$CACHE/cmake-configure-$flavour.log" >&2; exit 1; }

# ggml depends on every loadable backend, so naming it builds the CPU variants too.
targets=(--target llama ggml)
[ "$tools" = 1 ] && targets+=(llama-simple llama-server llama-bench)
step "Building ${targets[*]:1} with $jobs jobs (progress below)"
# The grep only filters progress lines; the build's own status decides (grep finding no line
# is not a failure, and `|| true` would hide the build's status from PIPESTATUS).
set +e
cmake --build "$build" --config Release -j "$jobs" "${targets[@]}" 2>&1 |
  grep --line-buffered -E '^\[ *[0-9]+%\]|error|Error' >&2
build_status=${PIPESTATUS[0]}
set -e
[ "$build_status" = 0 ] || { echo "build-libllama: build failed (cmake exit $build_status)" >&2; exit 1; }

step "Installing into $out"
mkdir -p "$out"
find "$build/bin" "$build" -maxdepth 3 \( -name 'lib*.so*' -o -name '*.dylib' -o -name '*.dll' \) \
  -not -path '*/CMakeFiles/*' -exec cp -P {} "$out/" \; 2>/dev/null
if [ "$bundle_cuda" = 1 ]; then
  # The CUDA runtime and cuBLAS, so that only the NVIDIA driver is needed where this runs.
  cuda_home=${CUDA_PATH:-${CUDA_HOME:-/usr/local/cuda}}
  found=0
  for pattern in 'libcudart.so.*' 'libcublas.so.*' 'libcublasLt.so.*' 'cudart64_*.dll' \
    'cublas64_*.dll' 'cublasLt64_*.dll'; do
    while IFS= read -r file; do
      cp -L "$file" "$out/"; found=$((found + 1))
    done < <(find "$cuda_home/lib64" "$cuda_home/lib" "$cuda_home/bin" -maxdepth 2 \
      -name "$pattern" ! -name '*.so.*.*' 2>/dev/null)
  done
  [ "$found" -gt 0 ] || { echo "build-libllama: no CUDA runtime libraries in $cuda_home" >&2; exit 1; }
fi
if [ "$tools" = 1 ]; then
  mkdir -p "$out/bin"
  for tool in llama-simple llama-server llama-bench; do
    cp "$build/bin/$tool" "$out/bin/"
  done
fi
cat >"$out/BUILD_INFO.json" <<JSON
{"source": "llama.cpp $LLAMA_TAG via node-llama-cpp@$NLC_VERSION", "built": "from source", "flavour": "$flavour", "native": $native, "referenceTools": $tools}
JSON
step "Done: $(ls "$out" | tr '\n' ' ')"
