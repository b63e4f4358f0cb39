/**
 * Grammar checks off the event loop. {@link validateGrammar} bounds llama.cpp's work on a
 * grammar by simulating it, which takes up to a few hundred milliseconds for large or crafted
 * grammars (a forced call to one of 128 tools, about 0.15 s on 2 cores): on the event loop that
 * held every stream and `/health` meanwhile. A {@link GrammarWorker} runs the check on a Web
 * Worker (`grammar_worker_main.ts`), one job at a time, and answers the tokens a grammar names
 * from the model's vocabulary on this thread: the worker reports the ones it met, and the check
 * runs again with their answers, ahead of the checks waiting (it has had its turn).
 *
 * Checks wait in order, at most {@link MAX_QUEUED_GRAMMAR_CHECKS} of them (64) holding at most
 * {@link MAX_QUEUED_GRAMMAR_CHARACTERS} characters of grammar text together (32 Mi; a request's
 * grammar may fill its 8 MiB body): past either, a new check is refused at once with a
 * `queue_full` error (HTTP 503), so that a client sending many distinct slow grammars cannot grow
 * the queue, and the memory of the requests waiting on it, without bound, nor hold every other
 * request's check behind its own. A check whose abort signal fires (its client left) leaves the
 * queue at once and rejects with the signal's reason; one the worker has begun cannot be
 * interrupted and runs to its end (its verdict is still answered, and remembered by
 * `grammar_checks.ts`), but its second pass, if it needs one, is not queued.
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

/**
 * Checks that may wait for the worker (besides the one it runs). A check takes up to a few
 * hundred milliseconds, so a full queue is a wait of seconds to tens of seconds for the next.
 */
export const MAX_QUEUED_GRAMMAR_CHECKS = 64;

/**
 * Characters of grammar text that the waiting checks may hold together: 32 Mi, twice what
 * {@link MAX_QUEUED_GRAMMAR_CHECKS} grammars of the longest the check accepts (256 KiB,
 * `DEFAULT_GRAMMAR_LIMITS.maxBytes`) hold, so that it binds only on texts the check will refuse,
 * which a request body carries up to 8 MiB of. A check is admitted into an empty queue whatever
 * its size.
 */
export const MAX_QUEUED_GRAMMAR_CHARACTERS = 32 * 1024 * 1024;

interface Job {
  readonly request: GrammarCheckRequest;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (reply: GrammarCheckReply) => void;
  readonly reject: (reason: unknown) => void;
  /** Drops the job from the queue when its signal aborts. */
  readonly onAbort: () => void;
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
   * @param signal Drops the check while it waits: the promise then rejects with the signal's
   *   reason. A check the worker has begun runs to its end and answers its verdict, unless it
   *   needs a second pass, which is not queued.
   * @returns What the check learned.
   * @throws {GrammarError} as `validateGrammar` throws it (HTTP 400).
   * @throws {GenerationError} `queue_full` when {@link MAX_QUEUED_GRAMMAR_CHECKS} checks, or
   *   {@link MAX_QUEUED_GRAMMAR_CHARACTERS} characters of grammar, wait already (HTTP 503);
   *   `closed` after {@link close}.
   * @throws The signal's reason when it aborts.
   */
  async check(
    grammar: string,
    options: GrammarOptions,
    signal?: AbortSignal,
  ): Promise<GrammarSummary> {
    if (this.#closed) throw new GenerationError("closed", "The grammar worker is closed");
    signal?.throwIfAborted();
    this.#admit(grammar);
    let reply = await this.#run(grammar, [], signal, false);
    if (reply.asked.length > 0) {
      signal?.throwIfAborted(); // the first pass ran for no one: the second would too
      reply = await this.#run(grammar, reply.asked.map(answerWith(options)), signal, true);
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

  /** Refuses a new check when the queue is full (see {@link MAX_QUEUED_GRAMMAR_CHECKS}). */
  #admit(grammar: string): void {
    const waiting = this.#queue.length;
    if (waiting === 0) return;
    const characters = this.#queue.reduce((sum, job) => sum + job.request.grammar.length, 0);
    const limit = waiting >= MAX_QUEUED_GRAMMAR_CHECKS
      ? `${waiting} checks wait, the most the server queues`
      : characters + grammar.length > MAX_QUEUED_GRAMMAR_CHARACTERS
      ? `${mebi(characters)} Mi characters of grammar wait, and this one would pass the ` +
        `${mebi(MAX_QUEUED_GRAMMAR_CHARACTERS)} Mi the server queues`
      : undefined;
    if (limit === undefined) return;
    throw new GenerationError(
      "queue_full",
      `The grammar checks are backed up (${limit}); try again shortly`,
    );
  }

  /** Queues one pass of a check: last, or first (`ahead`) for a second pass. */
  #run(
    grammar: string,
    answers: TokenAnswer[],
    signal: AbortSignal | undefined,
    ahead: boolean,
  ): Promise<GrammarCheckReply> {
    if (this.#closed) {
      return Promise.reject(new GenerationError("closed", "The grammar worker is closed"));
    }
    return new Promise((resolve, reject) => {
      const job: Job = {
        request: { id: this.#nextId++, grammar, answers },
        signal,
        resolve,
        reject,
        onAbort: () => this.#drop(job),
      };
      signal?.addEventListener("abort", job.onAbort, { once: true });
      if (ahead) this.#queue.unshift(job);
      else this.#queue.push(job);
      this.#pump();
    });
  }

  /** Takes an aborted job out of the queue; one the worker runs is left to finish. */
  #drop(job: Job): void {
    const index = this.#queue.indexOf(job);
    if (index < 0) return;
    this.#queue.splice(index, 1);
    job.reject(job.signal?.reason);
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
      job.signal?.removeEventListener("abort", job.onAbort);
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
    for (const job of jobs) {
      job.signal?.removeEventListener("abort", job.onAbort);
      job.reject(error);
    }
  }
}

/** Characters in Mi (2^20), to one decimal. */
function mebi(characters: number): number {
  return Math.round(characters / 2 ** 20 * 10) / 10;
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
