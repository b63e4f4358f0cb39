/**
 * The model registry: the models a server knows (by unique lowercase name), loaded on first
 * use and then shared by every request (the original Shimmy reloaded from disk per request).
 * Concurrent first requests share one load. At most `maxModels` stay loaded: loading another
 * unloads the least recently used idle one. A model idle for longer than `keepAliveMs` is
 * unloaded. A model is only unloaded when nobody holds a lease on it and its scheduler is idle:
 * every user (a request from model lookup to the end of its generation, a LoRA load, a load
 * request) holds a {@link ModelLease} while it works with the model, so nothing is freed under
 * it. A load the memory check says cannot fit is refused instead of crashing. Only files
 * that exist are ever listed, and request names are matched against known names and paths,
 * never turned into paths.
 *
 * @module
 */

import type { LoadedModel } from "../engine/loaded_model.ts";
import {
  ModelReplicas,
  type ReplicaInfo,
  type ReplicaOpenOptions,
} from "../engine/model_replicas.ts";
import { templateLoadWarning } from "../engine/templates.ts";
import { modelNameOf, ModelNotFoundError } from "./model_names.ts";
import { GenerationError } from "../engine/errors.ts";
import { LoadInterest } from "./load_interest.ts";
import { checkModelFile } from "../ffi/model.ts";
import { canonicalReference } from "./hf_hub.ts";

/** The longest delay `setTimeout` takes as given (2^31 - 1 ms); a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * How long a load waits for a busy model to go idle, to unload it for room, before its request
 * is a 503 (ms): a request for a third model while two others generate starts once one of them
 * is done, as Ollama's queue would have it, instead of failing at once.
 */
export const LOAD_WAIT_MS = 30_000;

/** Most models loaded at once unless `maxModels` says otherwise. */
export const DEFAULT_MAX_MODELS = 2;
/** How often a load waiting for room looks again, besides when a lease ends (ms). */
const ROOM_RECHECK_MS = 250;

/**
 * Most aliases a model keeps: each spelling of a reference a pull found it by adds one (the
 * canonical one, so a spelling only counts once), the oldest going first.
 */
export const MAX_ALIASES = 16;

/** A LoRA adapter known for a model. */
export interface AdapterEntry {
  name: string;
  path: string;
}

/** A model the registry knows about. */
export interface ModelEntry {
  /** Unique lowercase name used in requests. */
  name: string;
  /** GGUF file path (first shard of a split model). */
  path: string;
  /** Where it was found (`--model`, `SHIMMY_BASE_GGUF`, a folder…). */
  source: string;
  /** Named at start (`--model`, `SHIMMY_BASE_GGUF`) rather than found in a folder. */
  registered?: boolean;
  /** `general.architecture`, when discovery read it. */
  architecture?: string;
  /** Parameters, when discovery counted them from the tensor shapes. */
  parameterCount?: number;
  /** File size in bytes (all shards). */
  sizeBytes: number;
  /** Other names that find it. */
  aliases?: readonly string[];
  /** Adapters found for it. */
  adapters?: readonly AdapterEntry[];
  /** Adapters (with scales) attached whenever it loads (`--lora`, `SHIMMY_LORA_GGUF`). */
  startupLora?: readonly { path: string; scale: number }[];
}

/** Load state of one model. */
export type ModelState = "available" | "loading" | "loaded";

/** Options shared by every model the registry opens. */
export type RegistryLoadOptions = Omit<ReplicaOpenOptions, "path" | "onProgress" | "signal">;

/** Registry limits. */
export interface RegistryOptions extends RegistryLoadOptions {
  /** Most models loaded at once. Default {@link DEFAULT_MAX_MODELS}. */
  maxModels?: number;
  /**
   * How long a load waits for a loaded model to go idle when every one is busy and no more may
   * be loaded (ms); then it is a 503. Default {@link LOAD_WAIT_MS}.
   */
  loadWaitMs?: number;
  /** Unload a model idle this long; negative = never. Default 5 minutes. */
  keepAliveMs?: number;
  /** Bytes free for a new model (tests pass their own). Default: the device plan's memory. */
  availableMemory?: (entry: ModelEntry) => number | undefined;
  /** Called with load progress. */
  onLoadProgress?: (entry: ModelEntry, fraction: number) => void;
  /** Called with what a user should know about a model just loaded (a broken template…). */
  onLoadWarning?: (entry: ModelEntry, warning: string) => void;
  /**
   * The model a request that names none gets (`--default-model`, else the one `--model`).
   * Default none: with several models, such a request is refused with the list of names.
   */
  defaultModel?: string;
  /**
   * Finds a model no entry names (`serve --allow-pull` pulls an `hf.co/…` reference): its
   * entry, which the registry then knows, or undefined. Default none.
   */
  fetchMissing?: (name: string) => Promise<ModelEntry | undefined>;
}

