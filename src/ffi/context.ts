/**
 * `Context`: an owned `llama_context` (KV memory, decode, logits). One decode at a time: a
 * second `decode()` while one is in flight throws instead of corrupting the context.
 *
 * @module
 */

import { cString, nativeBuffer } from "./cstring.ts";
import { ContextCreateError, DecodeError } from "./errors.ts";
import { NativeHandle } from "./handle.ts";
import { FlashAttnType, LlamaContextParams, LlamaPerfContextData, PoolingType } from "./layouts.ts";
import type { Batch } from "./batch.ts";
import { type DecodeRun, DecodeThread } from "./decode_thread.ts";
import { FAILED } from "./decode_thread_control.ts";
import type { Model, OffloadReport } from "./model.ts";
import type { Sampler } from "./sampler.ts";
import { physicalCores } from "./physical_cores.ts";
import { ThreadPool } from "./threadpool.ts";

/** How to create a context. Unset fields keep llama.cpp's defaults. */
export interface ContextOptions {
  /** Total context tokens (shared by all sequences). Default: llama.cpp's (4096 or train). */
  nCtx?: number;
  /** Most tokens per `decode()` call. Default 2048 (llama.cpp). */
  nBatch?: number;
  /** Physical micro-batch. Default 512 (llama.cpp). */
  nUbatch?: number;
  /** Parallel sequences. Default 1. */
  nSeqMax?: number;
  /** Threads for generation. Default: {@link defaultThreads}. */
  nThreads?: number;
  /** Threads for prompt processing. Default: same as `nThreads`. */
  nThreadsBatch?: number;
  /** Flash attention. Default `"auto"`. */
  flashAttn?: keyof typeof FlashAttnType;
  /** One KV buffer shared by all sequences (true), or one per sequence. Default true. */
  kvUnified?: boolean;
  /** Compute embeddings (pooled per sequence) instead of logits. Default false. */
  embeddings?: boolean;
  /** How embeddings are pooled. Default `"unspecified"`: the model's own (none if it has none). */
  pooling?: keyof typeof PoolingType;
  /** The ggml type of the KV cache's keys. Default f16. */
  typeK?: number;
  /** The ggml type of the KV cache's values (quantized ones need flash attention). Default f16. */
  typeV?: number;
}

/**
 * Default CPU threads: one per physical core the process may use ({@link physicalCores}), as
 * llama.cpp's tools choose; a second thread on a core's sibling CPU only adds a thread to wait
 * for at every barrier. Generation steps decode on the calling thread, which becomes ggml's
 * first worker, as in llama.cpp's own server. (libllama's default of 4 oversubscribes small
 * machines, and spinning ggml threads that outnumber the cores make every decode several times
 * slower.)
 */
export function defaultThreads(): number {
  return physicalCores();
}

/**
 * Most tokens of a decode made on the event loop's thread: generation steps (a token per stream)
 * are far below it. A prompt's chunks (hundreds of tokens) fill in an attention mask and look up
 * embeddings for milliseconds before the GPU starts, so they stay on a worker thread even when
 * one chunk is shaped like the last.
 */
const LOOP_DECODE_MAX_TOKENS = 64;

/** Where the time of a context's decodes went, summed over them. */
export interface DecodeTimes {
  /**
   * In the `llama_decode` calls (with the hop to a worker thread and back where they run there):
   * the compute on a CPU; building (or reusing) the graph and launching it on a GPU.
   */
  llamaDecodeMs: number;
  /**
   * Of `llamaDecodeMs`, the calls made on the event loop's thread: on a GPU, the generation
   * steps that reuse the previous step's graph (the others build graphs, for milliseconds each,
   * and their share of an average hides what a steady step costs).
   */
  llamaDecodeOnLoopMs: number;
  /**
   * Waiting for a GPU to finish, in the nonblocking `llama_synchronize` calls after them (a
   * decode on the decode thread waits there, within its `llamaDecodeMs`).
   */
  deviceWaitMs: number;
}

/** llama.cpp's own timing counters for a context. */
export interface ContextPerf {
  loadMs: number;
  promptMs: number;
  evalMs: number;
  promptTokens: number;
  evalTokens: number;
  /** Decodes that reused the previous step's graph instead of building one. */
  graphsReused: number;
}

