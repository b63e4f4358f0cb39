import { equal, match, ok, rejects } from "node:assert/strict";
import {
  Batch,
  Context,
  DecodeThread,
  DecodeThreadError,
  Llama,
  Model,
} from "../../src/ffi/mod.ts";
import { fixtureModel } from "../fixtures/models.ts";

const llama = Llama.open();

Deno.test("a context decodes on its own thread while the event loop keeps running", async () => {
  using model = await Model.load(llama, await fixtureModel("bench-125m"));
  using ctx = await Context.create(model, { nCtx: 512, nBatch: 256 });
  using batch = new Batch(llama, 256);
  for (let i = 0; i < 256; i++) batch.add(100 + i, i, 0, i === 255);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const started = performance.now();
  await ctx.decode(batch);
  const elapsed = performance.now() - started;
  clearInterval(timer);
  // A blocking decode on this thread would let no timer fire until it returned.
  ok(elapsed < 20 || ticks >= 2, `${ticks} timer ticks in a ${elapsed.toFixed(0)} ms decode`);
  ok(ctx.logits(255).some((value) => value !== 0));
});

Deno.test("closing a context ends its decode thread", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const thread = new DecodeThread(llama.llamaFile);
  using ctx = await Context.create(model, { nCtx: 64 });
  using batch = new Batch(llama, 4);
  batch.add(1, 0, 0, true);
  const decoding = thread.decode(ctx.pointer, batch.struct);
  thread.close(); // while the decode is in flight: it finishes first
  equal(await decoding, 0);
  await thread.ended;
  await rejects(thread.decode(ctx.pointer, batch.struct), DecodeThreadError);
});

Deno.test("a decode thread that could not start gets one fresh start", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using ctx = await Context.create(model, { nCtx: 64 });
  using batch = new Batch(llama, 4);
  batch.add(1, 0, 0, true);
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/libllama.so`;
    const thread = new DecodeThread(file);
    let ended = false;
    thread.ended.then(() => (ended = true));
    // It finds no library and ends (an unref'd thread's end alone keeps no test waiting).
    while (!ended) await new Promise((resolve) => setTimeout(resolve, 5));
    await Deno.symlink(llama.llamaFile, file);
    equal(await thread.decode(ctx.pointer, batch.struct), 0);
    thread.close();
    await thread.ended;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a decode thread that cannot open libllama fails its decodes with the reason", async () => {
  const thread = new DecodeThread("/nonexistent/libllama.so");
  const fake = Deno.UnsafePointer.create(1n) as Deno.PointerObject;
  await rejects(thread.decode(fake, new Uint8Array(56)), DecodeThreadError);
  await rejects(thread.decode(fake, new Uint8Array(56)), /nonexistent\/libllama\.so/);
  thread.close();
  await thread.ended;
});

Deno.test("a script that leaves its context open still exits: the decode thread is unref'd", async () => {
  const child = new URL("./decode_thread_child.ts", import.meta.url).pathname;
  const run = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", child, await fixtureModel("tiny-f32")],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const out = await run;
  const stderr = new TextDecoder().decode(out.stderr);
  equal(out.code, 0, stderr);
  match(new TextDecoder().decode(out.stdout), /decoded 1/);
});
