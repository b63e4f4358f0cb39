#!/usr/bin/env bash
# What a GPU decode step costs on the host: shimmy bench (tg128, 1B Q4_0) with CPU threads 2 and
# 16, llama_decode called on a worker thread (the default) or on the event loop's own thread
# (SHIMMY_EXP_DECODE_SYNC=1), beside llama-bench.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/shimmy-gpu}
lib=lib/linux-x64-cuda
export PATH=/tmp:/usr/local/cuda/bin:$PATH DENO_DIR=${DENO_DIR:-/tmp/deno_dir} NO_COLOR=1
deno run -A tests/fixtures/generate.ts bench-1b >/dev/null
model=tests/fixtures/generated/bench-1b.gguf
{
  for t in 2 16; do
    echo "== threads $t"
    "$lib/bin/llama-bench" -m "$model" -ngl 99 -p 0 -n 128 -r 3 -t "$t" 2>/dev/null | grep tg
    for sync in 0 1; do
      for sampling in on off; do
        echo "-- decode on the caller's thread: $sync, device sampling $sampling"
        SHIMMY_EXP_DECODE_SYNC=$sync SHIMMY_LIB_DIR=$lib deno run -A main.ts bench "$model" \
          --gpu-backend cuda --threads "$t" --prompt-tokens 32 --gen-tokens 128 --reps 3 \
          --device-sampling "$sampling" 2>&1 | tail -n 2
      done
    done
  done
} 2>&1 | tee "$out/threads-probe.log"
