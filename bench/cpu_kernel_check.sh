#!/usr/bin/env bash
# Whether the CPU attention probe of `--flash-attn auto` (src/engine/attention_probe.ts) picks the
# kernel that serves faster on this machine's processor, with bench-125m:
#   1. llama-bench with each kernel (-fa 0,1): pp512, tg64 at depth 0 and 512;
#   2. bench/attention_probe.ts: the probe's times and verdicts;
#   3. bench/serve_bench.ts on one slot with each kernel forced in both servers (--flash-attn on
#      and off): Shimmy's served rate and first token with either kernel.
# Logs go to $OUT (default /tmp/shimmy-cpu-kernels). THREADS (default: every core), LIB (a folder
# with libllama and bin/llama-bench, bin/llama-server; default lib/reference), REPS (default 2).
# On the GPU machine (no network) Deno and the vocabularies come from .device/ (device_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/device_env.sh
source bench/device_env.sh
out=${OUT:-/tmp/shimmy-cpu-kernels}
lib=${LIB:-lib/reference}
threads=${THREADS:-$(nproc)}
mkdir -p "$out"
model=tests/fixtures/generated/bench-125m.gguf
deno run -A tests/fixtures/generate.ts bench-125m >/dev/null
{ lscpu | grep -E "^(Model name|CPU\(s\)|Thread|Core|Socket|Flags)" | cut -c1-200; } >"$out/cpu.txt" || true
"$lib/bin/llama-bench" -m "$model" -t "$threads" -fa 0,1 -p 512 -n 64 -d 0,512 -r 3 2>/dev/null |
  tee "$out/llama-bench.log"
deno run -A bench/attention_probe.ts "$model" --threads "$threads" --lib-dir "$lib" |
  tee "$out/probe.log"
for kernel in on off; do
  deno run -A bench/serve_bench.ts --model "$model" --lib-dir "$lib" --threads "$threads" \
    --llama-server "$lib/bin/llama-server" --streams 1 --slots 1 --tokens 256 \
    --reps "${REPS:-2}" --bursts 2 --flash-attn "$kernel" 2>&1 | tee "$out/one-slot-flash-$kernel.log" |
    grep -E "^(decode tok/s|TTFT p50)"
done
