/**
 * Chat templates rendered off the event loop. A Jinja template runs arbitrary loops over the
 * request's messages, so {@link renderChatOffThread} hands `renderChat`'s work to a Web
 * Worker (`template_worker_main.ts`) and waits for it without blocking: HTTP, health checks and
 * other streams keep running. A small pool of warm workers takes jobs in order. A job that runs
 * past its time limit, or whose request is aborted, is stopped through a flag in shared memory
 * that the worker's interpreter checks as it renders (Deno's `Worker.terminate()` cannot
 * interrupt running JavaScript), its worker is terminated and a fresh one is started for the
 * next job. Idle workers are terminated after {@link TEMPLATE_WORKER_IDLE_MS}, since a live
 * Web Worker keeps a Deno process running (Deno's `Worker` has no `unref()`). Errors keep their
 * class across the boundary: a template's `TemplateError` is rebuilt with its reason and
 * detail, so the server still answers 400.
 *
 * `deno compile` does not embed worker scripts found through `new Worker(new URL(...))`: the
 * compile step must `--include src/engine/template_worker_main.ts`.
 *
 * @module
 */

import { GenerationError } from "./errors.ts";
import type { RenderReply, RenderRequest, SerializedRenderError } from "./template_worker_main.ts";
import { type RenderChatInput, type RenderedPrompt, TemplateError } from "./templates.ts";

/** Longest a chat template may take to render (ms) before its worker is stopped. */
export const TEMPLATE_TIMEOUT_MS = 10_000;

/** Templates rendered at the same time (each in its own worker). */
export const TEMPLATE_WORKERS = 2;

/**
 * How long (ms) an idle worker stays warm for the next request. Starting one costs ~150 ms;
 * a live worker keeps the process from exiting, so this also bounds how long a script that
 * rendered a template lingers after its last work.
 */
export const TEMPLATE_WORKER_IDLE_MS = 5_000;

/** Options of {@link renderChatOffThread} and {@link TemplateWorkerPool.render}. */
export interface RenderOffThreadOptions {
  /** Stops the render, queued or running; the promise then rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Longest the render may take once a worker has it, in ms. Default
   * {@link TEMPLATE_TIMEOUT_MS}.
   */
  timeoutMs?: number;
}

/** Options of {@link TemplateWorkerPool}. */
export interface TemplateWorkerPoolOptions {
  /** Workers rendering at the same time. Default {@link TEMPLATE_WORKERS}. */
  size?: number;
  /**
   * Idle time (ms) after which a worker is terminated; `Infinity` keeps workers until
   * {@link TemplateWorkerPool.close}. Default {@link TEMPLATE_WORKER_IDLE_MS}.
   */
  idleMs?: number;
}

const WORKER_URL = new URL("./template_worker_main.ts", import.meta.url);

type Timer = ReturnType<typeof setTimeout>;

interface Job {
  readonly input: RenderChatInput;
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (value: RenderedPrompt) => void;
  readonly reject: (reason: unknown) => void;
  readonly onAbort: () => void;
  /** Set to 1 to make the worker's interpreter stop (see `template_worker_main.ts`). */
  readonly stop: Int32Array;
  id: number;
  slot: Slot | undefined;
  timer: Timer | undefined;
}

interface Slot {
  worker: Worker | undefined;
  job: Job | undefined;
  idleTimer: Timer | undefined;
}

/**
 * Rebuilds an error that crossed the worker boundary as plain data.
 *
 * @param error The serialized error.
 * @returns A `TemplateError`, `GenerationError` or `Error` like the one the worker caught.
 */
function deserialize(error: SerializedRenderError): Error {
  switch (error.kind) {
    case "template":
      return new TemplateError(error.reason, error.message, error.detail, new Error(error.detail));
    case "generation":
      return new GenerationError(error.code, error.message);
    case "other": {
      const out = new Error(error.message);
      out.name = error.name;
      if (error.stack) out.stack = error.stack;
      return out;
    }
  }
}

function timeoutError(timeoutMs: number): GenerationError {
  const seconds = Number((timeoutMs / 1000).toPrecision(3));
  return new GenerationError(
    "invalid_request",
    `The chat template took longer than ${seconds} s to render; ` +
      "shorten the conversation or use a simpler template (--chat-template)",
  );
}

/**
 * A pool of Web Workers that render chat templates. Jobs wait in order for a free worker;
 * workers start on first use and stop when idle, timed out or aborted.
 *
 * @example
 * ```ts
 * const pool = new TemplateWorkerPool({ size: 1 });
 * const out = await pool.render({ family: "chatml", messages }, { timeoutMs: 2_000 });
 * pool.close();
 * ```
 */
export class TemplateWorkerPool implements Disposable {
  readonly #slots: Slot[];
  readonly #idleMs: number;
  readonly #queue: Job[] = [];
  #nextId = 1;
  #closed = false;

