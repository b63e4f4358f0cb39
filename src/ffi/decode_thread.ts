/**
 * `DecodeThread`: a native thread of a context's own that runs its `llama_decode` calls.
 *
 * A nonblocking FFI call runs on whichever thread of Deno's blocking pool is free, and that
 * thread becomes the first worker of ggml's thread pool for the step; the hop there and back
 * and the ever-changing thread made each step slower than llama.cpp's own server, which decodes
 * on one loop thread. Decoding on the event loop's thread was faster still, but then streamed
 * tokens waited for the step to end before they could be written (clumps). A dedicated thread
 * has both: the same thread every step, and a free event loop. The two sides handshake through
 * shared memory (`Atomics.wait` there, `Atomics.waitAsync` here), with no messages per step.
 *
 * The thread is a `node:worker_threads` worker because Deno's Web `Worker` cannot be unref'd:
 * an idle decode thread must never keep a finished script's process alive. Its body is
 * `decode_thread_main.ts`, which `deno compile` must `--include`.
 *
 * @module
 */

import { Worker } from "node:worker_threads";
import {
  DecodeState,
  type DecodeThreadData,
  decodeThreadViews,
  newDecodeThreadBlock,
} from "./decode_thread_layout.ts";

const THREAD_URL = new URL("./decode_thread_main.ts", import.meta.url);

/** Raised when the decode thread cannot start or has died. */
export class DecodeThreadError extends Error {
  /** @param message Why. */
  constructor(message: string) {
    super(message);
    this.name = "DecodeThreadError";
  }
}

/** Where a decode thread's time went, summed over its decodes. */
export interface DecodeThreadTimes {
  /** In `llama_decode`: the compute on a CPU; building and launching the graph on a GPU. */
  llamaDecodeMs: number;
  /** In `llama_synchronize` after it: waiting for a GPU to finish (about 0 on a CPU). */
  deviceWaitMs: number;
}

/** A thread that runs one context's decodes, one at a time. */
export class DecodeThread {
  readonly #libraryFile: string;
  readonly #shared = newDecodeThreadBlock();
  readonly #views = decodeThreadViews(this.#shared);
  #worker!: Worker;
  #ended!: Promise<void>;
  #failure = "";
  #closed = false;
  #busy = false;

  /**
   * Starts the thread; it opens the library in the background, and the first
   * {@link decode} waits for it.
   *
   * @param libraryFile libllama's file (the one the caller opened, so the thread shares its
   *   loaded copy and global state).
   */
  constructor(libraryFile: string) {
    this.#libraryFile = libraryFile;
    this.#spawn();
  }

  /** Resolves once the thread has ended (after {@link close}, or when it died). */
  get ended(): Promise<void> {
    return this.#ended;
  }

  /** Where the thread's time went; the rest of a {@link decode} is the handoff both ways. */
  times(): DecodeThreadTimes {
    const { timing } = this.#views;
    return { llamaDecodeMs: timing[0] as number, deviceWaitMs: timing[1] as number };
  }

  /**
   * Runs `llama_decode` (then waits for the device) on the thread.
   *
   * @param context The `llama_context *`.
   * @param batch The `llama_batch` struct; the arrays it points at must stay unchanged until
   *   this resolves.
   * @returns llama_decode's status.
   * @throws {DecodeThreadError} when the thread cannot start (twice in a row) or died.
   */
  async decode(context: Deno.PointerObject, batch: Uint8Array): Promise<number> {
    const { control } = this.#views;
    if (this.#closed) throw new DecodeThreadError("The decode thread is closed");
    if (this.#busy) throw new DecodeThreadError("The decode thread is already decoding");
    this.#busy = true;
    // A pending `Atomics.waitAsync` alone does not keep Deno's event loop alive.
    this.#worker.ref();
    try {
      await this.#ready();
      this.#views.context[0] = BigInt(Deno.UnsafePointer.value(context));
      this.#views.batch.set(batch);
      this.#settle(DecodeState.requested);
      await this.#leave(DecodeState.requested);
      if (Atomics.load(control, 0) !== DecodeState.done) {
        throw new DecodeThreadError(this.#failure);
      }
      Atomics.store(control, 0, DecodeState.idle);
      return control[1] as number;
    } finally {
      this.#busy = false;
      if (this.#closed) this.#quit();
      else this.#worker.unref();
    }
  }

  /**
   * Ends the thread, after the decode in flight if there is one; {@link ended} resolves when it
   * is gone. Safe to call twice.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#busy) this.#quit();
  }

  #spawn(): void {
    Atomics.store(this.#views.control, 0, DecodeState.starting);
    this.#failure = "The decode thread stopped";
    const data: DecodeThreadData = { libraryFile: this.#libraryFile, shared: this.#shared };
    const worker = new Worker(THREAD_URL, { workerData: data });
    worker.unref();
    worker.on("error", (error: Error) => {
      if (worker === this.#worker) this.#failure = `The decode thread failed: ${error.message}`;
    });
    this.#ended = new Promise((resolve) => {
      worker.on("exit", (code: number) => {
        if (worker === this.#worker) {
          if (!this.#closed) this.#failure += ` (exit code ${code})`;
          this.#settle(DecodeState.failed);
        }
        resolve();
      });
    });
    this.#worker = worker;
  }

  /**
   * Waits until the thread is ready. A thread that could not start gets one fresh start, so a
   * failure that does not repeat costs nothing but the wait.
   */
  async #ready(): Promise<void> {
    const { control } = this.#views;
    await this.#leave(DecodeState.starting);
    if (Atomics.load(control, 0) === DecodeState.idle) return;
    const first = this.#reason();
    this.#spawn();
    this.#worker.ref();
    await this.#leave(DecodeState.starting);
    if (Atomics.load(control, 0) === DecodeState.idle) return;
    const second = this.#reason();
    throw new DecodeThreadError(second === first ? second : `${second} (before that: ${first})`);
  }

  /** Why the thread is not ready: its own words if it wrote any, else what its exit said. */
  #reason(): string {
    const length = this.#views.control[2] as number;
    if (length === 0) return this.#failure;
    this.#views.control[2] = 0;
    return new TextDecoder().decode(this.#views.reason.slice(0, length));
  }

  #quit(): void {
    this.#worker.ref(); // until it has ended, so that `ended` can be awaited
    this.#settle(DecodeState.quit);
  }

  /** Resolves once the state is no longer `state`. */
  async #leave(state: DecodeState): Promise<void> {
    const waiting = Atomics.waitAsync(this.#views.control, 0, state);
    if (waiting.async) await waiting.value;
  }

  #settle(state: DecodeState): void {
    const { control } = this.#views;
    if (Atomics.load(control, 0) === DecodeState.failed) return;
    Atomics.store(control, 0, state);
    Atomics.notify(control, 0);
  }
}
