#!/usr/bin/env bash
# Packs what bench/gpu_run.sh needs on a GPU machine without network into .device/ (ignored by
# git; carry it to the machine with the working tree):
#   deno.xz            this machine's Deno binary
#   llama-src.tar.xz   the pinned llama.cpp source (no .git, vocabularies, docs or unused backends)
#   llama-vocab.tar.xz the vocabularies the benchmark models copy their tokenizers from
#   deno_dir.tar.xz    Deno's cache of every npm package main.ts, the benchmarks and tests/gpu use
# Run it after scripts/build-libllama.sh --source-only (or any build) has unpacked the source.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${SHIMMY_CACHE_DIR:-$PWD/.cache}
SRC_NAME=llama.cpp-v0.5.0
[ -f "$CACHE/$SRC_NAME/include/llama.h" ] || scripts/build-libllama.sh --source-only
mkdir -p .device
echo "deno.xz" >&2
xz -T0 -6 -c "$(readlink -f "$(command -v deno)")" >.device/deno.xz
echo "llama-src.tar.xz" >&2
# Documentation and the backends a CUDA or CPU build never reads stay behind: the carried tree has
# a 64 MiB limit.
unused_backends=(cann et hexagon metal opencl openvino sycl virtgpu vulkan webgpu)
tar -C "$CACHE" --exclude="$SRC_NAME/.git" --exclude="$SRC_NAME/models" --exclude="$SRC_NAME/docs" \
  --exclude="$SRC_NAME/build*" "${unused_backends[@]/#/--exclude=$SRC_NAME/ggml/src/ggml-}" \
  -cf - "$SRC_NAME" | xz -T0 -6 >.device/llama-src.tar.xz
echo "llama-vocab.tar.xz" >&2
tar -C "$CACHE" -cf - "$SRC_NAME/models/ggml-vocab-llama-spm.gguf" \
  "$SRC_NAME/models/ggml-vocab-llama-bpe.gguf" | xz -T0 -6 >.device/llama-vocab.tar.xz
echo "deno_dir.tar.xz" >&2
deno_dir=$(mktemp -d)
DENO_DIR=$deno_dir deno cache --quiet main.ts bench/*.ts tests/fixtures/generate.ts tests/gpu/*.ts \
  src/engine/template_worker_main.ts
tar -C "$deno_dir" -cf - . | xz -T0 -6 >.device/deno_dir.tar.xz
rm -rf "$deno_dir"
du -ch .device/* | tail -n 1 >&2