  /**
   * @param options Pool size and idle time.
   * @throws {RangeError} for a size below 1 or a negative idle time.
   */
  constructor(options: TemplateWorkerPoolOptions = {}) {
    const size = options.size ?? TEMPLATE_WORKERS;
    const idleMs = options.idleMs ?? TEMPLATE_WORKER_IDLE_MS;
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`Template worker pool size must be a positive integer, got ${size}`);
    }
    if (!(idleMs >= 0)) {
      throw new RangeError(`Template worker idle time must be 0 or more ms, got ${idleMs}`);
    }
    this.#idleMs = idleMs;
    this.#slots = Array.from({ length: size }, () => ({
      worker: undefined,
      job: undefined,
      idleTimer: undefined,
    }));
  }

  /** Workers alive now (busy or warm). */
  get liveWorkers(): number {
    return this.#slots.filter((slot) => slot.worker !== undefined).length;
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Starts every worker that is not running, so that the next renders find them warm (starting
   * one takes tens of milliseconds). Each stays until its idle time has passed.
   */
  warm(): void {
    if (this.#closed) return;
    for (const slot of this.#slots) {
      if (slot.worker !== undefined) continue;
      try {
        this.#spawn(slot);
      } catch {
        return; // e.g. no permission to read the worker script: the next render says so
      }
      this.#stopWhenIdle(slot);
    }
  }

  /**
   * Renders a conversation in a worker; same result and errors as `renderChat`.
   *
   * @param input What `renderChat` takes, as plain data (it is sent as JSON).
   * @param options Abort signal and time limit.
   * @returns The rendered prompt.
   * @throws {TemplateError} as `renderChat` throws it.
   * @throws {GenerationError} `invalid_request` when rendering takes longer than the limit,
   *   `closed` after {@link close}.
   * @throws The signal's reason when it aborts.
   * @example
   * ```ts
   * const out = await pool.render({ template, messages }, { signal: request.signal });
   * ```
   */
  render(input: RenderChatInput, options: RenderOffThreadOptions = {}): Promise<RenderedPrompt> {
    const timeoutMs = options.timeoutMs ?? TEMPLATE_TIMEOUT_MS;
    if (!(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
      return Promise.reject(
        new RangeError(`Template timeout must be a positive number of ms, got ${timeoutMs}`),
      );
    }
    if (this.#closed) {
      return Promise.reject(new GenerationError("closed", "The template workers are closed"));
    }
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<RenderedPrompt>((resolve, reject) => {
      const job: Job = {
        input,
        timeoutMs,
        signal,
        resolve,
        reject,
        onAbort: () => this.#abort(job),
        stop: new Int32Array(new SharedArrayBuffer(4)),
        id: 0,
        slot: undefined,
        timer: undefined,
      };
      signal?.addEventListener("abort", job.onAbort, { once: true });
      this.#queue.push(job);
      this.#pump();
    });
  }

  /** Closes the pool ({@link close}). */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Terminates every worker and rejects queued and running jobs with a `closed`
   * GenerationError. Safe to call twice.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const closed = () => new GenerationError("closed", "The template workers are closed");
    for (const job of this.#queue.splice(0)) this.#settle(job, closed());
    for (const slot of this.#slots) {
      const job = slot.job;
      slot.job = undefined;
      if (job) this.#settle(job, closed());
      this.#stopWorker(slot);
    }
  }

  #pump(): void {
    for (const slot of this.#slots) {
      while (slot.job === undefined && this.#queue.length > 0) {
        this.#start(slot, this.#queue.shift() as Job);
      }
    }
  }

  #start(slot: Slot, job: Job): void {
    if (slot.idleTimer !== undefined) clearTimeout(slot.idleTimer);
    slot.idleTimer = undefined;
    let worker: Worker;
    try {
      worker = slot.worker ?? this.#spawn(slot);
    } catch (error) {
      this.#settle(job, error); // e.g. no permission to read the worker script
      return;
    }
    slot.job = job;
    job.slot = slot;
    job.id = this.#nextId++;
    job.timer = setTimeout(() => this.#kill(slot, timeoutError(job.timeoutMs)), job.timeoutMs);
    try {
      const request: RenderRequest = {
        id: job.id,
        input: JSON.stringify(job.input),
        stop: job.stop,
      };
      worker.postMessage(request);
    } catch (error) {
      // The input is not plain data (JSON.stringify threw); the worker itself is fine.
      this.#finish(slot, error);
    }
  }

  #spawn(slot: Slot): Worker {
    const worker = new Worker(WORKER_URL, { type: "module", name: "shimmy-chat-template" });
    worker.onmessage = (event: MessageEvent<RenderReply>) => {
      const reply = event.data;
      if (slot.worker !== worker || slot.job?.id !== reply.id) return;
      this.#finish(slot, reply.ok ? undefined : deserialize(reply.error), reply);
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault(); // handled here; otherwise it is rethrown in this thread
      if (slot.worker !== worker) return;
      this.#kill(slot, new Error(`The chat template worker failed: ${event.message}`));
    };
    worker.onmessageerror = () => {
      if (slot.worker !== worker) return;
      this.#kill(slot, new Error("The chat template worker sent a reply that cannot be read"));
    };
    slot.worker = worker;
    return worker;
  }

  /** Ends the slot's job (resolving with `reply`'s value, or rejecting with `error`). */
  #finish(slot: Slot, error: unknown, reply?: RenderReply): void {
    const job = slot.job;
    slot.job = undefined;
    if (job) this.#settle(job, error, reply?.ok ? reply.value : undefined);
    this.#stopWhenIdle(slot);
    this.#pump();
  }

  /** Stops the slot's worker once it has been idle for the pool's idle time (if finite). */
  #stopWhenIdle(slot: Slot): void {
    if (!slot.worker || this.#closed || !Number.isFinite(this.#idleMs)) return;
    const worker = slot.worker;
    const timer = setTimeout(() => {
      if (slot.worker === worker && slot.job === undefined) this.#stopWorker(slot);
    }, this.#idleMs);
    // The timer alone must not keep the process alive (the idle worker does, until it fires).
    Deno.unrefTimer(timer);
    slot.idleTimer = timer;
  }

  /** Stops the slot's worker mid-job and rejects the job with `error`. */
  #kill(slot: Slot, error: unknown): void {
    // terminate() alone waits for the render to return to the worker's event loop: ask the
    // interpreter to stop now (it looks at the flag every few thousand steps).
    if (slot.job) Atomics.store(slot.job.stop, 0, 1);
    this.#stopWorker(slot);
    this.#finish(slot, error);
  }

  #abort(job: Job): void {
    if (job.slot) {
      this.#kill(job.slot, job.signal?.reason);
      return;
    }
    const index = this.#queue.indexOf(job);
    if (index >= 0) this.#queue.splice(index, 1);
    this.#settle(job, job.signal?.reason);
  }

  #stopWorker(slot: Slot): void {
    if (slot.idleTimer !== undefined) clearTimeout(slot.idleTimer);
    slot.idleTimer = undefined;
    slot.worker?.terminate();
    slot.worker = undefined;
  }

  #settle(job: Job, error: unknown, value?: RenderedPrompt): void {
    if (job.timer !== undefined) clearTimeout(job.timer);
    job.timer = undefined;
    job.slot = undefined;
    job.signal?.removeEventListener("abort", job.onAbort);
    if (value !== undefined) job.resolve(value);
    else job.reject(error);
  }
}