/** An owned `llama_context` over a model. */
export class Context extends NativeHandle {
  /** The model. */
  readonly model: Model;
  /** Context size in tokens. */
  readonly nCtx: number;
  /** Most tokens per decode. */
  readonly nBatch: number;
  /** Tokens per micro-batch: llama.cpp splits a decode into passes of at most this many. */
  readonly nUbatch: number;
  /** Parallel sequences. */
  readonly nSeqMax: number;
  /** Vocabulary size (logits per output row). */
  readonly nVocab: number;
  /** Whether all sequences share one pool of KV cells (else each has its own part). */
  readonly kvUnified: boolean;
  /** The flash attention asked at creation (`auto`: llama.cpp chose). */
  readonly flashAttn: keyof typeof FlashAttnType;
  /**
   * Whether a decode computes on this machine's cores, at least in part (some layer is not on a
   * GPU): its threads then compete with the event loop's for them.
   */
  readonly computesOnHost: boolean;
  /** Number of decodes run. */
  decodeCount = 0;
  /** Of them, decodes that only queued GPU work and ran on the event loop's thread. */
  decodesOnEventLoop = 0;
  /**
   * Of them, decodes made one at a time on the decode thread (see {@link startDecodeThread}); a
   * run's steps ({@link decodeAhead}) are not counted here.
   */
  decodesOnThread = 0;
  /**
   * Turns of the event loop taken while waiting for a GPU that holds every layer (or for the
   * decode thread to have it compute a step and finish).
   */
  deviceWaitTurns = 0;
  /** The KV memory; `null` for models that keep none (encoder-only embedding models). */
  readonly #memory: Deno.PointerObject | null;
  readonly #threadPool: ThreadPool | undefined;
  /** Whether decodes wait for a GPU afterwards (some layer of the model is on one). */
  readonly #waitsForDevice: boolean;
  /** Largest batch decoded on the event loop's thread (0: none; see {@link queuesOnly}). */
  readonly #queueOnlyTokens: number;
  /** Tokens and outputs of the last decode, while its graph may be reused; "" when not. */
  #lastShape = "";
  /** Sequences whose stream a copy made since the last decode overwrites (see copySequence). */
  readonly #pendingStreamCopies = new Set<number>();
  readonly #times: DecodeTimes = { llamaDecodeMs: 0, llamaDecodeOnLoopMs: 0, deviceWaitMs: 0 };
  /** Sampler chains that run inside the decode graph, by sequence. */
  readonly #deviceSamplers = new Map<number, Sampler>();
  #decoding = false;
  /** Callers of {@link idle} waiting for the decode in flight to end. */
  #idleWaiters: (() => void)[] = [];
  /** Decodes a lone sequence's steps by itself; see {@link startDecodeThread}. */
  #decodeThread: DecodeThread | undefined;
  /**
   * The thread that called ggml's last computation, when it is known to have been the pool's
   * first since a pause: the next call from the same thread needs no pause ({@link #pinFor}).
   */
  #lastCaller: "decode-thread" | "pool" | undefined;

  private constructor(
    model: Model,
    pointer: Deno.PointerObject,
    kvUnified: boolean,
    flashAttn: keyof typeof FlashAttnType,
    threadPool?: ThreadPool,
  ) {
    const s = model.llama.symbols;
    super("Context", pointer, () => s.llama_free(pointer), [
      model,
      ...(threadPool ? [threadPool] : []),
    ]);
    this.#threadPool = threadPool;
    this.#waitsForDevice = model.offload.offloaded > 0;
    this.computesOnHost = !queuesOnly(model.offload);
    this.#queueOnlyTokens = this.computesOnHost
      ? 0
      : Math.min(s.llama_n_ubatch(pointer), LOOP_DECODE_MAX_TOKENS);
    this.model = model;
    this.kvUnified = kvUnified;
    this.flashAttn = flashAttn;
    this.nCtx = s.llama_n_ctx(pointer);
    this.nBatch = s.llama_n_batch(pointer);
    this.nUbatch = s.llama_n_ubatch(pointer);
    this.nSeqMax = s.llama_n_seq_max(pointer);
    this.nVocab = model.nVocab;
    this.#memory = s.llama_get_memory(pointer);
  }

