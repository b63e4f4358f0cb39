/**
 * Is `llama_decode` slower when Deno calls it? A one-token greedy decode loop on a context that
 * Shimmy builds itself (`LoadedModel.open`, the scheduler's settings; a warm-up generation
 * attaches the device sampler chain of sequence 0), in four ways of waiting for each step:
 *
 * - `blocking`: `llama_decode` then `llama_synchronize`, both blocking calls on this thread, as
 *   `bench/decode_probe.c -hop 0` and llama-bench do;
 * - `nonblocking-sync`: the decode here, the synchronize as a nonblocking call awaited;
 * - `turning`: the same, with the event loop turning meanwhile (`Context.decode`'s way);
 * - `context.decode`: `Context.decode` itself (its timing column is the whole call).
 *
 * Each loop feeds the device's chosen token back (on a CPU, whose decodes Shimmy never makes
 * blocking, a fixed cycle of tokens). Prints tokens per second and the `llama_decode` call's time.
 *
 *   deno run -A bench/ffi_decode_loop.ts MODEL.gguf [cuda|cpu] [--slots N] [--threads N]
 *
 * @module
 */

import { LoadedModel } from "../src/engine/loaded_model.ts";
import { Batch } from "../src/ffi/batch.ts";
import { LlamaBatch } from "../src/ffi/layouts.ts";
import { benchArgs } from "./lib/args.ts";

const { values, positionals } = benchArgs({
  allowPositionals: true,
  options: {
    slots: { type: "string", default: "1" },
    threads: { type: "string", default: "4" },
    steps: { type: "string", default: "256" },
  },
}, import.meta.url);
const path = positionals[0];
if (!path) throw new Error("usage: bench/ffi_decode_loop.ts MODEL.gguf [cuda|cpu] [--slots N]");
const backend = positionals[1] === "cpu" ? "cpu" : "cuda";
const onDevice = backend === "cuda";

await using loaded = await LoadedModel.open({
  path,
  gpuBackend: backend,
  parallel: Number(values.slots),
  ctxSize: 1024,
  deviceSampling: onDevice ? "on" : "off",
  threads: Number(values.threads),
});
const warmUp = loaded.scheduler.submit({
  prompt: Int32Array.from([1, 2, 3, 4]),
  maxTokens: 8,
  ignoreEos: true,
  sampling: { temperature: 0 },
});
for await (const _ of warmUp) { /* drain */ }
await warmUp.result;

const context = loaded.scheduler.context;
const llama = context.model.llama;
/** Blocking twins of the calls Shimmy makes nonblocking. */
const blocking = Deno.dlopen(
  `${llama.libDir}/libllama.so`,
  {
    llama_decode: { parameters: ["pointer", LlamaBatch.ffi], result: "i32" },
    llama_synchronize: { parameters: ["pointer"], result: "void" },
    llama_get_sampled_token_ith: { parameters: ["pointer", "i32"], result: "i32" },
  } as const,
);
using batch = new Batch(llama, 8);
const pointer = context.pointer;

type Mode = "blocking" | "nonblocking-sync" | "turning" | "context.decode";

/** Waits for the GPU with a nonblocking call, turning the event loop meanwhile. */
async function synchronizeTurning(): Promise<void> {
  let done = false;
  const synced = llama.symbols.llama_synchronize(pointer);
  synced.then(() => (done = true), () => (done = true));
  while (!done) await llama.yieldToIo();
  await synced;
}

/** Decodes `steps` single tokens of sequence 0 from an empty cache; returns the report line. */
async function loop(mode: Mode, steps: number): Promise<string> {
  context.removeTokens(0, -1, -1);
  let token = 1;
  let callMs = 0;
  const start = performance.now();
  for (let position = 0; position < steps; position++) {
    batch.clear();
    batch.add(token, position, 0, true);
    const called = performance.now();
    if (mode === "context.decode") {
      await context.decode(batch);
      callMs += performance.now() - called;
    } else {
      if (blocking.symbols.llama_decode(pointer, batch.struct) !== 0) throw new Error("decode");
      callMs += performance.now() - called;
      if (mode === "blocking") blocking.symbols.llama_synchronize(pointer);
      else if (mode === "nonblocking-sync") await llama.symbols.llama_synchronize(pointer);
      else await synchronizeTurning();
    }
    const sampled = onDevice ? blocking.symbols.llama_get_sampled_token_ith(pointer, 0) : -1;
    token = sampled >= 0 ? sampled : 1 + (position % 100);
  }
  const ms = performance.now() - start;
  return `${mode.padEnd(18)} ${((steps * 1000) / ms).toFixed(1)} tok/s, ` +
    `${mode === "context.decode" ? "Context.decode" : "llama_decode"} call ` +
    `${((callMs * 1000) / steps).toFixed(1)} µs a step`;
}

const modes: Mode[] = ["blocking", "nonblocking-sync", "turning", "context.decode"];
for (let round = 0; round < 2; round++) {
  for (const mode of modes) console.log(await loop(mode, Number(values.steps)));
}
blocking.close();
