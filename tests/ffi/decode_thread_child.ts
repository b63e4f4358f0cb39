/**
 * A script that decodes once and ends without closing its context: run by
 * `decode_thread_test.ts` to show that an idle decode thread does not keep a process alive.
 *
 * Usage: deno run -A decode_thread_child.ts MODEL
 *
 * @module
 */

import { Batch, Context, Llama, Model } from "../../src/ffi/mod.ts";

const llama = Llama.open();
const model = await Model.load(llama, Deno.args[0] as string);
const context = await Context.create(model, { nCtx: 64 });
const batch = new Batch(llama, 4);
batch.add(1, 0, 0, true);
await context.decode(batch);
console.log(`decoded ${context.decodeCount}`);
