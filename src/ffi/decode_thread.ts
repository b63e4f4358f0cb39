/**
 * A thread of its own that decodes one sequence step after step on the CPU and samples each
 * step's token itself, so that the next step starts at once instead of after a trip through the
 * event loop. llama-server's main loop works this way; Shimmy's steps otherwise hop from a
 * thread of Deno's pool to the event loop (which samples) and back for every token.
 *
 * On 2 cores that hop left both cores idle about 2% of a lone stream's time and cost the event
 * loop's thread 230–430 µs of CPU a token; with the steps decoded here the event loop spends
 * 120–215 µs a token (taking the tokens and writing them out), and one stream measured 0.97–0.98×
 * llama-server's decode rate against 0.94–0.96× (`bench/README.md`, "A decode thread for a lone
 * CPU stream"). After publishing a token the thread yields its core, so that the event loop, just
 * woken to take it, does not wait for a core for up to a time slice.
 *
 * The thread is a `Worker` that opens libllama again (the loaded library, so the host's
 * pointers hold there) and talks through a shared control block (`decode_thread_control.ts`):
 * the host writes each run's or single step's parameters and command there and wakes the
 * worker (a few stores and an `Atomics.notify`, no message), and the worker publishes every
 * sampled token there for the host, which waits on it without a message per step.
 * While a run goes on, the host must leave the context, the sampler chain and the batch alone;
 * {@link DecodeRun.halted} tells when they are its own again.
 *
 * Between runs the thread also decodes the host's other batches one at a time
 * ({@link DecodeThread.step}: a step of several streams, a prompt's chunk, and on a GPU the wait
 * for it to finish), so that one thread computes step after step: ggml then keeps its core for
 * it, where a call on Deno's pool needs the pool paused first (`ThreadPool.pinNextCaller`) and a
 * dispatch of its own, both on the event loop.
 *
 * @module
 */

import type { Batch } from "./batch.ts";
import type { GrammarThreadPlan } from "./grammar_check.ts";
import {
  Command,
  CONTROL_LENGTH,
  FAILED,
  type FailedMessage,
  Field,
  MAX_ENDS,
  type OpenMessage,
  RunState,
  stepIndex,
  storeAddress,
} from "./decode_thread_control.ts";
import { LlamaBatch } from "./layouts.ts";

/** The worker module; `scripts/compile.ts` embeds it. */
const WORKER_URL = new URL("./decode_thread_main.ts", import.meta.url);

/** A step decoded on the thread. */
export interface DecodedStep {
  /** The token sampled from the step's logits. */
  token: number;
  /** How long the step's `llama_decode` took, in ms. */
  decodeMs: number;
}

/** How a single step went; see {@link DecodeThread.step}. */
export interface StepResult {
  /** `llama_decode`'s status, or {@link FAILED} when the thread itself failed. */
  status: number;
  /** How long the `llama_decode` call took, in ms (0 when the thread failed). */
  decodeMs: number;
}

/** What a run decodes; see {@link DecodeThread.start}. */
export interface DecodeRunPlan {
  /** `llama_context *`. */
  context: Deno.PointerValue;
  /** `llama_sampler *` of the sequence's chain. */
  sampler: Deno.PointerValue;
  /** A one-token batch holding the first token, at its position and sequence, logits on. */
  batch: Batch;
  /** Most steps to decode. */
  budget: number;
  /** Tokens after whose sampling the run halts by itself: at most `MAX_ENDS` (64) distinct. */
  ends: readonly number[];
  /** Whether the chain is attached to the context and samples inside the decode graph. */
  sampledInGraph: boolean;
  /** The chain's grammar, which checks each pick (`grammar_check.ts`); none when absent. */
  grammar?: GrammarRunPlan;
}

