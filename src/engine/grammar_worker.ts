/**
 * Grammar checks off the event loop. {@link validateGrammar} bounds llama.cpp's work on a
 * grammar by simulating it, which takes up to a few hundred milliseconds for large or crafted
 * grammars (a forced call to one of 128 tools, about 0.15 s on 2 cores): on the event loop that
 * held every stream and `/health` meanwhile. A {@link GrammarWorker} runs the check on a Web
 * Worker (`grammar_worker_main.ts`), one job at a time, and answers the tokens a grammar names
 * from the model's vocabulary on this thread: the worker reports the ones it met, and the check
 * runs again with their answers.
 *
 * `deno compile` does not embed worker scripts found through `new Worker(new URL(...))`: the
 * compile step must `--include src/engine/grammar_worker_main.ts`.
 *
 * @module
 */

import { GenerationError } from "./errors.ts";
import { GrammarError, type GrammarOptions, type GrammarSummary } from "./gbnf.ts";
import type {
  GrammarCheckReply,
  GrammarCheckRequest,
  SerializedGrammarError,
  TokenAnswer,
} from "./grammar_worker_main.ts";

const WORKER_URL = new URL("./grammar_worker_main.ts", import.meta.url);

/**
 * How long (ms) an idle worker stays for the next check, unless kept warm
 * ({@link keepGrammarWorkerWarm}): a live Web Worker keeps a Deno process running (it has no
 * `unref()`).
 */
export const GRAMMAR_WORKER_IDLE_MS = 5_000;

interface Job {
  readonly request: GrammarCheckRequest;
  readonly resolve: (reply: GrammarCheckReply) => void;
  readonly reject: (reason: unknown) => void;
}

/**
 * A Web Worker that checks grammars in order, started on first use and stopped when idle.
 *
 * @example
 * ```ts
 * using worker = new GrammarWorker();
 * const summary = await worker.check('root ::= "yes" | "no"', {});
 * ```
 */
export class GrammarWorker implements Disposable {
  readonly #idleMs: number;
  readonly #queue: Job[] = [];
  #worker: Worker | undefined;
  #running: Job | undefined;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #nextId = 1;
  #closed = false;

  /** @param idleMs Idle time (ms) after which the worker stops; `Infinity` keeps it. */
  constructor(idleMs = GRAMMAR_WORKER_IDLE_MS) {
    this.#idleMs = idleMs;
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Checks a grammar as `validateGrammar(grammar, {}, options)` does, on the worker.
   *
   * @param grammar GBNF text with start rule `root`.
   * @param options The model's vocabulary checks, called on this thread for the tokens the
   *   grammar names.
   * @returns What the check learned.
   * @throws {GrammarError} as `validateGrammar` throws it (HTTP 400).
   * @throws {GenerationError} `closed` after {@link close}.
   */
  async check(grammar: string, options: GrammarOptions): Promise<GrammarSummary> {
    let reply = await this.#run(grammar, []);
    if (reply.asked.length > 0) {
      reply = await this.#run(grammar, reply.asked.map(answerWith(options)));
    }
    if (reply.asked.length > 0) {
      throw new Error("The grammar check asked of tokens it had not named");
    }
    if (reply.verdict.ok) return reply.verdict.summary;
    throw deserialize(reply.verdict.error);
  }

  /** Starts the worker now, so that the first check finds it ready. */
  warm(): void {
    if (!this.#closed && this.#worker === undefined) this.#spawn();
  }

  /** Closes the worker ({@link close}). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Terminates the worker and rejects every check not answered. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#fail(new GenerationError("closed", "The grammar worker is closed"));
  }

  #run(grammar: string, answers: TokenAnswer[]): Promise<GrammarCheckReply> {
    if (this.#closed) {
      return Promise.reject(new GenerationError("closed", "The grammar worker is closed"));
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ request: { id: this.#nextId++, grammar, answers }, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#running !== undefined || this.#queue.length === 0) return;
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    const job = this.#queue.shift()!;
    this.#running = job;
    try {
      (this.#worker ?? this.#spawn()).postMessage(job.request);
    } catch (error) {
      this.#fail(error); // e.g. no permission to read the worker script
    }
  }

  #spawn(): Worker {
    const worker = new Worker(WORKER_URL, { type: "module", name: "shimmy-grammar-check" });
    worker.onmessage = ({ data }: MessageEvent<GrammarCheckReply>) => {
      const job = this.#running;
      if (this.#worker !== worker || job?.request.id !== data.id) return;
      this.#running = undefined;
      job.resolve(data);
      this.#stopWhenIdle();
      this.#pump();
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault(); // handled here; otherwise it is rethrown in this thread
      if (this.#worker === worker) {
        this.#fail(new Error(`The grammar worker failed: ${event.message}`));
      }
    };
    this.#worker = worker;
    this.#stopWhenIdle();
    return worker;
  }

  /** Stops the worker once it has been idle for the idle time (if finite). */
  #stopWhenIdle(): void {
    if (this.#running !== undefined || !Number.isFinite(this.#idleMs)) return;
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => this.#stop(), this.#idleMs);
    // The timer alone must not keep the process alive (the idle worker does, until it fires).
    Deno.unrefTimer(this.#idleTimer);
  }

  #stop(): void {
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#worker?.terminate();
    this.#worker = undefined;
  }

  /** Stops the worker and rejects the running and queued checks; a later check starts anew. */
  #fail(error: unknown): void {
    this.#stop();
    const jobs = [...(this.#running ? [this.#running] : []), ...this.#queue.splice(0)];
    this.#running = undefined;
    for (const job of jobs) job.reject(error);
  }
}

/** The vocabulary's answer for each token, from the model's checks (none: the worker's guess). */
function answerWith(options: GrammarOptions): (token: string | number) => TokenAnswer {
  return (token) => ({
    token,
    single: typeof token === "number" || (options.isSingleToken?.(token) ?? true),
    endsGeneration: options.endsGeneration?.(token) ?? false,
  });
}

/** Rebuilds a refusal that crossed the worker boundary. */
function deserialize(error: SerializedGrammarError): Error {
  if (error.kind === "grammar") return new GrammarError(error.check, error.reason, error.position);
  const rebuilt = new Error(error.message);
  rebuilt.name = error.name;
  return rebuilt;
}

let shared: GrammarWorker | undefined;

/**
 * The process-wide grammar worker, started on first use and stopped after
 * {@link GRAMMAR_WORKER_IDLE_MS} idle.
 *
 * @returns The worker that {@link GrammarChecks.prepare} uses.
 */
export function grammarWorker(): GrammarWorker {
  if (shared === undefined || shared.closed) shared = new GrammarWorker();
  return shared;
}

/**
 * Makes the process-wide grammar worker stay until disposed, and starts it now: a server checks
 * new grammars seconds or minutes apart, and starting a worker takes tens of milliseconds.
 *
 * @returns The worker, to dispose (`using`) when the server stops.
 * @example
 * ```ts
 * using _grammars = keepGrammarWorkerWarm();
 * await server.finished;
 * ```
 */
export function keepGrammarWorkerWarm(): GrammarWorker {
  shared?.close();
  shared = new GrammarWorker(Infinity);
  shared.warm();
  return shared;
}