/** Raised when a request names no model and several are available, none of them the default (400). */
export class ModelRequiredError extends GenerationError {
  /** @param names The models a request may name. */
  constructor(names: readonly string[]) {
    const shown = names.slice(0, 20).join(", ") + (names.length > 20 ? ", …" : "");
    super(
      "invalid_request",
      `The request names no model and ${names.length} are available: set "model" to one of ` +
        `${shown} (or start the server with --default-model NAME)`,
    );
    this.name = "ModelRequiredError";
  }
}

/** Raised when a model cannot be loaded now (memory, or every loaded model busy). */
export class ModelUnavailableError extends GenerationError {
  /** @param message Human message. */
  constructor(message: string) {
    super("unavailable", message);
    this.name = "ModelUnavailableError";
  }
}

/**
 * A loaded model held for use: the registry will not unload it until the lease is released.
 * Release it when done (`using lease = await registry.acquire(name)`); releasing twice is
 * harmless.
 */
export interface ModelLease extends Disposable {
  /** The model's entry. */
  readonly entry: ModelEntry;
  /** The copy of the loaded model this lease uses (the least loaded when it was taken). */
  readonly model: LoadedModel;
  /** All copies of the model (settings such as LoRA adapters go to every copy). */
  readonly replicas: ModelReplicas;
  /** Ends the lease. */
  release(): void;
}

/** What `/api/ps` shows of a loaded model. */
export interface LoadedModelInfo {
  name: string;
  path: string;
  sizeBytes: number;
  backend: string;
  slots: number;
  busySlots: number;
  queued: number;
  idleSeconds: number;
  /** Seconds until keep-alive unloads it; null when it never expires. */
  expiresInSeconds: number | null;
  /** Each copy (one unless `--replicas` or the planner made more). */
  replicas: ReplicaInfo[];
}

/** Known models, loaded on demand and shared. */
export class ModelRegistry {
  readonly #entries: ModelEntry[];
  readonly #options: RegistryOptions;
  readonly #loads = new Map<string, { done: Promise<ModelReplicas>; interest: LoadInterest }>();
  /** Settles when the load under way (and those queued before it) has ended. */
  #loadTurn: Promise<unknown> = Promise.resolve();
  readonly #loaded = new Map<string, ModelReplicas>();
  readonly #lastUsed = new Map<string, number>();
  readonly #leases = new Map<string, number>();
  /** Keep-alive of a loaded model set by a request (Ollama's `keep_alive`), in ms. */
  readonly #keepAlive = new Map<string, number>();
  /** The timer that unloads a model at its request-set keep-alive: one per model, the latest. */
  readonly #keepAliveTimers = new Map<string, ReturnType<typeof setTimeout>>();
  /** Called when a lease ends or a model is unloaded: room may have been made. */
  readonly #roomWaiters = new Set<() => void>();
  /** Models whose load waits for a busy model to go idle. */
  readonly #waitingForRoom = new Set<string>();
  /** Aborted by {@link close}: loads waiting for room give up. */
  readonly #closing = new AbortController();
  /** The model a request naming none gets once models were added beside the only one. */
  #implicitDefault: string | undefined;
  readonly #sweeper: ReturnType<typeof setInterval> | undefined;
  /** Milliseconds each model took to load. */
  readonly loadTimes = new Map<string, number>();
  /** Load progress of models being loaded, in [0, 1]. */
  readonly loadProgress = new Map<string, number>();

  /**
   * @param entries Known models; the first is the default.
   * @param options Load options and limits.
   */
  constructor(entries: ModelEntry[], options: RegistryOptions = {}) {
    this.#entries = entries;
    this.#options = options;
    const keepAlive = options.keepAliveMs ?? 5 * 60_000;
    if (keepAlive >= 0) {
      const sweeper = setInterval(
        () => void this.#unloadExpired(keepAlive),
        Math.max(50, Math.min(keepAlive / 4, 30_000)),
      );
      Deno.unrefTimer(sweeper);
      this.#sweeper = sweeper;
    }
  }

