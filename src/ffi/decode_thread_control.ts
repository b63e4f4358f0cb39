/**
 * What a decode thread (`decode_thread.ts`) and its worker (`decode_thread_main.ts`) share: the
 * layout of the shared control block, the commands the host gives through it, and the messages
 * that open the library in the worker or say that it failed.
 *
 * The control block is an `Int32Array` over a `SharedArrayBuffer`: a few fields, a command and
 * its parameters (addresses as two Int32 halves, the `llama_batch` struct's bytes, a run's end
 * tokens), then a ring of the steps a run decoded (the token each step sampled, and how long its
 * decode took). The host writes a command's parameters, then the command with `Atomics.store`
 * (which orders the writes before it for a reader that loads it with `Atomics.load`), then
 * wakes the worker with `Atomics.notify`: no message per step or run.
 *
 * @module
 */

import { LlamaBatch } from "./layouts.ts";

/** Int32 entries the `llama_batch` struct's bytes take in the control block. */
export const BATCH_FIELDS = Math.ceil(LlamaBatch.size / 4);

/** Most end tokens a run halts on by itself; real vocabularies have a handful. */
export const MAX_ENDS = 64;

/** Indices of the control block's fields. */
export const Field = {
  /** {@link RunState} of the current run or single step. */
  state: 0,
  /** Bumped each time the worker publishes a step or halts: the event the host waits on. */
  events: 1,
  /** Steps the worker published in the current run. */
  published: 2,
  /** Steps the host took from the ring in the current run (the worker waits when it is full). */
  taken: 3,
  /**
   * 0, or why the run stopped early: `llama_decode`'s status, or {@link FAILED}. After a single
   * step: its `llama_decode`'s status, or {@link FAILED}.
   */
  status: 4,
  /** 1 once the worker has opened the library and takes commands; 0 again once it left its loop. */
  ready: 5,
  /**
   * How long the last single step's `llama_decode` took, in µs (with its `llama_synchronize`
   * when it was asked to wait for the backends).
   */
  stepMicros: 6,
  /** The {@link Command} the worker is to carry out; it sets it back to `none` as it takes it. */
  command: 7,
  /** `llama_context *`, low 32 bits (the high ones follow). */
  context: 8,
  /** A run's `llama_sampler *` (its chain), low 32 bits (the high ones follow). */
  sampler: 10,
  /** Address of a run's batch's token array, low 32 bits (the high ones follow). */
  tokens: 12,
  /** Address of a run's batch's position array, low 32 bits (the high ones follow). */
  positions: 14,
  /** The first token of a run. */
  token: 16,
  /** Its position. */
  position: 17,
  /** Most steps a run decodes. */
  budget: 18,
  /**
   * 1 when a run's chain runs inside the decode graph (attached to the context for the
   * sequence): each step's token is then read with `llama_get_sampled_token_ith` and accepted,
   * as `llama_sampler_sample` would, without the debug line that call logs for every such token
   * (each a trip to the host's event loop through the log callback).
   */
  sampledInGraph: 19,
  /** How many end tokens a run halts on by itself (at {@link Field.ends}). */
  endCount: 20,
  /** The `llama_batch` struct's bytes ({@link BATCH_FIELDS} entries), passed by value. */
  batch: 21,
  /** A run's end tokens, up to {@link MAX_ENDS}. */
  ends: 21 + BATCH_FIELDS,
  /**
   * A run's grammar (`llama_sampler *`, low 32 bits; the high ones follow), checking each pick
   * of the chain (`grammar_check.ts`); 0 for none.
   */
  grammar: 21 + BATCH_FIELDS + MAX_ENDS,
  /** Address of the grammar chain's saved stages (two 64-bit addresses each), low 32 bits. */
  savedStages: 23 + BATCH_FIELDS + MAX_ENDS,
  /** How many saved stages. */
  savedStageCount: 25 + BATCH_FIELDS + MAX_ENDS,
  /**
   * Address of 256 bytes, 1 for a byte value a grammar run halts after a token's text ends on
   * (the UTF-8 guard must see the next step; `utf8_guard.ts`), low 32 bits.
   */
  haltAfterLastBytes: 26 + BATCH_FIELDS + MAX_ENDS,
  /** The vocabulary size, for a grammar run. */
  nVocab: 28 + BATCH_FIELDS + MAX_ENDS,
  /** Picks a grammar run's grammar refused so far. */
  refusals: 29 + BATCH_FIELDS + MAX_ENDS,
  /**
   * How many best allowed tokens a grammar run's refused pick needs (`GrammarThreadPlan.need`),
   * negative for a greedy chain; 0: all of them.
   */
  grammarNeed: 30 + BATCH_FIELDS + MAX_ENDS,
  /** A grammar run's `llama_vocab *` (to read each token's text), low 32 bits. */
  vocab: 31 + BATCH_FIELDS + MAX_ENDS,
} as const;