let shared: TemplateWorkerPool | undefined;

/**
 * Renders a conversation with `renderChat` in a worker of the process-wide pool
 * ({@link TEMPLATE_WORKERS} workers, started on first use), without blocking the event loop.
 *
 * @param input Messages, template or family, special-token texts (plain data).
 * @param options Abort signal and time limit (default {@link TEMPLATE_TIMEOUT_MS}).
 * @returns The rendered prompt, as `renderChat` returns it.
 * @throws {TemplateError} as `renderChat` throws it (HTTP 400).
 * @throws {GenerationError} `invalid_request` when the template takes longer than the limit.
 * @throws The signal's reason when it aborts.
 * @example
 * ```ts
 * const out = await renderChatOffThread(
 *   { template: model.chatTemplate(), messages },
 *   { signal: request.signal },
 * );
 * out.prompt; // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
 * ```
 */
export function renderChatOffThread(
  input: RenderChatInput,
  options: RenderOffThreadOptions = {},
): Promise<RenderedPrompt> {
  if (shared === undefined || shared.closed) shared = new TemplateWorkerPool();
  return shared.render(input, options);
}

/**
 * Makes the process-wide pool of {@link renderChatOffThread} keep its workers until disposed,
 * and starts them now. A server renders a chat's turns seconds or minutes apart, as people type;
 * with workers that stop after {@link TEMPLATE_WORKER_IDLE_MS}, each such turn waited for a new
 * worker: on 2 cores a chat request after a 6 s pause took 38–48 ms against 10 after a 1 s one.
 * Disposing the pool lets the process exit; a later render starts a pool of the usual kind.
 *
 * @returns The pool, to dispose (`using`) when the server stops.
 * @example
 * ```ts
 * using _templates = keepTemplateWorkersWarm();
 * await server.finished;
 * ```
 */
export function keepTemplateWorkersWarm(): TemplateWorkerPool {
  shared?.close();
  shared = new TemplateWorkerPool({ idleMs: Infinity });
  shared.warm();
  return shared;
}
