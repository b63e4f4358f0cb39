/**
 * `Embedder`: a model's embeddings context and the way inputs go through it. The context is
 * created with `embeddings = true` and a pooling type (the model's own from its GGUF, or an
 * override), apart from the generation context, and is owned by the embedder: closing the
 * embedder frees it. Inputs are packed into as few `llama_decode` calls as fit (each input its
 * own sequence id, positions from 0, at most {@link EMBED_SEQUENCES} sequences and `contextSize`
 * tokens per decode); after each decode every sequence's pooled vector is read with
 * `llama_get_embeddings_seq` and the memory is cleared for the next batch. Physical and logical
 * batch sizes are equal, so a sequence is never split across micro-batches (pooling needs all
 * of its tokens at once, and non-causal models cannot split at all). Calls take turns a decode
 * at a time: each `embed()` or `rank()` decodes one batch of its inputs, then goes behind the
 * others waiting, so a call of one input waits for at most one batch of a call of thousands (it
 * had waited for all of them: 4-25 s behind 2,048 inputs).
 *
 * @module
 */

import { Batch } from "../ffi/batch.ts";
import { Context } from "../ffi/context.ts";
import type { PoolingType } from "../ffi/layouts.ts";
import type { Model } from "../ffi/model.ts";
import { GenerationError } from "./errors.ts";

/** A pooling type by name, as the `--pooling` flag takes it. */
export type PoolingName = Exclude<keyof typeof PoolingType, "unspecified">;

/** The pooling types, for flag parsing. */
export const POOLING_NAMES: readonly PoolingName[] = ["none", "mean", "cls", "last", "rank"];

/** Most sequences decoded together. */
export const EMBED_SEQUENCES = 16;

/** Longest input when neither the options nor the model say less. */
export const EMBED_CONTEXT = 2048;

/** How to create an {@link Embedder}. */
export interface EmbedderOptions {
  /** Pooling type. Default: the model's own (GGUF `{arch}.pooling_type`), none if it has none. */
  pooling?: PoolingName;
  /** Most tokens per input (and per decode). Default: min(model's training context, 2048). */
  contextSize?: number;
  /** Most inputs per decode. Default {@link EMBED_SEQUENCES}. */
  maxSequences?: number;
  /** CPU threads. Default: the FFI context's default. */
  threads?: number;
}

/** Options for one {@link Embedder.embed} call. */
export interface EmbedOptions {
  /** Scale each vector to unit Euclidean length (llama-server's default). Default true. */
  normalize?: boolean;
  /** Stops between decodes; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** One `embed()` or `rank()` call: its inputs, how far it got, and its promise. */
interface EmbedCall {
  inputs: readonly Int32Array[];
  /** Floats read per input. */
  width: number;
  signal: AbortSignal | undefined;
  /** The first input not yet decoded. */
  next: number;
  out: Float32Array[];
  resolve: (vectors: Float32Array[]) => void;
  reject: (error: unknown) => void;
}

/** A model's embeddings context, batched, its calls taking turns. */
export class Embedder implements Disposable {
  /** The pooling type llama.cpp resolved (the model's own unless overridden). */
  readonly pooling: PoolingName;
  /** Length of each embedding. */
  readonly dimensions: number;
  /** Most tokens one input may have. */
  readonly contextSize: number;
  readonly #context: Context;
  readonly #batch: Batch;
  readonly #maxSequences: number;
  /** Calls with inputs left, in turn order: the first decodes its next batch. */
  readonly #calls: EmbedCall[] = [];
  #driving = false;

  private constructor(context: Context, batch: Batch, maxSequences: number) {
    this.#context = context;
    this.#batch = batch;
    this.#maxSequences = maxSequences;
    const pooling = context.pooling;
    this.pooling = pooling === "unspecified" ? "none" : pooling;
    this.dimensions = context.model.nEmbdOut;
    this.contextSize = context.nBatch;
  }

  /**
   * Creates a model's embeddings context.
   *
   * @param model The model (must outlive the embedder).
   * @param options Pooling, sizes, threads.
   * @returns The embedder; the caller owns it and closes it before the model.
   * @throws {ContextCreateError} when llama.cpp cannot allocate the context.
   * @example
   * ```ts
   * using embedder = await Embedder.create(model, { pooling: "mean" });
   * const [vector] = await embedder.embed([model.tokenize("hello")]);
   * ```
   */
  static async create(model: Model, options: EmbedderOptions = {}): Promise<Embedder> {
    const size = options.contextSize ?? Math.min(model.nCtxTrain || EMBED_CONTEXT, EMBED_CONTEXT);
    const maxSequences = Math.max(1, options.maxSequences ?? EMBED_SEQUENCES);
    const context = await Context.create(model, {
      embeddings: true,
      pooling: options.pooling ?? "unspecified",
      nCtx: size,
      nBatch: size,
      nUbatch: size,
      nSeqMax: maxSequences,
      kvUnified: true,
      ...(options.threads ? { nThreads: options.threads } : {}),
    });
    try {
      return new Embedder(context, new Batch(model.llama, context.nBatch), maxSequences);
    } catch (error) {
      context.close();
      throw error;
    }
  }

  /** Decodes run so far (a batch of inputs takes one). */
  get decodeCount(): number {
    return this.#context.decodeCount;
  }

  /** Whether the context has been freed. */
  get closed(): boolean {
    return this.#context.closed;
  }

  /** Whether a call is running or waiting. */
  get busy(): boolean {
    return this.#driving || this.#calls.length > 0;
  }