/** What the worker is asked to do, in {@link Field.command}. */
export const Command = {
  /** Nothing: the worker waits. */
  none: 0,
  /** Decode the batch once, as is, without sampling, and say how it went. */
  step: 1,
  /** Decode the batch's token, sample, and go on with the sampled token (a run). */
  run: 2,
  /** End the worker's loop: the host is closing the thread. */
  close: 3,
  /**
   * As {@link Command.step}, then wait for the backends (a GPU) to finish the step
   * (`llama_synchronize`) before saying how it went.
   */
  stepAndSynchronize: 4,
} as const;

/** What a run is doing, in {@link Field.state}. */
export const RunState = {
  /** No run, or the last one (or the last single step) halted. */
  halted: 0,
  /** Decoding step after step, or a single step. */
  running: 1,
  /** Asked to halt after the step it is decoding. */
  stopping: 2,
} as const;

/** {@link Field.status} of a run whose worker threw (the library failed to load, say). */
export const FAILED = -10_000;

/** Steps the ring holds: the host takes them as they come, far fewer are ever waiting. */
export const RING_STEPS = 1024;

/** Where the ring starts, after the fields. */
export const RING_START = Field.vocab + 2;

/** Int32 entries of one step in the ring: the token, the decode's duration in µs. */
export const STEP_FIELDS = 2;

/** Int32 entries of the whole control block. */
export const CONTROL_LENGTH = RING_START + RING_STEPS * STEP_FIELDS;

/**
 * Where a run's step lies in the ring.
 *
 * @param step The step's number in its run, from 0.
 * @returns The index of its token; its decode time follows.
 */
export function stepIndex(step: number): number {
  return RING_START + (step % RING_STEPS) * STEP_FIELDS;
}

/** Opens the library in the worker. */
export interface OpenMessage {
  kind: "open";
  /** The libllama file the host opened. */
  llamaFile: string;
  /** The control block. */
  control: SharedArrayBuffer;
}

/** Sent by the worker when it cannot open the library: it takes no runs. */
export interface FailedMessage {
  kind: "failed";
  /** Why. */
  reason: string;
}

/**
 * Stores a 64-bit address in the control block as two Int32 halves, low first.
 *
 * @param control The control block.
 * @param field Where the low half goes.
 * @param address The address.
 * @example
 * ```ts
 * storeAddress(control, Field.context, 0x7f00_1234_5678n);
 * ```
 */
export function storeAddress(control: Int32Array, field: number, address: bigint): void {
  control[field] = Number(BigInt.asIntN(32, address));
  control[field + 1] = Number(BigInt.asIntN(32, address >> 32n));
}

/**
 * Reads a 64-bit address that {@link storeAddress} stored.
 *
 * @param control The control block.
 * @param field Where its low half is.
 * @returns The address.
 * @example
 * ```ts
 * const context = Deno.UnsafePointer.create(loadAddress(control, Field.context));
 * ```
 */
export function loadAddress(control: Int32Array, field: number): bigint {
  const low = BigInt((control[field] as number) >>> 0);
  const high = BigInt((control[field + 1] as number) >>> 0);
  return (high << 32n) | low;
}