  /**
   * Creates a context.
   *
   * @param model The model (must outlive the context).
   * @param options Sizes and threads.
   * @returns The context; the caller owns it.
   * @throws {ContextCreateError} when llama.cpp cannot allocate it.
   * @example
   * ```ts
   * using ctx = await Context.create(model, { nCtx: 2048, nSeqMax: 4 });
   * ```
   */
  static async create(model: Model, options: ContextOptions = {}): Promise<Context> {
    const llama = model.llama;
    const params = new Uint8Array(llama.symbols.llama_context_default_params());
    const { set, get } = LlamaContextParams.on(params);
    if (options.nCtx !== undefined) set("n_ctx", options.nCtx);
    if (options.nBatch !== undefined) set("n_batch", options.nBatch);
    if (options.nUbatch !== undefined) set("n_ubatch", options.nUbatch);
    if (options.nSeqMax !== undefined) set("n_seq_max", options.nSeqMax);
    const threads = options.nThreads ?? defaultThreads();
    set("n_threads", threads);
    set("n_threads_batch", options.nThreadsBatch ?? threads);
    if (options.flashAttn !== undefined) set("flash_attn_type", FlashAttnType[options.flashAttn]);
    if (options.kvUnified !== undefined) set("kv_unified", options.kvUnified);
    if (options.embeddings !== undefined) set("embeddings", options.embeddings);
    if (options.pooling !== undefined) set("pooling_type", PoolingType[options.pooling]);
    if (options.typeK !== undefined) set("type_k", options.typeK);
    if (options.typeV !== undefined) set("type_v", options.typeV);
    const mark = llama.logMark();
    // Reserving the graphs reads the model's adapter set: not beside an adapter load.
    const pointer = await model.gate.shared(() =>
      llama.whileNative(() => llama.symbols.llama_init_from_model(model.pointer, params))
    );
    if (pointer === null) {
      const reasons = llama.recentProblems(mark);
      throw new ContextCreateError(
        "Cannot create a llama.cpp context" + (reasons.length ? `: ${reasons.join("; ")}` : ""),
      );
    }
    const pool = ThreadPool.create(llama, threads);
    if (pool) llama.symbols.llama_attach_threadpool(pointer, pool.pointer, null);
    return new Context(model, pointer, get("kv_unified"), options.flashAttn ?? "auto", pool);
  }

