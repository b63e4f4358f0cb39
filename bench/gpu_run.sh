#!/usr/bin/env bash
# Shimmy's GPU run, for a CUDA machine with no network (the H100 machine):
#   bench/gpu_run.sh build   CUDA libllama + reference tools from the pinned source (sm_90), and the
#                            test models beside it (test and bench generate those missing)
#   bench/gpu_run.sh test    the test suite's GPU cases (tests/gpu) against that build
#   bench/gpu_run.sh bench   llama-bench, shimmy bench (sampling on the CPU and on the GPU), and
#                            bench/serve_bench.ts: shimmy serve vs llama-server on the GPU
#                            (THREADS=N: CPU threads of both servers, default 4; REPS, BURSTS,
#                            STREAMS, KV_UNIFIED=on|off, FIRST_TOKENS (default 24): serve_bench's
#                            flags; STAGGERED=1 adds --staggered)
#   bench/gpu_run.sh pack    after a build: the build as xz pieces of at most 16,000 KiB in $OUT
#                            (cudalib.txz.00, .01, ...), to bring back and reuse
#   bench/gpu_run.sh unpack DIR   restores the build from the pieces in DIR instead of building
# Without network it takes Deno and the llama.cpp source from .device/ (see bench/README.md:
# deno.xz, llama-src.tar.xz, llama-vocab.tar.xz, deno_dir.tar.xz; bench/pack_device.sh makes
# them). Logs go to $OUT (or /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/shimmy-gpu}
mkdir -p "$out"
lib=lib/linux-x64-cuda

# shellcheck source=bench/device_env.sh
source bench/device_env.sh

# Generates the named test models that are not there yet (a build generates them beside it, so a
# later call on the same held machine finds them).
fixtures() {
  local missing=()
  for name in "$@"; do [ -f "tests/fixtures/generated/$name.gguf" ] || missing+=("$name"); done
  [ ${#missing[@]} = 0 ] || deno run -A tests/fixtures/generate.ts "${missing[@]}" >/dev/null
}

case "${1:-all}" in
  build)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
    fixtures bench-125m bench-1b tiny-f32 &
    time scripts/build-libllama.sh --cuda --reference-tools --out "$lib" --cuda-arch 90 \
      2>&1 | tail -5 | tee "$out/build.log"
    wait
    ;;
  test)
    fixtures bench-125m bench-1b tiny-f32
    SHIMMY_LIB_DIR=$lib deno run -A main.ts gpu-info 2>&1 | tee "$out/gpu-info.log"
    SHIMMY_LIB_DIR=$lib deno run -A main.ts probe tests/fixtures/generated/bench-1b.gguf \
      --gpu-backend cuda 2>&1 | tee "$out/probe.log"
    SHIMMY_LIB_DIR=$lib deno test -A tests/gpu 2>&1 | tee "$out/gpu-tests.log"
    ;;
  bench)
    fixtures bench-1b
    model=tests/fixtures/generated/bench-1b.gguf
    "$lib/bin/llama-bench" -m "$model" -ngl 99 -p 512 -n 128 2>/dev/null | tee "$out/llama-bench.log" || true
    for mode in off on; do
      SHIMMY_LIB_DIR=$lib deno run -A main.ts bench "$model" --gpu-backend cuda \
        --prompt-tokens 512 --gen-tokens 128 --device-sampling "$mode" 2>&1 | tail -n 3
    done | tee "$out/shimmy-bench.log"
    # Both servers get the same CPU threads: 4 by default, what Shimmy picks for a model wholly on
    # a GPU (with 16, its event loop and decoding thread compete with 15 pool threads for 16 cores;
    # llama-bench moves 5% between 4 and 16 threads), and a KV stream per slot, what Shimmy
    # picks on a GPU (KV_UNIFIED=on: one cache for all slots in both).
    deno run -A bench/serve_bench.ts --model "$model" --lib-dir "$lib" --threads "${THREADS:-4}" \
      --kv-unified "${KV_UNIFIED:-off}" ${STAGGERED:+--staggered} \
      --llama-server "$lib/bin/llama-server" --tokens 256 --streams "${STREAMS:-1,8,32}" \
      --reps "${REPS:-2}" --bursts "${BURSTS:-1}" --first-tokens "${FIRST_TOKENS:-24}" --json "$out/bench-gpu.json.gz" 2>&1 | tee "$out/bench-gpu.log"
    ;;
  pack)
    tar -C "$(dirname "$lib")" -cf - "$(basename "$lib")" | xz -T0 -3 |
      split -b 16000k -d - "$out/cudalib.txz."
    ls -l "$out"/cudalib.txz.*
    ;;
  unpack)
    pieces=${2:?usage: bench/gpu_run.sh unpack DIR}
    rm -rf "$lib" && mkdir -p "$(dirname "$lib")"
    cat "$pieces"/cudalib.txz.* | xz -dc -T0 | tar -C "$(dirname "$lib")" -xf -
    ;;
  *) echo "usage: bench/gpu_run.sh build|test|bench|pack|unpack DIR" >&2; exit 1 ;;
esac