/** A run's grammar: what the thread needs to pick as `Sampler.sample` does with it. */
export interface GrammarRunPlan extends GrammarThreadPlan {
  /** `llama_vocab *` of the model, to read the text of each token the run samples. */
  vocab: Deno.PointerValue;
  /** Tokens in the vocabulary. */
  nVocab: number;
  /**
   * 256 bytes, 1 for a byte value the run halts after a token's text ends on (the UTF-8 guard
   * must see the next step: `GUARDED_LAST_BYTES`); must stay alive during the run.
   */
  haltAfterLastBytes: Uint8Array<ArrayBuffer>;
}

/**
 * The worker thread and its control block. One run or single step at a time.
 *
 * @example
 * ```ts
 * using thread = new DecodeThread(llama.llamaFile);
 * // later, once thread.ready:
 * const run = thread.start({ context, sampler, batch, budget: 100, ends: [eos] });
 * for (let steps = await run.next(); steps; steps = await run.next()) console.log(steps);
 * // once the run has halted, one batch:
 * const { status, decodeMs } = await thread.step(context, batch);
 * ```
 */
export class DecodeThread implements Disposable {
  readonly #worker: Worker;
  readonly #control = new Int32Array(new SharedArrayBuffer(CONTROL_LENGTH * 4));
  /** The control block's bytes for the `llama_batch` struct. */
  readonly #batchBytes = new Uint8Array(this.#control.buffer, Field.batch * 4, LlamaBatch.size);
  #failed = false;
  #warned = false;
  #run: DecodeRun | undefined;
  #stepping = false;
  #closed = false;

  /**
   * Starts the worker; it takes runs once {@link ready}.
   *
   * @param llamaFile The libllama file this process opened.
   */
  constructor(llamaFile: string) {
    this.#worker = new Worker(WORKER_URL, { type: "module", name: "shimmy-decode" });
    this.#worker.onmessage = (event: MessageEvent<FailedMessage>) => this.#fail(event.data.reason);
    this.#worker.onerror = (event: ErrorEvent) => {
      event.preventDefault(); // handled here: the thread is not used again
      this.#fail(event.message);
    };
    const open: OpenMessage = { kind: "open", llamaFile, control: this.#control.buffer };
    this.#worker.postMessage(open);
  }

