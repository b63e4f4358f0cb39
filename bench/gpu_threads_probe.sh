#!/usr/bin/env bash
# How CPU threads change a GPU decode step: with every layer on the GPU the CPU backend still
# looks up each step's token embeddings, so its thread pool wakes every token. llama-bench and
# shimmy bench (tg128, 1B Q4_0, sampling on the device) at 1, 2, 4, 8 and 16 threads. Run after
# `bench/gpu_run.sh build` on the GPU machine; the log goes to $OUT/threads-probe.log.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/shimmy-gpu}
lib=lib/linux-x64-cuda
export PATH=/tmp:/usr/local/cuda/bin:$PATH DENO_DIR=${DENO_DIR:-/tmp/deno_dir} NO_COLOR=1
deno run -A tests/fixtures/generate.ts bench-1b >/dev/null
model=tests/fixtures/generated/bench-1b.gguf
{
  nproc
  for t in 1 2 4 8 16; do
    echo "== threads $t"
    "$lib/bin/llama-bench" -m "$model" -ngl 99 -p 0 -n 128 -r 3 -t "$t" 2>/dev/null | grep tg
    SHIMMY_LIB_DIR=$lib deno run -A main.ts bench "$model" --gpu-backend cuda --threads "$t" \
      --prompt-tokens 32 --gen-tokens 128 --reps 3 --device-sampling on 2>&1 | tail -n 2
  done
} 2>&1 | tee "$out/threads-probe.log"
