/**
 * The body of a {@link DecodeThread} (`decode_thread.ts`): a `node:worker_threads` thread that
 * opens libllama's `llama_decode` and `llama_synchronize` as blocking calls and runs them for
 * its owner, handshaking through shared memory only. It sleeps in `Atomics.wait` between
 * steps, so it costs nothing while idle and wakes within microseconds of a request.
 *
 * @module
 */

import { workerData } from "node:worker_threads";
import { LlamaBatch } from "./layouts.ts";
import { DecodeState, type DecodeThreadData, decodeThreadViews } from "./decode_thread_layout.ts";

const { libraryFile, shared } = workerData as DecodeThreadData;
const { control, context, timing, batch, reason } = decodeThreadViews(shared);

/** Runs the loop until told to quit; every outcome is reported through `control`. */
function serve(): void {
  let library;
  try {
    library = Deno.dlopen(libraryFile, {
      llama_decode: { parameters: ["pointer", LlamaBatch.ffi], result: "i32" },
      llama_synchronize: { parameters: ["pointer"], result: "void" },
    });
  } catch (error) {
    const text = `Cannot open ${libraryFile}: ${(error as Error).message}`;
    control[2] = new TextEncoder().encodeInto(text, reason).written;
    settle(DecodeState.failed);
    return;
  }
  const struct = new Uint8Array(LlamaBatch.size);
  settle(DecodeState.idle);
  for (;;) {
    let state;
    while ((state = Atomics.load(control, 0)) !== DecodeState.requested) {
      if (state === DecodeState.quit) {
        library.close();
        return;
      }
      Atomics.wait(control, 0, state);
    }
    struct.set(batch);
    const pointer = Deno.UnsafePointer.create(context[0] as bigint);
    const start = performance.now();
    const status = library.symbols.llama_decode(pointer, struct);
    const decoded = performance.now();
    // A GPU backend returns before its kernels finish; waiting here keeps the owner's next
    // native call (reading logits or the sampled token) from blocking its event loop.
    if (status === 0) library.symbols.llama_synchronize(pointer);
    timing[0] = (timing[0] as number) + decoded - start;
    timing[1] = (timing[1] as number) + performance.now() - decoded;
    control[1] = status;
    settle(DecodeState.done);
  }
}

function settle(state: DecodeState): void {
  Atomics.store(control, 0, state);
  Atomics.notify(control, 0);
}

serve();