  /**
   * Embeds inputs: one pooled vector per input, in order.
   *
   * @param inputs Token ids of each input (at most {@link contextSize} each, none empty).
   * @param options Normalization and abort.
   * @returns One vector of {@link dimensions} floats per input.
   * @throws {GenerationError} `invalid_request` when the model pools nothing or ranks
   *   (a reranker), `context_overflow` for an input that is too long.
   */
  embed(inputs: readonly Int32Array[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    if (this.pooling === "none" || this.pooling === "rank") {
      return Promise.reject(
        new GenerationError(
          "invalid_request",
          this.pooling === "none"
            ? "The model pools no embeddings (pooling type none); pick one with --pooling mean"
            : "The model is a reranker (pooling type rank); it scores with /v1/rerank",
        ),
      );
    }
    const normalize = options.normalize ?? true;
    return this.#call(inputs, this.dimensions, options.signal)
      .then((vectors) => normalize ? vectors.map(normalizeL2) : vectors);
  }

  /**
   * Scores inputs with a reranker's classification head (pooling `rank`): llama.cpp's first
   * score of each sequence, as llama-server reports it.
   *
   * @param inputs Token ids of each query–document pair (see `rerank_prompt.ts`).
   * @param signal Stops between decodes.
   * @returns One score per input, in order.
   * @throws {GenerationError} `invalid_request` when the model is not a reranker.
   */
  rank(inputs: readonly Int32Array[], signal?: AbortSignal): Promise<number[]> {
    if (this.pooling !== "rank") {
      return Promise.reject(
        new GenerationError(
          "invalid_request",
          `The model is not a reranker (its pooling type is ${this.pooling}, not rank)`,
        ),
      );
    }
    return this.#call(inputs, 1, signal).then((scores) => scores.map((s) => s[0] ?? Number.NaN));
  }

  /** Queues a call's inputs for their turns; resolves with `width` pooled floats per input. */
  #call(
    inputs: readonly Int32Array[],
    width: number,
    signal: AbortSignal | undefined,
  ): Promise<Float32Array[]> {
    try {
      this.#checkInputs(inputs);
    } catch (error) {
      return Promise.reject(error);
    }
    const { promise, resolve, reject } = Promise.withResolvers<Float32Array[]>();
    this.#calls.push({ inputs, width, signal, next: 0, out: [], resolve, reject });
    void this.#drive();
    return promise;
  }

  /** Decodes a batch of the first call's inputs at a time, the calls taking turns, until none is left. */
  async #drive(): Promise<void> {
    if (this.#driving) return;
    this.#driving = true;
    try {
      for (let call = this.#calls.shift(); call; call = this.#calls.shift()) {
        try {
          call.signal?.throwIfAborted();
          await this.#decodeNext(call);
        } catch (error) {
          call.reject(error);
          continue;
        }
        if (call.next < call.inputs.length) this.#calls.push(call);
        else call.resolve(call.out);
      }
    } finally {
      this.#driving = false;
    }
  }

  /** Refuses empty inputs and inputs longer than a decode holds. */
  #checkInputs(inputs: readonly Int32Array[]): void {
    inputs.forEach((tokens, index) => {
      if (tokens.length === 0) {
        throw new GenerationError("invalid_request", `Input ${index} is empty`);
      }
      if (tokens.length > this.contextSize) {
        throw new GenerationError(
          "context_overflow",
          `Input ${index} has ${tokens.length} tokens; the embedding context holds ` +
            `${this.contextSize}`,
        );
      }
    });
  }

  /** Packs as many of the call's next inputs as fit into one decode, and reads their vectors. */
  async #decodeNext(call: EmbedCall): Promise<void> {
    const context = this.#context;
    const batch = this.#batch;
    batch.clear();
    const first = call.next;
    while (call.next < call.inputs.length && call.next - first < this.#maxSequences) {
      const tokens = call.inputs[call.next] as Int32Array;
      if (tokens.length > batch.free) break;
      const seqId = call.next - first;
      tokens.forEach((token, position) => batch.add(token, position, seqId, true));
      call.next++;
    }
    context.clearMemory();
    try {
      await context.decode(batch);
      for (let seqId = 0; seqId < call.next - first; seqId++) {
        call.out.push(context.sequenceEmbedding(seqId, call.width));
      }
    } finally {
      context.clearMemory();
    }
  }

  /** Frees the context and its batch; waits for nothing (the owner stops its users first). */
  close(): void {
    this.#context.close();
    this.#batch.close();
  }

  /** Same as {@link close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Scales a vector to unit Euclidean length, as llama.cpp's `common_embd_normalize(…, 2)` does
 * (a zero vector stays zero).
 *
 * @param vector The vector.
 * @returns A new normalized vector.
 * @example
 * ```ts
 * normalizeL2(Float32Array.of(3, 4)); // Float32Array [0.6, 0.8]
 * ```
 */
export function normalizeL2(vector: Float32Array): Float32Array {
  let sum = 0;
  for (const v of vector) sum += v * v;
  const norm = sum > 0 ? 1 / Math.sqrt(sum) : 0;
  return vector.map((v) => v * norm);
}

/**
 * An embedding cut to its first `dimensions` values and scaled back to unit length, as OpenAI's
 * and Ollama's `dimensions` shorten one. Models trained for it (Matryoshka embeddings:
 * nomic-embed-text v1.5, mxbai-embed-large…) keep most of their quality; others lose more.
 *
 * @param vector The full embedding.
 * @param dimensions How many values to keep (at most the vector's length).
 * @returns A new vector.
 * @example
 * ```ts
 * shortenEmbedding(Float32Array.of(3, 4, 12), 2); // Float32Array [0.6, 0.8]
 * ```
 */
export function shortenEmbedding(vector: Float32Array, dimensions: number): Float32Array {
  return normalizeL2(vector.subarray(0, dimensions));
}
