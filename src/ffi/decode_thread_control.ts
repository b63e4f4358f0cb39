/**
 * What a decode thread (`decode_thread.ts`) and its worker (`decode_thread_main.ts`) share: the
 * layout of the shared control block and the messages that start it, its runs and its single
 * steps.
 *
 * The control block is an `Int32Array` over a `SharedArrayBuffer`: a few fields, then a ring of
 * the steps a run decoded (the token each step sampled, and how long its decode took).
 *
 * @module
 */

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
  /** 1 once the worker has opened the library and takes runs. */
  ready: 5,
  /** How long the last single step's `llama_decode` took, in µs. */
  stepMicros: 6,
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
export const RING_START = 8;

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
 * Decodes one batch, as is, without sampling: a step of the host's, made on this thread so that
 * the thread that computes stays the same from step to step.
 */
export interface StepMessage {
  kind: "step";
  /** `llama_context *`. */
  context: bigint;
  /** The bytes of the `llama_batch`, passed by value to `llama_decode`. */
  batch: ArrayBuffer;
}

/** Starts a run: decode `token` at `position`, sample, and go on with the sampled token. */
export interface RunMessage {
  kind: "run";
  /** `llama_context *`. */
  context: bigint;
  /** `llama_sampler *` of the sequence's chain. */
  sampler: bigint;
  /** The bytes of a one-token `llama_batch` (logits on), passed by value to `llama_decode`. */
  batch: ArrayBuffer;
  /** Address of that batch's token array. */
  tokens: bigint;
  /** Address of that batch's position array. */
  positions: bigint;
  /** The first token to decode. */
  token: number;
  /** Its position. */
  position: number;
  /** Most steps to decode. */
  budget: number;
  /** Tokens after whose sampling the run halts by itself (end of generation). */
  ends: number[];
  /**
   * Whether the chain runs inside the decode graph (attached to the context for the sequence):
   * each step's token is then read with `llama_get_sampled_token_ith` and accepted, as
   * `llama_sampler_sample` would, without the debug line that call logs for every such token
   * (each a trip to the host's event loop through the log callback).
   */
  sampledInGraph: boolean;
}
