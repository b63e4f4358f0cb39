/**
 * The shared memory a {@link DecodeThread} and its thread handshake through: a state word, the
 * decode's status, the context pointer, the thread's time counters, a copy of the `llama_batch`
 * struct, and the reason the thread could not start.
 *
 * @module
 */

import { LlamaBatch } from "./layouts.ts";

/** The handshake's states (word 0 of the control block). */
export enum DecodeState {
  /** The thread is loading the library. */
  starting = 0,
  /** Waiting for a request. */
  idle = 1,
  /** The owner asked for a decode. */
  requested = 2,
  /** The decode finished; its status is in word 1. */
  done = 3,
  /** The owner asked the thread to end. */
  quit = 4,
  /** The thread could not start (or died); no decode will run. */
  failed = 5,
}

/** What the thread is started with. */
export interface DecodeThreadData {
  /** libllama's file. */
  libraryFile: string;
  /** The block {@link decodeThreadViews} reads. */
  shared: SharedArrayBuffer;
}

const CONTROL_WORDS = 4;
const CONTEXT_OFFSET = 16;
const TIMING_OFFSET = 24;
/** Milliseconds in `llama_decode`, milliseconds waiting for the device. */
const TIMING_COUNTERS = 2;
const BATCH_OFFSET = TIMING_OFFSET + TIMING_COUNTERS * 8;
const REASON_OFFSET = BATCH_OFFSET + LlamaBatch.size + (8 - LlamaBatch.size % 8) % 8;
const REASON_BYTES = 1024;

/** Allocates a control block. */
export function newDecodeThreadBlock(): SharedArrayBuffer {
  return new SharedArrayBuffer(REASON_OFFSET + REASON_BYTES);
}

/**
 * Typed views over a control block.
 *
 * @param shared The block.
 * @returns `control` (state, status, length of the reason), `context` (the `llama_context *`),
 *   `timing` (ms in `llama_decode`, ms waiting for the device), `batch` (the struct) and
 *   `reason` (UTF-8 text).
 */
export function decodeThreadViews(shared: SharedArrayBuffer): {
  control: Int32Array<SharedArrayBuffer>;
  context: BigUint64Array<SharedArrayBuffer>;
  timing: Float64Array<SharedArrayBuffer>;
  batch: Uint8Array<SharedArrayBuffer>;
  reason: Uint8Array<SharedArrayBuffer>;
} {
  return {
    control: new Int32Array(shared, 0, CONTROL_WORDS),
    context: new BigUint64Array(shared, CONTEXT_OFFSET, 1),
    timing: new Float64Array(shared, TIMING_OFFSET, TIMING_COUNTERS),
    batch: new Uint8Array(shared, BATCH_OFFSET, LlamaBatch.size),
    reason: new Uint8Array(shared, REASON_OFFSET, REASON_BYTES),
  };
}
