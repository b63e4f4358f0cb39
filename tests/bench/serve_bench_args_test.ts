import assert from "node:assert/strict";
import { type BenchOptions, burstsOfLevel, parseBenchArgs } from "../../bench/serve_bench.ts";
import { launchFor } from "../../bench/lib/server_process.ts";
import { UsageError } from "../../src/cli/usage_error.ts";

const model = { path: "/m.gguf", bytes: 1, architecture: "llama", trainCtx: 4096 };

Deno.test("serve_bench gives each server a slot per stream of its largest level", () => {
  assert.equal(parseBenchArgs(["--streams", "1,8"])?.slots, 8);
});

Deno.test("serve_bench --slots sets the slots, and refuses fewer than the streams", () => {
  assert.equal(parseBenchArgs(["--streams", "1", "--slots", "1"])?.slots, 1);
  assert.equal(parseBenchArgs(["--streams", "1,4", "--slots", "16"])?.slots, 16);
  assert.throws(() => parseBenchArgs(["--streams", "1,8", "--slots", "4"]), UsageError);
  assert.throws(() => parseBenchArgs(["--interference", "--slots", "8"]), UsageError);
});

Deno.test("serve_bench --bursts repeats each level, and not the interference scenario", () => {
  assert.equal(parseBenchArgs([])?.bursts, 1);
  assert.equal(parseBenchArgs(["--bursts", "5"])?.bursts, 5);
  assert.throws(() => parseBenchArgs(["--bursts", "0"]), UsageError);
  assert.throws(() => parseBenchArgs(["--interference", "--bursts", "2"]), UsageError);
});

Deno.test("serve_bench --first-tokens adds bursts to the levels whose bursts hold fewer requests", () => {
  const options = parseBenchArgs(["--bursts", "2", "--first-tokens", "16", "--streams", "1,8,32"]);
  assert.equal(options?.firstTokens, 16);
  assert.deepEqual(options?.streams.map((s) => burstsOfLevel(s, options)), [16, 2, 2]);
  assert.deepEqual([3, 5].map((s) => burstsOfLevel(s, { bursts: 1, firstTokens: 16 })), [6, 4]);
  assert.equal(parseBenchArgs([])?.firstTokens, 0);
  assert.equal(burstsOfLevel(1, { bursts: 3, firstTokens: 0 }), 3);
  assert.throws(() => parseBenchArgs(["--first-tokens", "-1"]), UsageError);
  assert.throws(() => parseBenchArgs(["--interference", "--first-tokens", "8"]), UsageError);
});

Deno.test("serve_bench --staggered spreads a burst's token counts, and not the interference scenario's", () => {
  assert.equal(parseBenchArgs([])?.staggered, false);
  assert.equal(parseBenchArgs(["--staggered"])?.staggered, true);
  assert.throws(() => parseBenchArgs(["--interference", "--staggered"]), UsageError);
});

Deno.test("llama-server gets a unified KV cache exactly when Shimmy does", () => {
  const settings = { threads: 2, ctxSize: 1024, libDir: "lib", llamaServer: "llama-server" };
  const one = launchFor("llama-server", { ...settings, slots: 1, kvUnified: true }, model, "1");
  const eight = launchFor("llama-server", { ...settings, slots: 8, kvUnified: true }, model, "1");
  assert.ok(!one.args.includes("--kv-unified"));
  assert.ok(eight.args.includes("--kv-unified"));
  // Unset, Shimmy chooses a stream per slot, and llama-server gets the same.
  const chosen = launchFor("llama-server", { ...settings, slots: 8 }, model, "1");
  assert.ok(!chosen.args.includes("--kv-unified"));
  const streams = { ...settings, slots: 8, kvUnified: false };
  assert.ok(!launchFor("llama-server", streams, model, "1").args.includes("--kv-unified"));
  const shimmy = launchFor("shimmy", streams, model, "1").args;
  assert.deepEqual(
    shimmy.slice(shimmy.indexOf("--kv-unified"), shimmy.indexOf("--kv-unified") + 2),
    [
      "--kv-unified",
      "off",
    ],
  );
  assert.equal(parseBenchArgs([])?.kvUnified, false);
  assert.equal(parseBenchArgs(["--kv-unified", "on"])?.kvUnified, true);
  assert.throws(() => parseBenchArgs(["--kv-unified", "auto"]), UsageError);
  assert.deepEqual(one.args.slice(one.args.indexOf("-np"), one.args.indexOf("-np") + 2), [
    "-np",
    "1",
  ]);
});

Deno.test("--decode-thread off starts Shimmy without its decode thread; llama-server is unchanged", () => {
  const on = parseBenchArgs([]) as BenchOptions;
  const off = parseBenchArgs(["--decode-thread", "off"]) as BenchOptions;
  assert.equal(on.decodeThread, true);
  assert.ok(!launchFor("shimmy", on, model, "1").args.includes("--no-decode-thread"));
  assert.ok(launchFor("shimmy", off, model, "1").args.includes("--no-decode-thread"));
  assert.deepEqual(
    launchFor("llama-server", on, model, "1").args,
    launchFor("llama-server", off, model, "1").args,
  );
  assert.throws(() => parseBenchArgs(["--decode-thread", "auto"]), UsageError);
});

Deno.test("--gpus puts both servers on the same CUDA GPUs, and refuses what names no GPU", () => {
  const one = parseBenchArgs(["--gpus", "1"]) as BenchOptions;
  assert.deepEqual(one.gpus, [1]);
  const shimmy = launchFor("shimmy", one, model, "1").args;
  assert.deepEqual(shimmy.slice(shimmy.indexOf("--gpus"), shimmy.indexOf("--gpus") + 2), [
    "--gpus",
    "1",
  ]);
  const llama = launchFor("llama-server", { ...one, gpus: [0, 1] }, model, "1").args;
  assert.deepEqual(llama.slice(llama.indexOf("--device"), llama.indexOf("--device") + 2), [
    "--device",
    "CUDA0,CUDA1",
  ]);
  const every = parseBenchArgs([]) as BenchOptions;
  assert.ok(!launchFor("shimmy", every, model, "1").args.includes("--gpus"));
  assert.ok(!launchFor("llama-server", every, model, "1").args.includes("--device"));
  for (const bad of ["a", "-1", "0,0", "1.5"]) {
    assert.throws(() => parseBenchArgs(["--gpus", bad]), UsageError, bad);
  }
});

Deno.test("serve_bench --flash-attn gives both servers the kernel choice, and refuses other values", () => {
  assert.equal(parseBenchArgs([])?.flashAttn, undefined);
  assert.equal(parseBenchArgs(["--flash-attn", "on"])?.flashAttn, "on");
  assert.throws(() => parseBenchArgs(["--flash-attn", "yes"]), UsageError);
});