  /** Whether the worker has opened the library and no run or single step is going on. */
  get ready(): boolean {
    return !this.#closed && !this.#failed && this.#run === undefined && !this.#stepping &&
      Atomics.load(this.#control, Field.ready) === 1;
  }

  /**
   * Decodes one batch on the thread, as a blocking `llama_decode` there: no sampling. The thread
   * is not {@link ready} until this resolves; the caller must leave the context and the batch
   * alone until then. A thread that failed (status {@link FAILED}) is not used again.
   *
   * @param context `llama_context *`.
   * @param batch What to decode; its arrays are read during the call.
   * @param options `synchronize`: also wait there for the backends (a GPU) to finish the step
   *   (`llama_synchronize`), so that its outputs can be read at once. `turn`: awaited over and
   *   over while the thread works, instead of sleeping until it is done.
   * @returns `llama_decode`'s status and how long the call took.
   * @throws {Error} when the thread is not {@link ready}.
   */
  async step(
    context: Deno.PointerValue,
    batch: Batch,
    options: { synchronize?: boolean; turn?: () => Promise<void> } = {},
  ): Promise<StepResult> {
    if (!this.ready) throw new Error("The decode thread is not ready");
    const control = this.#control;
    storeAddress(control, Field.context, address(context));
    this.#batchBytes.set(batch.struct);
    Atomics.store(control, Field.status, 0);
    Atomics.store(control, Field.stepMicros, 0);
    Atomics.store(control, Field.state, RunState.running);
    this.#stepping = true;
    try {
      this.#command(options.synchronize ? Command.stepAndSynchronize : Command.step);
      for (;;) {
        const events = Atomics.load(control, Field.events);
        if (Atomics.load(control, Field.state) === RunState.halted) break;
        if (options.turn) {
          await options.turn();
          continue;
        }
        const wait = Atomics.waitAsync(control, Field.events, events);
        if (wait.async) await wait.value;
      }
    } finally {
      this.#stepping = false;
    }
    const status = Atomics.load(control, Field.status);
    // A step that threw: the worker's message says why (see #fail).
    if (status === FAILED) this.#failed = true;
    return { status, decodeMs: Atomics.load(control, Field.stepMicros) / 1000 };
  }

  /**
   * Starts decoding: the batch's token, then each sampled one, until the budget is spent, an end
   * token is sampled, {@link DecodeRun.stop} is called, or a decode fails.
   *
   * @param plan What to decode.
   * @param onHalted Called once the run has halted and its last step was taken.
   * @returns The run; take its steps until it halts.
   * @throws {Error} when the thread is not {@link ready}.
   * @throws {RangeError} when the plan has more than `MAX_ENDS` distinct end tokens.
   */
  start(plan: DecodeRunPlan, onHalted: (run: DecodeRun) => void = () => {}): DecodeRun {
    if (!this.ready) throw new Error("The decode thread is not ready");
    const ends = [...new Set(plan.ends)];
    if (ends.length > MAX_ENDS) {
      throw new RangeError(`A run halts on at most ${MAX_ENDS} end tokens, got ${ends.length}`);
    }
    const control = this.#control;
    storeAddress(control, Field.context, address(plan.context));
    storeAddress(control, Field.sampler, address(plan.sampler));
    storeAddress(control, Field.tokens, plan.batch.tokenArrayAddress);
    storeAddress(control, Field.positions, plan.batch.positionArrayAddress);
    this.#batchBytes.set(plan.batch.struct);
    control[Field.token] = plan.batch.tokenAt(0);
    control[Field.position] = plan.batch.positionAt(0);
    control[Field.budget] = plan.budget;
    control[Field.sampledInGraph] = plan.sampledInGraph ? 1 : 0;
    storeGrammar(control, plan.grammar);
    control[Field.endCount] = ends.length;
    control.set(ends, Field.ends);
    Atomics.store(control, Field.published, 0);
    Atomics.store(control, Field.taken, 0);
    Atomics.store(control, Field.status, 0);
    Atomics.store(control, Field.state, RunState.running);
    const run = new DecodeRun(control, () => {
      this.#run = undefined;
      // A run that threw: the worker's message says why (see #fail).
      if (Atomics.load(control, Field.status) === FAILED) this.#failed = true;
      onHalted(run);
    });
    this.#run = run;
    this.#command(Command.run);
    return run;
  }

  /**
   * Gives the worker a command whose parameters are in the control block: the store orders
   * them before it (the worker loads the command with `Atomics.load`), the notify wakes it.
   */
  #command(command: number): void {
    Atomics.store(this.#control, Field.command, command);
    Atomics.notify(this.#control, Field.command);
  }

  /** Marks the thread unusable, ends a run it was in, and says so once. */
  #fail(reason: string): void {
    if (!this.#warned) {
      console.error(`Warning: the decode thread failed (${reason}); steps go on without it`);
    }
    this.#warned = true;
    if (this.#failed) return;
    this.#failed = true;
    Atomics.store(this.#control, Field.status, FAILED);
    Atomics.store(this.#control, Field.state, RunState.halted);
    Atomics.add(this.#control, Field.events, 1);
    Atomics.notify(this.#control, Field.events);
  }

  /**
   * Ends the worker: its loop, then the worker itself. A run must have halted first, and a
   * single step resolved.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#command(Command.close);
    this.#worker.terminate();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** One run of a {@link DecodeThread}: its steps as they come, and a way to stop it. */
export class DecodeRun {
  readonly #control: Int32Array;
  readonly #onHalted: () => void;
  #taken = 0;
  #decodeMs = 0;
  #halted = false;

  /** @internal Made by {@link DecodeThread.start}. */
  constructor(control: Int32Array, onHalted: () => void) {
    this.#control = control;
    this.#onHalted = onHalted;
  }

  /**
   * Waits for steps the host has not taken yet.
   *
   * @returns Those steps, oldest first; null once the run has halted and every step was taken.
   */
  async next(): Promise<DecodedStep[] | null> {
    const control = this.#control;
    for (;;) {
      const events = Atomics.load(control, Field.events);
      const published = Atomics.load(control, Field.published);
      if (published > this.#taken) return this.#take(published);
      if (Atomics.load(control, Field.state) === RunState.halted) {
        if (Atomics.load(control, Field.published) > this.#taken) continue;
        this.#halt();
        return null;
      }
      const wait = Atomics.waitAsync(control, Field.events, events);
      if (wait.async) await wait.value;
    }
  }

  /** Asks the thread to halt after the step it is decoding. Safe to call at any time. */
  stop(): void {
    Atomics.compareExchange(this.#control, Field.state, RunState.running, RunState.stopping);
  }

  /** Steps taken so far. */
  get steps(): number {
    return this.#taken;
  }

  /** Time in `llama_decode` of the steps taken so far, in ms. */
  get decodeMs(): number {
    return this.#decodeMs;
  }

  /** Whether the run has halted and every step was taken: the context is the host's again. */
  get halted(): boolean {
    return this.#halted;
  }

  /**
   * Why the run ended early: 0 when it did not, else `llama_decode`'s status (or a negative
   * code when the thread failed). Read it once {@link halted}.
   */
  get status(): number {
    return Atomics.load(this.#control, Field.status);
  }

  /** Picks the run's grammar refused so far (0 without one). */
  get refusals(): number {
    return Atomics.load(this.#control, Field.refusals);
  }

  /** Whether the thread itself failed (it is not used again). */
  get threadFailed(): boolean {
    return this.status === FAILED;
  }

  #take(published: number): DecodedStep[] {
    const steps: DecodedStep[] = [];
    for (; this.#taken < published; this.#taken++) {
      const at = stepIndex(this.#taken);
      const decodeMs = (this.#control[at + 1] as number) / 1000;
      this.#decodeMs += decodeMs;
      steps.push({ token: this.#control[at] as number, decodeMs });
    }
    Atomics.store(this.#control, Field.taken, this.#taken);
    Atomics.notify(this.#control, Field.taken);
    return steps;
  }

  #halt(): void {
    if (this.#halted) return;
    this.#halted = true;
    this.#onHalted();
  }
}

/** Writes a run's grammar fields: all 0 without a grammar. */
function storeGrammar(control: Int32Array, plan: GrammarRunPlan | undefined): void {
  // An empty array may have no memory: 0 then (its count says there is nothing to read).
  const addressOf = (memory: BufferSource) =>
    memory.byteLength === 0 ? 0n : address(Deno.UnsafePointer.of(memory));
  storeAddress(control, Field.grammar, plan ? address(plan.grammar) : 0n);
  storeAddress(control, Field.savedStages, plan ? addressOf(plan.savedAddresses) : 0n);
  control[Field.savedStageCount] = plan ? plan.savedAddresses.length / 2 : 0;
  storeAddress(control, Field.haltAfterLastBytes, plan ? addressOf(plan.haltAfterLastBytes) : 0n);
  storeAddress(control, Field.vocab, plan ? address(plan.vocab) : 0n);
  control[Field.nVocab] = plan?.nVocab ?? 0;
  const need = plan?.need;
  control[Field.grammarNeed] = need ? (need.greedy ? -need.count : need.count) : 0;
  Atomics.store(control, Field.refusals, 0);
}

function address(pointer: Deno.PointerValue): bigint {
  if (pointer === null) throw new Error("The decode thread needs a context (and a run a sampler)");
  return BigInt(Deno.UnsafePointer.value(pointer));
}