  /** Where the time of this context's decodes went, summed. */
  decodeTimes(): DecodeTimes {
    return { ...this.#times };
  }

  /** Whether a decode is in flight. */
  get busy(): boolean {
    return this.#decoding;
  }

  /**
   * Resolves once no decode is in flight (at once if none is): a run on the decode thread
   * reports its time when it halts, which can be after its stream's last token was taken.
   */
  idle(): Promise<void> {
    if (!this.#decoding) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#idleWaiters.push(resolve);
    return promise;
  }

  #endDecoding(): void {
    this.#decoding = false;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  /**
   * Runs the model over a batch on a worker thread (a nonblocking call), so the event loop keeps
   * serving; when every layer is on a GPU and the batch is a generation step (at most
   * {@link LOOP_DECODE_MAX_TOKENS} tokens) shaped like the last one, the call only queues the
   * device's work and runs on this thread ({@link queuesOnly}). When a GPU computes, a nonblocking
   * call then waits for it on a worker thread, so that reading the logits or the sampled token
   * afterwards does not block the event loop.
   *
   * @param batch Tokens to evaluate; it must stay unchanged until this resolves.
   * @throws {DecodeError} when llama.cpp reports a failure.
   */
  async decode(batch: Batch): Promise<void> {
    const s = this.model.llama.symbols;
    const pointer = this.pointer;
    if (this.#decoding) throw new Error("Context is already decoding");
    if (batch.length === 0) return;
    if (batch.length > this.nBatch) {
      throw new RangeError(`Batch of ${batch.length} tokens exceeds n_batch ${this.nBatch}`);
    }
    this.#decoding = true;
    const mark = this.model.llama.logMark();
    // Held until the decode (and the wait for a GPU) ends: an adapter load must not run beside it.
    const entered = this.model.gate.enterShared();
    const leave = typeof entered === "function" ? entered : await entered;
    try {
      // A batch that only queues GPU work, shaped like the last one (so llama.cpp reuses its
      // graph and ggml-cuda its CUDA graph), is decoded here: handing it to a worker thread and
      // back costs more than the call. A new shape goes to a worker thread, since building the
      // graphs takes milliseconds that would hold up the event loop (the first token's write
      // after a prompt, say); so does anything that computes on the CPU, where ggml's
      // per-decode debug lines stay native (each would cost a trip to the event loop).
      const shape = `${batch.length}/${batch.outputs}`;
      const onThisThread = batch.length <= this.#queueOnlyTokens && shape === this.#lastShape;
      this.#lastShape = shape;
      if (onThisThread) {
        this.decodesOnEventLoop++;
        this.#lastCaller = undefined;
      }
      const start = performance.now();
      const { status, synchronized } = onThisThread
        ? { status: s.llama_decode_queue(pointer, batch.struct), synchronized: false }
        : await this.#decodeOnWorker(batch);
      this.#pendingStreamCopies.clear();
      const decoded = performance.now();
      this.#times.llamaDecodeMs += decoded - start;
      if (onThisThread) this.#times.llamaDecodeOnLoopMs += decoded - start;
      this.decodeCount++;
      if (status !== 0) throw new DecodeError(status, this.model.llama.recentProblems(mark));
      if (this.#waitsForDevice && !synchronized) {
        await (this.#queueOnlyTokens > 0
          ? this.#waitForDeviceTurning()
          : s.llama_synchronize(pointer));
        this.#times.deviceWaitMs += performance.now() - decoded;
      }
    } finally {
      leave();
      this.#endDecoding();
    }
  }

  /**
   * Waits for the GPU with a nonblocking `llama_synchronize` while this thread keeps turning the
   * event loop ({@link Llama.yieldToIo}) instead of sleeping until the wait ends: network I/O
   * runs as before, and the thread stays awake for the next step's `llama_decode`, whose host
   * part it runs. After a sleep that part ran slower (280–300 µs a call on the H200 machine
   * against 214 on a thread that had kept busy, `bench/decode_probe.c`), and waking took time
   * too: one stream went from 773 to 818 tok/s through HTTP, `shimmy bench` from 840 to 912.
   */
  async #waitForDeviceTurning(): Promise<void> {
    let done = false;
    const synced = this.model.llama.symbols.llama_synchronize(this.pointer);
    synced.then(() => (done = true), () => (done = true));
    while (!done) {
      this.deviceWaitTurns++;
      await this.model.llama.yieldToIo();
    }
    await synced;
  }

  /**
   * Starts the thread that {@link decodeAhead} runs on (a `DecodeThread`); it is ready some
   * milliseconds later. Until then, and whenever it is in a run, failed or closed, decodes that
   * compute on a worker thread go to Deno's pool; otherwise they go to it one at a time (so one
   * thread calls ggml step after step, and the pool needs no pause between them). Does nothing
   * when the thread is started already.
   */
  startDecodeThread(): void {
    if (this.#decodeThread) return;
    try {
      this.#decodeThread = new DecodeThread(this.model.llama.llamaFile);
    } catch (error) {
      // Steps go through the event loop as they would without it.
      console.error(`Warning: no decode thread (${(error as Error).message})`);
    }
  }

  /** Whether {@link decodeAhead} can start now: its thread is ready and no decode is in flight. */
  get canDecodeAhead(): boolean {
    return !this.#decoding && this.#decodeThread?.ready === true;
  }

  /**
   * Decodes a one-token batch and then each token `sampler` samples, step after step, on the
   * decode thread (see {@link startDecodeThread}): the run's steps come as they are sampled,
   * and it halts when the budget is spent, an end token is sampled, it is stopped, or a decode
   * fails. The context counts as decoding until then: the caller must leave it, the sampler and
   * the batch alone until the run has halted (`DecodeRun.next` returned null).
   *
   * @param batch The first token, at its position and sequence, with logits.
   * @param sampler The sequence's chain: on the CPU, or attached to this context for the
   *   sequence (the thread then reads the token the graph sampled).
   * @param budget Most steps.
   * @param ends Tokens that end the run once sampled.
   * @param haltAfterLastBytes With a chain that has a grammar: 256 bytes, 1 for a byte value the
   *   run halts after a token's text ends on (`GUARDED_LAST_BYTES`); it must stay alive during
   *   the run.
   * @returns The run.
   * @throws {Error} when {@link canDecodeAhead} is false.
   * @throws {RangeError} when the batch is not one token with logits, or the chain has a grammar
   *   and no `haltAfterLastBytes` came.
   */
  async decodeAhead(
    batch: Batch,
    sampler: Sampler,
    budget: number,
    ends: readonly number[],
    haltAfterLastBytes?: Uint8Array<ArrayBuffer>,
  ): Promise<DecodeRun> {
    const thread = this.#decodeThread;
    if (!thread || !this.canDecodeAhead) throw new Error("The decode thread is not ready");
    if (batch.length !== 1 || batch.outputs !== 1) {
      throw new RangeError("A run starts from one token with logits");
    }
    const grammar = sampler.grammarPlan;
    if (grammar && haltAfterLastBytes?.length !== 256) {
      throw new RangeError("A run with a grammar needs the 256 bytes of where to halt");
    }
    this.#decoding = true;
    let leave: () => void = () => {};
    try {
      const entered = this.model.gate.enterShared();
      leave = typeof entered === "function" ? entered : await entered;
      this.#pinFor("decode-thread");
    } catch (error) {
      this.#endDecoding();
      throw error;
    }
    const { promise: halted, resolve } = Promise.withResolvers<void>();
    // Keeps llama.cpp's log callback reachable from the thread while the run lasts.
    void this.model.llama.whileNative(() => halted, { ggmlLog: false });
    const release = () => {
      leave();
      this.#endDecoding();
      resolve();
    };
    const plan = {
      context: this.pointer,
      sampler: sampler.pointer,
      batch,
      budget,
      ends,
      sampledInGraph: sampler.sampledInGraph,
      ...(grammar && haltAfterLastBytes
        ? {
          grammar: { ...grammar, vocab: this.model.vocab, nVocab: this.nVocab, haltAfterLastBytes },
        }
        : {}),
    };
    try {
      return thread.start(plan, (run) => {
        this.#pendingStreamCopies.clear();
        this.#times.llamaDecodeMs += run.decodeMs;
        this.decodeCount += run.steps;
        release();
      });
    } catch (error) {
      release(); // the thread failed while the gate was awaited
      throw error;
    }
  }

  /**
   * Runs `llama_decode` on the decode thread when it is ready, else (or when it fails during the
   * call) on a thread of Deno's blocking pool. On the decode thread, a decode whose work a GPU
   * does is also waited for there (`synchronized` then): the step's outputs are ready as soon as
   * the thread says it is done, instead of after one more nonblocking call for the wait. A lone
   * request's first token on an H100 came 0.89–0.95× llama-server's TTFT against 0.95–0.98×
   * (`bench/README.md`, "A prompt step's GPU wait on the decode thread").
   */
  async #decodeOnWorker(batch: Batch): Promise<{ status: number; synchronized: boolean }> {
    const llama = this.model.llama;
    const pointer = this.pointer;
    const thread = this.#decodeThread;
    if (thread?.ready) {
      this.#pinFor("decode-thread");
      const synchronize = this.#waitsForDevice;
      // With every layer on a GPU, the event loop keeps turning meanwhile, as it does while it
      // waits for one itself (#waitForDeviceTurning): asleep, it woke later.
      const turn = this.#queueOnlyTokens > 0
        ? () => (this.deviceWaitTurns++, llama.yieldToIo())
        : undefined;
      const { status } = await llama.whileNative(
        () => thread.step(pointer, batch, { synchronize, turn }),
        { ggmlLog: false },
      );
      // A thread that failed said so once; this batch and the next go to Deno's pool.
      if (status !== FAILED) {
        this.decodesOnThread++;
        return { status, synchronized: synchronize };
      }
    }
    this.#pinFor("pool");
    const status = await llama.whileNative(
      () => llama.symbols.llama_decode(pointer, batch.struct),
      { ggmlLog: false },
    );
    return { status, synchronized: false };
  }

  /**
   * Pauses the ggml pool when pinned (see `ThreadPool.pinNextCaller`) unless the next computation
   * is called from the thread that called the last one since a pause: that thread is the pool's
   * first already, on its core. Deno's pool hands each call to whichever of its threads is free,
   * so a call there always needs the pause.
   *
   * @param caller Who calls the next computation.
   */
  #pinFor(caller: "decode-thread" | "pool"): void {
    if (caller === "pool" || this.#lastCaller !== caller) this.#threadPool?.pinNextCaller();
    this.#lastCaller = caller;
  }

  /**
   * The logits of one output row of the last decode.
   *
   * @param batchIndex Index of the token in the batch (it must have asked for logits).
   * @returns A view over llama.cpp's buffer, valid until the next decode.
   */
  logits(batchIndex: number): Float32Array {
    const p = this.model.llama.symbols.llama_get_logits_ith(this.pointer, batchIndex);
    if (p === null) throw new RangeError(`No logits for batch index ${batchIndex}`);
    return new Float32Array(nativeBuffer(p, this.nVocab * 4));
  }

  /**
   * Runs a sequence's sampler chain inside the decode graph, on the device that computes the
   * output layer (llama.cpp's backend sampling): the decode then returns the chosen token
   * instead of a row of logits, and `sampler.sample()` reads it. Only chains whose every stage
   * has a device version qualify ({@link Sampler.deviceCapable}); a chain runs on the device
   * once in its life, and must be detached (or closed, which detaches it) before it is freed.
   * The next decode rebuilds the graph.
   *
   * @param seqId The sequence.
   * @param sampler Its chain; stays owned by the caller.
   * @throws {Error} when the chain does not qualify, was attached before, or another chain is
   *   attached to the sequence.
   */
  attachSampler(seqId: number, sampler: Sampler): void {
    const pointer = this.pointer;
    if (this.#decoding) throw new Error("Cannot attach a sampler while the context is decoding");
    if (this.#deviceSamplers.has(seqId)) {
      throw new Error(`Sequence ${seqId} already has a sampler on the device`);
    }
    sampler.claimForDevice(() => this.detachSampler(seqId));
    if (!this.model.llama.symbols.llama_set_sampler(pointer, seqId, sampler.pointer)) {
      sampler.releasedByDevice(); // closing it must not detach a later chain of this sequence
      throw new Error(`llama.cpp cannot run the sampler of sequence ${seqId} on the device`);
    }
    this.#deviceSamplers.set(seqId, sampler);
    this.#lastShape = "";
  }

  /** Stops running a sequence's sampler on the device; nothing happens if none runs there. */
  detachSampler(seqId: number): void {
    const sampler = this.#deviceSamplers.get(seqId);
    if (!sampler || this.closed) return;
    if (this.#decoding) throw new Error("Cannot detach a sampler while the context is decoding");
    this.model.llama.symbols.llama_set_sampler(this.pointer, seqId, null);
    this.#deviceSamplers.delete(seqId);
    this.#lastShape = "";
    sampler.releasedByDevice();
  }

  /** How many sequences sample on the device now. */
  get deviceSamplerCount(): number {
    return this.#deviceSamplers.size;
  }

  /** Whether the context keeps KV memory (encoder-only embedding models keep none). */
  get keepsMemory(): boolean {
    return this.#memory !== null;
  }

  /** The KV memory, for the calls that need one. */
  #kvMemory(): Deno.PointerObject {
    void this.pointer;
    if (this.#memory === null) throw new Error("This model's context keeps no KV memory");
    return this.#memory;
  }

  /** Removes positions [p0, p1) of a sequence from the KV memory (-1 = open end). */
  removeTokens(seqId: number, p0 = -1, p1 = -1): boolean {
    return this.model.llama.symbols.llama_memory_seq_rm(this.#kvMemory(), seqId, p0, p1);
  }

  /**
   * Copies positions [p0, p1) of one sequence to another. With a KV stream per sequence (not
   * {@link kvUnified}) only whole sequences can be copied between streams (llama.cpp aborts the
   * process on a part), and the copy of the stream's buffers happens at the start of the next
   * decode, which then goes to a worker thread.
   *
   * @throws {RangeError} for a part of a sequence copied to another stream.
   */
  copySequence(from: number, to: number, p0 = -1, p1 = -1): void {
    const memory = this.#kvMemory();
    if (!this.kvUnified && from !== to) {
      if (p0 > 0 || p1 > 0) {
        throw new RangeError(
          `Only whole sequences can be copied between KV streams (asked for [${p0}, ${p1}))`,
        );
      }
      this.#lastShape = "";
      this.#pendingStreamCopies.add(from).add(to);
    }
    this.model.llama.symbols.llama_memory_seq_cp(memory, from, to, p0, p1);
  }

  /**
   * Moves sequence `from`'s cells to sequence `to` and `to`'s to `from`, through host memory
   * (`llama_state_seq_get_data` / `_set_data`): where {@link copySequence} would overwrite what
   * `to` holds, its cache is kept. Only between sequences that no copy since the last decode
   * touches and while no decode runs (else it would read cells a pending copy replaces).
   *
   * @param maxBytes The most the two states may take together; larger ones are not swapped
   *   (on a GPU they cross the bus twice while every stream waits).
   * @returns Whether `from`'s cells are now `to`'s (when not, `to` may have lost its own: copy
   *   instead), whether `to`'s old cells are now `from`'s (when not, `from` is empty), and the
   *   two states' bytes together (0 when they were not measured).
   */
  swapSequences(
    from: number,
    to: number,
    maxBytes = Infinity,
  ): { moved: boolean; kept: boolean; bytes: number } {
    const unmoved = { moved: false, kept: false, bytes: 0 };
    const pending = this.#pendingStreamCopies;
    if (this.#decoding || pending.has(from) || pending.has(to)) return unmoved;
    const s = this.model.llama.symbols;
    const fromBytes = s.llama_state_seq_get_size(this.pointer, from);
    const toBytes = s.llama_state_seq_get_size(this.pointer, to);
    const bytes = Number(fromBytes + toBytes);
    if (bytes > maxBytes) return { ...unmoved, bytes };
    const moving = this.#sequenceState(from, fromBytes);
    const kept = this.#sequenceState(to, toBytes);
    if (!moving || !kept) return { ...unmoved, bytes };
    this.#lastShape = "";
    this.removeTokens(to);
    if (s.llama_state_seq_set_data(this.pointer, moving, BigInt(moving.length), to) === 0n) {
      return { ...unmoved, bytes };
    }
    this.removeTokens(from);
    const back = s.llama_state_seq_set_data(this.pointer, kept, BigInt(kept.length), from);
    return { moved: true, kept: back !== 0n, bytes };
  }

  /**
   * A sequence's cells as `llama_state_seq_get_data` writes them (`size` bytes, as
   * `llama_state_seq_get_size` counts them), or undefined on failure.
   */
  #sequenceState(seqId: number, size: bigint): Uint8Array | undefined {
    const state = new Uint8Array(Number(size));
    const written = this.model.llama.symbols.llama_state_seq_get_data(
      this.pointer,
      state,
      size,
      seqId,
    );
    return written === size ? state : undefined;
  }

  /**
   * Whether a sequence is part of a copy between KV streams that the next decode makes (see
   * {@link copySequence}): its cells are not to be read or replaced until then.
   */
  copyPending(seqId: number): boolean {
    return this.#pendingStreamCopies.has(seqId);
  }

  /**
   * Writes a sequence's cells and the tokens they hold to a file (`llama_state_seq_save_file`,
   * the format llama-server's slot files have), on a worker thread while no decode runs.
   *
   * @param seqId The sequence.
   * @param path Where to write it (replaced if it exists).
   * @param tokens What to store beside the cells (read back by {@link loadSequenceFile}).
   * @param admit Told the file's size before a byte of it is written, runs `write` (perhaps
   *   after waiting) and returns what it returned, or throws to refuse the file; no decode runs
   *   meanwhile. Default: the file is written at once.
   * @returns The bytes written, or 0 when llama.cpp could not measure or write the file.
   */
  saveSequenceFile(
    seqId: number,
    path: string,
    tokens: Int32Array,
    admit: (bytes: number, write: () => Promise<number>) => Promise<number> = (_, write) => write(),
  ): Promise<number> {
    const s = this.model.llama.symbols;
    const write = async () =>
      Number(
        await s.llama_state_seq_save_file(
          this.pointer,
          cString(path),
          seqId,
          tokens.length > 0 ? tokens : null,
          BigInt(tokens.length),
        ),
      );
    return this.#withCacheFile(() => {
      const state = Number(s.llama_state_seq_get_size(this.pointer, seqId));
      if (state === 0) return Promise.resolve(0);
      return admit(sequenceFileSize(state, tokens.length), write);
    });
  }

  /**
   * Reads a file that {@link saveSequenceFile} (or llama-server's slot save) wrote into a
   * sequence, in place of what it held (`llama_state_seq_load_file`), on a worker thread while
   * no decode runs.
   *
   * @param seqId The sequence that takes the cells.
   * @param path The file.
   * @returns The tokens stored beside the cells and the bytes read, or undefined when the file
   *   could not be read or its cells do not fit the KV memory (the sequence is then empty).
   */
  loadSequenceFile(
    seqId: number,
    path: string,
  ): Promise<{ tokens: Int32Array; bytes: number } | undefined> {
    const s = this.model.llama.symbols;
    const file = cString(path);
    return this.#withCacheFile(async () => {
      const count = new BigUint64Array(1);
      // Without a token buffer llama.cpp only reads how many tokens the file holds.
      if (await s.llama_state_seq_load_file(this.pointer, file, seqId, null, 0n, count) === 0n) {
        return undefined;
      }
      const tokens = new Int32Array(Math.max(1, Number(count[0])));
      this.removeTokens(seqId);
      const bytes = await s.llama_state_seq_load_file(
        this.pointer,
        file,
        seqId,
        tokens,
        BigInt(tokens.length),
        count,
      );
      if (bytes === 0n) {
        this.removeTokens(seqId);
        return undefined;
      }
      return { tokens: tokens.subarray(0, Number(count[0])), bytes: Number(bytes) };
    });
  }

  /**
   * Runs a native call that reads or writes the KV memory on a worker thread, as a decode would
   * run: none may start meanwhile, nor an adapter load.
   */
  async #withCacheFile<T>(call: () => Promise<T>): Promise<T> {
    // A run on the decode thread can report its end after its stream's last token was taken.
    while (this.#decoding) await this.idle();
    this.#decoding = true;
    this.#lastShape = "";
    try {
      return await this.model.gate.shared(() => this.model.llama.whileNative(call));
    } finally {
      this.#endDecoding();
    }
  }

  /** Keeps only one sequence in the KV memory. */
  keepSequence(seqId: number): void {
    this.model.llama.symbols.llama_memory_seq_keep(this.#kvMemory(), seqId);
  }

  /** Highest position stored for a sequence, or -1 when empty. */
  maxPosition(seqId: number): number {
    return this.model.llama.symbols.llama_memory_seq_pos_max(this.#kvMemory(), seqId);
  }

  /** Clears the whole KV memory (nothing to do for a context that keeps none). */
  clearMemory(): void {
    void this.pointer;
    if (this.#memory === null) return;
    this.model.llama.symbols.llama_memory_clear(this.#memory, true);
  }

  /** The pooling type llama.cpp resolved for this context (the model's own when unspecified). */
  get pooling(): keyof typeof PoolingType {
    const value = this.model.llama.symbols.llama_pooling_type(this.pointer);
    const name = (Object.keys(PoolingType) as (keyof typeof PoolingType)[])
      .find((key) => PoolingType[key] === value);
    return name ?? "unspecified";
  }

  /**
   * The pooled output of one sequence after the last decode of an embeddings context: the
   * sequence's embedding, or for `rank` pooling its classifier scores.
   *
   * @param seqId The sequence.
   * @param length How many floats to read (`Model.nEmbdOut`, or the score count for `rank`).
   * @returns A copy of the values.
   * @throws {RangeError} when the last decode produced nothing for the sequence.
   */
  sequenceEmbedding(seqId: number, length: number): Float32Array {
    const p = this.model.llama.symbols.llama_get_embeddings_seq(this.pointer, seqId);
    if (p === null) throw new RangeError(`No pooled embedding for sequence ${seqId}`);
    return new Float32Array(nativeBuffer(p, length * 4)).slice();
  }

  /** llama.cpp's timing counters. */
  perf(): ContextPerf {
    const data = new Uint8Array(this.model.llama.symbols.llama_perf_context(this.pointer));
    const { get } = LlamaPerfContextData.on(data);
    return {
      loadMs: get("t_load_ms"),
      promptMs: get("t_p_eval_ms"),
      evalMs: get("t_eval_ms"),
      promptTokens: get("n_p_eval"),
      evalTokens: get("n_eval"),
      graphsReused: get("n_reused"),
    };
  }

  /** Frees the context; refuses while a decode is in flight (its memory is in use). */
  override close(): void {
    if (this.#decoding) throw new Error("Cannot close a context while it is decoding");
    for (const seqId of [...this.#deviceSamplers.keys()]) this.detachSampler(seqId);
    super.close();
    this.#threadPool?.close();
    this.#decodeThread?.close();
  }
}

/**
 * Whether a model's llama_decode only prepares inputs and queues work for a GPU, for a batch of
 * at most one micro-batch: every layer, the output layer included, is offloaded. (The token
 * embeddings are still looked up on the CPU, a copy per token.) Then the call is short enough
 * to make on the event loop; a larger batch may wait for the device between micro-batches.
 *
 * @param offload The model's offload report.
 * @returns Whether every layer is on a GPU.
 * @example
 * ```ts
 * queuesOnly({ offloaded: 17, total: 17 }); // true
 * queuesOnly({ offloaded: 16, total: 17 }); // false
 * ```
 */
export function queuesOnly(offload: OffloadReport): boolean {
  return offload.total > 0 && offload.offloaded >= offload.total;
}

/**
 * The size of the file `llama_state_seq_save_file` writes for a sequence: its magic, version and
 * token count (three 32-bit words), the tokens, then the cells as `llama_state_seq_get_size`
 * counts them, less the magic and sequence id (two words) that the in-memory state starts with
 * and the file lacks. llama.cpp asserts the same sum after writing.
 */
function sequenceFileSize(stateBytes: number, tokenCount: number): number {
  return 3 * 4 + tokenCount * 4 + stateBytes - 2 * 4;
}
