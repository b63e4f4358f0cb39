#!/usr/bin/env bash
# Why llama_decode's host part costs more in Shimmy than in llama-bench: bench/decode_probe.c
# (a 1-token decode loop straight on libllama) from llama-bench-like settings, changing one of
# Shimmy's settings at a time (unified KV, explicit batch, device sampler, flash attention auto,
# 32 sequences in 32768 cells, each decode on another thread as Deno's nonblocking FFI calls
# run), then all of them; with llama-bench tg128 and shimmy bench (1.5B Q4_0, every layer on the
# GPU) beside it. Run after `bench/gpu_run.sh build` on the GPU machine; the log goes to
# $OUT/decode-probe.log.
# (LIB, LLAMA_SRC, MODEL and GEN override the library folder, source, model and tokens.)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/shimmy-gpu}
mkdir -p "$out"
lib=${LIB:-lib/linux-x64-cuda}
src=${LLAMA_SRC:-.cache/llama.cpp-v0.5.0}
export PATH=/tmp:/usr/local/cuda/bin:$PATH DENO_DIR=${DENO_DIR:-/tmp/deno_dir} NO_COLOR=1
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
model=${MODEL:-tests/fixtures/generated/bench-1b.gguf}
[ -f "$model" ] || deno run -A tests/fixtures/generate.ts bench-1b >/dev/null
probe=/tmp/decode_probe
cc -O2 -Wall bench/decode_probe.c -I"$src/include" -I"$src/ggml/include" -L"$lib" \
  -lllama -lggml -lggml-base -lpthread -Wl,-rpath,"$PWD/$lib" -o "$probe" || exit 1

# llama-bench's tg test: 1 sequence, n_ctx = tokens, separate KV, llama_batch_get_one, no
# sampling (random tokens, logits never read), its own ggml threadpool.
base="-t 4 -c 640 -np 1 -kvu 0 -fa 1 -pool 1 -batch get_one -ds 0 -sync 1"
run() { # label, probe flags
  printf '%-28s ' "$1"
  shift
  "$probe" -m "$model" -p 32 -n "${GEN:-128}" -r 3 "$@" 2>&1 | grep -E '^decode_probe|failed|error|cannot' \
    || echo "(no result)"
}
{
  nproc
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  echo "== llama-bench tg128"
  for fa in 0 1; do
    "$lib/bin/llama-bench" -m "$model" -ngl 99 -p 0 -n "${GEN:-128}" -r 3 -t 4 -fa "$fa" 2>/dev/null |
      grep -E 'tg|model'
  done
  echo "== decode_probe (bench-1b Q4_0, prompt 32, gen 128, 3 reps)"
  run "lb-exact (read 0)" $base -read 0
  run "baseline fa1" $base
  run "baseline fa0" $base -fa 0
  run "+kvu 1" $base -kvu 1
  run "+batch explicit" $base -batch explicit
  run "+ds 1" $base -ds 1
  run "+fa default(auto)" $base -fa -1
  run "+np 32 c 32768" $base -np 32 -c 32768
  run "+hop 1" $base -hop 1
  run "+pool 0" $base -pool 0
  run "+sync 0" $base -sync 0
  run "+b 512" $base -b 512
  shimmy="-t 4 -c 32768 -np 32 -kvu 1 -fa -1 -pool 1 -batch explicit -ds 1 -sync 1"
  run "shimmy serve all" $shimmy -hop 1
  run "shimmy serve, hop 0" $shimmy -hop 0
  run "shimmy serve, hop 2" $shimmy -hop 2
  run "shimmy serve, ds 0" $shimmy -ds 0 -hop 1
  bench="-t 4 -c 168 -np 1 -kvu 1 -b 512 -fa -1 -pool 1 -batch explicit -sync 1"
  run "shimmy bench all (ds 1)" $bench -ds 1 -hop 1
  run "shimmy bench, hop 0" $bench -ds 1 -hop 0
  run "shimmy bench, ds 0" $bench -ds 0 -hop 1
  run "baseline again" $base
  echo "== shimmy bench"
  for mode in on off; do
    echo "-- device sampling $mode"
    SHIMMY_LIB_DIR=$lib deno run -A main.ts bench "$model" --gpu-backend cuda --threads 4 \
      --prompt-tokens 32 --gen-tokens "${GEN:-128}" --reps 3 --device-sampling "$mode" 2>&1 | tail -n 3
  done
} 2>&1 | tee "$out/decode-probe.log"
