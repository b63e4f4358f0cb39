# Call 7, as run: a TTFT timeline of lone requests, tests/gpu and three serve_bench runs. Its first
# lines (the unpacked CUDA lib, deno and the fixtures) were those of
# ../h200-2026-12-03/call5.sh; the rest follows. trace_client.ts sent 40 lone streamed
# /v1/completions and printed the client's TTFTs.
SHIMMY_LIB_DIR=$lib deno test -A tests/gpu > $out/gpu-tests.log 2>&1; grep -E "^ok|FAILED|failed" $out/gpu-tests.log | tail -3
trace() { # PAR LABEL [extra env]
  SHIMMY_LIB_DIR=$lib deno run -A main.ts serve --model "$M" --bind 127.0.0.1:18777 --parallel $1 --threads 4 --ctx-size 1024 > $out/trace-$2.log 2>&1 &
  local pid=$!
  for i in $(seq 300); do deno eval 'try{const r=await fetch("http://127.0.0.1:18777/health");Deno.exit(r.ok?0:1)}catch{Deno.exit(1)}' && break; sleep 0.3; done
  deno run -A .device/trace_client.ts http://127.0.0.1:18777 40 | tee -a $out/trace-$2.log
  kill $pid; wait $pid 2>/dev/null
  echo "== $2"; grep TRACE $out/trace-$2.log | tail -4
  grep "client ttft" $out/trace-$2.log
}
trace 32 par32
trace 1 par1
export NOGUARD=1; trace 32 par32-noguard; unset NOGUARD
"$lib/bin/llama-server" -m $M --host 127.0.0.1 --port 18778 -np 1 -c 1024 -t 4 --no-webui --cache-ram 0 -ngl all --fit off > /tmp/llama-server.log 2>&1 &
pid=$!
for i in $(seq 300); do deno eval 'try{const r=await fetch("http://127.0.0.1:18778/health");Deno.exit(r.ok?0:1)}catch{Deno.exit(1)}' && break; sleep 0.3; done
echo "== llama-server np1"; deno run -A .device/trace_client.ts http://127.0.0.1:18778 40
kill $pid; wait $pid 2>/dev/null
sb() { deno run -A bench/serve_bench.ts --model $M --lib-dir $lib --threads 4 --llama-server $lib/bin/llama-server --tokens 128 --streams 1,8,32 --reps 1; }
for cfg in base X_TURNS=1 NOGUARD=1; do
  label=${cfg%%=*}; ( [ $cfg != base ] && export $cfg; sb ) > $out/sb-$label.log 2>&1
  echo "== $cfg"; grep -E "^(decode|aggregate|TTFT|server)" $out/sb-$label.log
done