  /** Every known model. */
  list(): readonly ModelEntry[] {
    return this.#entries;
  }

  /**
   * Takes a new search's findings (`POST /api/models/discover`): adds the models whose file is
   * new, under the next free `NAME-N` where another model has their name, forgets those not
   * loaded whose file is gone, and takes the size and facts of the known files anew. A request
   * that names no model keeps getting the one it got before, while it is known.
   *
   * @param entries Models found by a new search.
   * @returns The models added and the names forgotten.
   */
  async refresh(
    entries: readonly ModelEntry[],
  ): Promise<{ added: ModelEntry[]; removed: string[] }> {
    const removed: string[] = [];
    for (const entry of [...this.#entries]) {
      if (this.state(entry.name) !== "available" || await fileExists(entry.path)) continue;
      this.#forget(entry);
      removed.push(entry.name);
    }
    return { added: this.#add(entries), removed };
  }

  #add(entries: readonly ModelEntry[]): ModelEntry[] {
    const added: ModelEntry[] = [];
    const only = this.#entries.length === 1 ? this.#entries[0]!.name : undefined;
    for (const entry of entries) {
      const known = this.#entries.find((model) => model.path === entry.path);
      if (known) {
        // The same file, perhaps replaced under its name: its size and facts as they are now.
        known.sizeBytes = entry.sizeBytes;
        known.architecture = entry.architecture;
        known.parameterCount = entry.parameterCount;
        continue;
      }
      // A new file whose name another model already has gets the next free `NAME-N`.
      let name = entry.name;
      for (let n = 2; this.#entries.some((known) => known.name === name); n++) {
        name = `${entry.name}-${n}`;
      }
      const named = { ...entry, name };
      this.#entries.push(named);
      added.push(named);
    }
    if (added.length > 0 && only !== undefined) this.#implicitDefault ??= only;
    return added;
  }

  /** Whether a model's load waits for a loaded model to go idle (its state is `loading`). */
  waitingForRoom(name: string): boolean {
    return this.#waitingForRoom.has(name);
  }

  /** Load state of a model. */
  state(name: string): ModelState {
    if (this.#loaded.has(name)) return "loaded";
    return this.#loads.has(name) ? "loading" : "available";
  }

  /** The loaded models by name (the first copy of each). */
  loaded(): ReadonlyMap<string, LoadedModel> {
    return new Map([...this.#loaded].map(([name, group]) => [name, group.primary]));
  }

  /** The loaded models by name, with all their copies. */
  replicas(): ReadonlyMap<string, ModelReplicas> {
    return this.#loaded;
  }

  /**
   * Finds a model by name, alias or exact path of a known model (case-insensitive). No name
   * means the `defaultModel` option, else the only model; with several and no default it is
   * an error, never a silent pick.
   *
   * @param name The requested model.
   * @returns Its entry.
   * @throws {ModelNotFoundError} for an unknown name, or when no model is known at all.
   * @throws {ModelRequiredError} for no name, several models and no default.
   */
  resolve(name?: string): ModelEntry {
    if (name === undefined || name === "") {
      const first = this.#entries[0];
      if (!first) {
        throw new ModelNotFoundError(
          "",
          "No models are available: start the server with --model PATH or --model-dirs DIRS",
        );
      }
      const defaultModel = this.#options.defaultModel ?? this.#implicitDefault;
      if (defaultModel) return this.resolve(defaultModel);
      if (this.#entries.length > 1) throw new ModelRequiredError(this.#entries.map((e) => e.name));
      return first;
    }
    const wanted = name.toLowerCase();
    const byAlias = this.#entries.filter((e) => e.aliases?.includes(wanted));
    if (byAlias.length > 1 && !this.#entries.some((e) => e.name === wanted || e.path === name)) {
      throw new ModelNotFoundError(
        name,
        `Model "${name}" is ambiguous: it could be ${
          byAlias.map((e) => e.name).join(", ")
        }; use one of these names`,
      );
    }
    const entry = this.#entries.find((e) => e.name === wanted) ??
      this.#entries.find((e) => e.path === name) ??
      byAlias[0] ??
      this.#entries.find((e) => modelNameOf(e.path) === wanted.replace(/\.gguf$/, "")) ??
      this.#pulledAs(name);
    if (!entry) {
      throw new ModelNotFoundError(
        name,
        `Model "${name}" not found. Available: ${this.#entries.map((e) => e.name).join(", ")}`,
      );
    }
    return entry;
  }

  /**
   * Leases the loaded model, loading it on first use; concurrent callers share one load. The
   * model stays loaded until the lease is released.
   *
   * @param name Model name (default model when empty).
   * @param signal Aborts when the caller no longer wants it: a load waiting for room gives up
   *   once every caller that wanted it has gone.
   * @returns The lease; release it when done.
   * @throws {ModelUnavailableError} when memory or busy models leave no room for it.
   * @example
   * ```ts
   * using lease = await registry.acquire("phi3");
   * lease.model.scheduler.stats();
   * ```
   */
  async acquire(name?: string, signal?: AbortSignal): Promise<ModelLease> {
    const entry = await this.resolveOrFetch(name);
    this.#lastUsed.set(entry.name, performance.now());
    // Counted from now, so nothing can unload the model between its load and this caller.
    const releaseName = this.#hold(entry.name);
    try {
      const replicas = this.#loaded.get(entry.name) ?? await this.#loadShared(entry, signal);
      const picked = replicas.pick();
      const release = () => {
        picked.release();
        releaseName();
      };
      return { entry, model: picked.model, replicas, release, [Symbol.dispose]: release };
    } catch (error) {
      releaseName();
      throw error;
    }
  }

  #hold(name: string): () => void {
    this.#leases.set(name, (this.#leases.get(name) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#leases.set(name, (this.#leases.get(name) ?? 1) - 1);
      this.#lastUsed.set(name, performance.now());
      this.#roomMayHaveChanged();
      if (this.#keepAlive.get(name) === 0) void this.#unloadIfIdle(name);
    };
  }

  /**
   * Like {@link resolve}, but a name no entry has is asked of the `fetchMissing` option
   * (which pulls it), and the entry it gives is known from then on.
   *
   * @param name The requested model.
   * @returns Its entry.
   * @throws {ModelNotFoundError} when nothing finds it.
   * @example
   * ```ts
   * await registry.resolveOrFetch("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF");
   * ```
   */
  async resolveOrFetch(name?: string): Promise<ModelEntry> {
    try {
      return this.resolve(name);
    } catch (error) {
      const fetchMissing = this.#options.fetchMissing;
      if (!(error instanceof ModelNotFoundError) || !fetchMissing || error.model === "") {
        throw error;
      }
      const fetched = await fetchMissing(error.model);
      if (!fetched) throw error;
      const alias = canonicalReference(error.model);
      const index = this.#entries.findIndex((e) =>
        e.path === fetched.path || e.name === fetched.name
      );
      const known = this.#entries[index];
      if (known) {
        this.#entries[index] = { ...known, aliases: withAlias(known.aliases, alias) };
      } else {
        this.#entries.push({ ...fetched, aliases: withAlias(fetched.aliases, alias) });
      }
      return this.resolve(name);
    }
  }

  /** The pulled model another spelling of the same reference found (`hf.co/o/r` for `o/r/`). */
  #pulledAs(name: string): ModelEntry | undefined {
    const canonical = canonicalReference(name);
    return this.#entries.find((e) => e.aliases?.includes(canonical));
  }

  /**
   * Sets how long a loaded model stays loaded once idle, over the server's keep-alive, until
   * it is unloaded (Ollama's per-request `keep_alive`). With 0 it is unloaded as soon as
   * nothing uses it.
   *
   * @param name A loaded model's name (nothing happens when it is not loaded).
   * @param ms Milliseconds; negative keeps it loaded until the server stops.
   * @example
   * ```ts
   * registry.setKeepAlive("llama3:latest", 0); // unload once the reply is out
   * ```
   */
  setKeepAlive(name: string, ms: number): void {
    if (!this.#loaded.has(name)) return;
    this.#keepAlive.set(name, ms);
    this.#lastUsed.set(name, performance.now());
    this.#clearKeepAliveTimer(name); // the deadline it was set for has moved
    if (ms === 0) void this.#unloadIfIdle(name);
    if (ms > 0) {
      // On time, whatever the sweep's period (or with no sweep, under --keep-alive -1).
      // A timer's delay tops out at 2^31 - 1 ms (24.8 days); a longer one waits for the sweep.
      const timer = setTimeout(() => {
        this.#keepAliveTimers.delete(name);
        void this.#unloadExpired(this.#options.keepAliveMs ?? 5 * 60_000);
      }, Math.min(ms + 10, MAX_TIMER_MS));
      Deno.unrefTimer(timer);
      this.#keepAliveTimers.set(name, timer);
    }
  }

  #clearKeepAliveTimer(name: string): void {
    clearTimeout(this.#keepAliveTimers.get(name));
    this.#keepAliveTimers.delete(name);
  }

  async #unloadIfIdle(name: string): Promise<void> {
    const model = this.#loaded.get(name);
    if (model && this.#isIdle(name, model)) await this.unload(name).catch(() => {});
  }

  /** Whether nothing holds or uses the model, so it may be unloaded. */
  #isIdle(name: string, model: ModelReplicas): boolean {
    if ((this.#leases.get(name) ?? 0) > 0) return false;
    return model.idle();
  }

  #loadShared(entry: ModelEntry, signal?: AbortSignal): Promise<ModelReplicas> {
    let pending = this.#loads.get(entry.name);
    if (!pending) {
      const interest = new LoadInterest();
      // Counted from the first request: a load queued behind another's wait waits no longer.
      const deadline = performance.now() + (this.#options.loadWaitMs ?? LOAD_WAIT_MS);
      const load = this.#load(entry, interest.signal, deadline);
      const forget = () => {
        if (this.#loads.get(entry.name) !== current) return;
        this.#loads.delete(entry.name);
        this.loadProgress.delete(entry.name);
      };
      const current = { done: load.finally(forget), interest };
      // Given up by every request that wanted it: a new request starts a load of its own.
      interest.signal.addEventListener("abort", forget, { once: true });
      pending = current;
      this.#loads.set(entry.name, current);
    }
    pending.interest.join(signal);
    return pending.done;
  }

  /**
   * Starts no load from now on (a server shutting down): loads waiting for room or for their
   * turn end with a 503.
   */
  refuseLoads(): void {
    this.#closing.abort();
  }

  #roomMayHaveChanged(): void {
    for (const wake of this.#roomWaiters) wake();
  }

  /**
   * Loads models one at a time, so that each load's room (`--max-models`, free memory) is made
   * with the models the loads before it took: loads of different models at once had all passed
   * those checks together (six requests to six models made six loaded of --max-models 2).
   */
  #load(entry: ModelEntry, wanted: AbortSignal, deadline: number): Promise<ModelReplicas> {
    const stillWanted = AbortSignal.any([wanted, this.#closing.signal]);
    const load = this.#loadTurn.then(() => this.#loadNow(entry, stillWanted, deadline));
    this.#loadTurn = load.catch(() => {});
    return load;
  }

  async #loadNow(
    entry: ModelEntry,
    wanted: AbortSignal,
    deadline: number,
  ): Promise<ModelReplicas> {
    // A load given up while it was opening the model finished it: a later one takes that copy.
    const loaded = this.#loaded.get(entry.name);
    if (loaded) return loaded;
    this.#checkWanted(entry, wanted);
    if (!await fileExists(entry.path)) {
      // Checked before room is made for it: no other model is unloaded for a file that is gone.
      this.#forget(entry);
      throw new ModelNotFoundError(
        entry.name,
        `Model "${entry.name}" is gone: its file ${entry.path} was deleted or moved since the ` +
          "server found it (POST /api/models/discover searches the model folders again)",
      );
    }
    // A file llama.cpp would refuse unloads nothing to make room for it.
    await checkModelFile(entry.path);
    await this.#makeRoom(entry, wanted, deadline);
    const started = performance.now();
    this.loadProgress.set(entry.name, 0);
    const model = await ModelReplicas.open({
      ...this.#options,
      path: entry.path,
      onProgress: (fraction) => {
        this.loadProgress.set(entry.name, fraction);
        this.#options.onLoadProgress?.(entry, fraction);
      },
      ...(entry.startupLora?.length ? { lora: entry.startupLora } : {}),
    });
    const warning = templateLoadWarning(model.primary.model.chatTemplate());
    if (warning) this.#options.onLoadWarning?.(entry, warning);
    this.#loaded.set(entry.name, model);
    this.#lastUsed.set(entry.name, performance.now());
    this.loadTimes.set(entry.name, performance.now() - started);
    return model;
  }

  /** Drops a model from the list (its file is gone). */
  #forget(entry: ModelEntry): void {
    const at = this.#entries.indexOf(entry);
    if (at >= 0) this.#entries.splice(at, 1);
    if (this.#implicitDefault === entry.name) this.#implicitDefault = undefined;
  }

  /**
   * Unloads least recently used idle models until the new one fits the count and memory. While
   * every loaded model is busy it waits for one to go idle, up to `loadWaitMs`, as long as a
   * caller still wants the load.
   */
  async #makeRoom(entry: ModelEntry, wanted: AbortSignal, deadline: number): Promise<void> {
    const maxModels = Math.max(1, this.#options.maxModels ?? DEFAULT_MAX_MODELS);
    const waitMs = this.#options.loadWaitMs ?? LOAD_WAIT_MS;
    const since = deadline - waitMs;
    for (;;) {
      this.#checkWanted(entry, wanted);
      const available = this.#options.availableMemory?.(entry);
      const tooMany = this.#loaded.size >= maxModels;
      const tooBig = available !== undefined && entry.sizeBytes > available;
      if (!tooMany && !tooBig) return;
      const victim = this.#leastRecentlyUsedIdle();
      if (victim) {
        await this.unload(victim);
        continue;
      }
      const why = tooMany
        ? `${this.#loaded.size} models are loaded (--max-models ${maxModels}) and all are busy`
        : `it needs about ${mib(entry.sizeBytes)} MiB and only ${mib(available ?? 0)} MiB are free`;
      // Waiting helps only where a busy model could be unloaded once idle.
      if (this.#loaded.size === 0 || performance.now() >= deadline) {
        const waitedMs = performance.now() - since;
        const waited = this.#loaded.size > 0 && waitMs > 0
          ? ` (waited ${(waitedMs / 1000).toFixed(1)} s)`
          : "";
        throw new ModelUnavailableError(
          `Cannot load "${entry.name}": ${why}${waited}; try again shortly`,
        );
      }
      this.#waitingForRoom.add(entry.name);
      try {
        await this.#roomChange(deadline, wanted);
      } finally {
        this.#waitingForRoom.delete(entry.name);
      }
    }
  }

  /** Throws when the server is shutting down or no request wants the load any more. */
  #checkWanted(entry: ModelEntry, wanted: AbortSignal): void {
    if (this.#closing.signal.aborted) {
      throw new ModelUnavailableError(
        `The server is shutting down; "${entry.name}" was not loaded`,
      );
    }
    if (wanted.aborted) {
      throw new ModelUnavailableError(`The load of "${entry.name}" is no longer wanted`);
    }
  }

  /** Resolves when a lease ends or a model is unloaded, at the deadline, or when unwanted. */
  #roomChange(deadline: number, wanted: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#roomWaiters.delete(done);
        wanted.removeEventListener("abort", done);
        resolve();
      };
      // A recheck now and then covers what no lease tells of (a scheduler finishing its work).
      const timer = setTimeout(done, Math.min(ROOM_RECHECK_MS, deadline - performance.now()));
      this.#roomWaiters.add(done);
      wanted.addEventListener("abort", done, { once: true });
    });
  }

