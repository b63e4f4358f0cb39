# Call 5 (after a call that unpacked the CUDA lib into /tmp/cuda): gate A/B, 1-slot single stream.
set -uo pipefail
out=${OUT:-/tmp/out}
[ -f /tmp/cuda/linux-x64-cuda/libllama.so ] || { echo "no CUDA lib in /tmp/cuda (call A first)"; exit 1; }
mkdir -p lib && rm -rf lib/linux-x64-cuda && cp -a /tmp/cuda/linux-x64-cuda lib/
[ -x /tmp/deno ] || { xz -dc .device/deno.xz >/tmp/deno && chmod +x /tmp/deno; }
mkdir -p /tmp/deno_dir && tar -xJf .device/deno_dir.tar.xz -C /tmp/deno_dir
mkdir -p .cache && tar -xJf .device/llama-vocab.tar.xz -C .cache && tar -xJf .device/llama-headers.tar.xz -C .cache
export PATH=/tmp:/usr/local/cuda/bin:$PATH DENO_DIR=/tmp/deno_dir NO_COLOR=1 DENO_NO_UPDATE_CHECK=1 LD_LIBRARY_PATH=/usr/local/cuda/lib64
lib=lib/linux-x64-cuda; M=tests/fixtures/generated/bench-1b.gguf
deno run -A tests/fixtures/generate.ts bench-1b bench-125m tiny-f32 >/dev/null || exit 1
SHIMMY_LIB_DIR=$lib deno test -A tests/gpu > $out/gpu-tests.log 2>&1; grep -E "^ok|FAILED|failed" $out/gpu-tests.log | tail -3
{
  "$lib/bin/llama-bench" -m $M -ngl 99 -p 0 -n 128 -r 3 -t 4 2>/dev/null | grep tg
  SHIMMY_LIB_DIR=$lib deno run -A main.ts bench $M --gpu-backend cuda --threads 4 --prompt-tokens 32 --gen-tokens 128 --reps 3 --device-sampling on 2>&1 | tail -2
} 2>&1 | tee $out/bench.log
sb() { deno run -A bench/serve_bench.ts --model $M --lib-dir $lib --threads 4 --llama-server $lib/bin/llama-server --tokens 256 "$@"; }
sb --streams 1 --slots 1 --reps 2 --json $out/serve-1slot.json > $out/serve-1slot.log 2>&1
grep -E "^decode|^TTFT|^server|^token gap" $out/serve-1slot.log
sb --streams 1,8,32 --reps 2 --json $out/serve.json > $out/serve.log 2>&1
grep -E "^(decode|aggregate|TTFT|server|token gap)" $out/serve.log
NOGATE=1 sb --streams 1,8 --reps 2 --json $out/serve-nogate.json > $out/serve-nogate.log 2>&1
grep -E "^(decode|aggregate|TTFT|server|token gap)" $out/serve-nogate.log