  #leastRecentlyUsedIdle(): string | undefined {
    return [...this.#loaded.entries()]
      .filter(([name, model]) => this.#isIdle(name, model))
      .sort(([a], [b]) => (this.#lastUsed.get(a) ?? 0) - (this.#lastUsed.get(b) ?? 0))[0]?.[0];
  }

  /**
   * Unloads a model if it is loaded and idle.
   *
   * @param name Model name.
   * @returns Whether it was unloaded (false when it was not loaded).
   * @throws {ModelUnavailableError} when it is busy.
   */
  async unload(name: string): Promise<boolean> {
    const model = this.#loaded.get(name);
    if (!model) return false;
    if (!this.#isIdle(name, model)) {
      throw new ModelUnavailableError(`Model "${name}" is busy; unload it when it is idle`);
    }
    this.#loaded.delete(name);
    this.#keepAlive.delete(name);
    this.#clearKeepAliveTimer(name);
    await model.close();
    this.#roomMayHaveChanged();
    return true;
  }

  async #unloadExpired(keepAliveMs: number): Promise<void> {
    const now = performance.now();
    for (const [name, model] of [...this.#loaded]) {
      if (!this.#isIdle(name, model)) {
        this.#lastUsed.set(name, now);
        continue;
      }
      const limit = this.#keepAlive.get(name) ?? keepAliveMs;
      if (limit >= 0 && now - (this.#lastUsed.get(name) ?? now) >= limit) {
        await this.unload(name).catch(() => {});
      }
    }
  }

  /** What `/api/ps` shows. */
  status(): LoadedModelInfo[] {
    const serverKeepAlive = this.#options.keepAliveMs ?? 5 * 60_000;
    const now = performance.now();
    return [...this.#loaded].map(([name, model]) => {
      const keepAlive = this.#keepAlive.get(name) ?? serverKeepAlive;
      const stats = model.stats();
      const idle = this.#isIdle(name, model) ? (now - (this.#lastUsed.get(name) ?? now)) / 1000 : 0;
      return {
        name,
        path: model.primary.model.path,
        sizeBytes: model.primary.model.sizeBytes,
        backend: model.primary.devices.backend,
        slots: stats.slots,
        busySlots: stats.busySlots,
        queued: stats.queued,
        idleSeconds: Math.round(idle),
        expiresInSeconds: keepAlive < 0 ? null : Math.max(0, Math.round(keepAlive / 1000 - idle)),
        replicas: model.replicaInfo(),
      };
    });
  }

  /**
   * Closes every loaded model: waits for loads in progress (one waiting for room gives up), stops
   * the schedulers (cancelling their generations), then waits up to `leaseWaitMs` for the
   * remaining leases (e.g. a LoRA adapter loading on a worker thread) before freeing. A model still leased after that is
   * left allocated rather than freed under its user (the process is ending anyway).
   *
   * @param leaseWaitMs Most milliseconds to wait for leases. Default 2000.
   * @returns The names of models left unfreed because they were still leased.
   */
  async close(leaseWaitMs = 2000): Promise<string[]> {
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
    for (const name of [...this.#keepAliveTimers.keys()]) this.#clearKeepAliveTimer(name);
    this.refuseLoads(); // A load waiting for room would wait for the busy models to finish.
    await Promise.allSettled([...this.#loads.values()].map((load) => load.done));
    const models = [...this.#loaded];
    await Promise.all(models.map(([, m]) => m.stopSchedulers()));
    const deadline = performance.now() + leaseWaitMs;
    const leased = () => models.filter(([name]) => (this.#leases.get(name) ?? 0) > 0);
    const never = new AbortController().signal;
    while (leased().length > 0 && performance.now() < deadline) {
      await this.#roomChange(deadline, never);
    }
    const stillLeased = leased().map(([name]) => name);
    this.#loaded.clear();
    await Promise.all(
      models.filter(([name]) => !stillLeased.includes(name)).map(([, m]) => m.close()),
    );
    return stillLeased;
  }
}

/** Aliases with one more at the end, unless they have it; at most {@link MAX_ALIASES}. */
function withAlias(aliases: readonly string[] = [], alias: string): string[] {
  if (aliases.includes(alias)) return [...aliases];
  return [...aliases, alias].slice(-MAX_ALIASES);
}

function mib(bytes: number): number {
  return Math.round(bytes / (1024 * 1024));
}

/**
 * Parses a keep-alive duration: `30s`, `5m`, `1h`, plain seconds, or `-1`/`forever` (never).
 *
 * @param text The value.
 * @returns Milliseconds, negative for never.
 * @throws {RangeError} for anything else.
 */
export function parseDuration(text: string): number {
  const value = text.trim().toLowerCase();
  if (value === "forever" || value === "-1") return -1;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value);
  if (!match) throw new RangeError(`Cannot read "${text}" as a duration (e.g. 30s, 5m, 1h, -1)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? "s"] as number;
  return Number(match[1]) * unit;
}

/** Whether a path exists; an error other than its absence counts as existing (the load says). */
async function fileExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    return !(error instanceof Deno.errors.NotFound);
  }
}
