/**
 * The process-wide llama.cpp runtime: opens the libraries once, loads ggml's dynamic backends,
 * initialises the backend once (a second `llama_backend_init` was a bug in the original
 * Shimmy), routes llama.cpp's log through a callback that stays quiet unless verbose, and
 * enumerates devices.
 *
 * ggml's own log is the exception: its backends write debug lines on every decode (CUDA writes
 * four per token), and a line written on a worker thread waits for the event loop to run the
 * callback. So ggml's log goes to a native function that ignores it, and reaches the callback
 * only while verbose or while a call that wants its warnings is in flight (loads and context
 * creation, where a device runs out of memory).
 *
 * @module
 */

import { cString, readCString } from "./cstring.ts";
import { DeviceType } from "./layouts.ts";
import { exportedFunction } from "./symbol_address.ts";
import { type GpuBackend, type NativeLibraries, openNativeLibraries } from "./library.ts";
import type { GgmlBaseSymbols, GgmlSymbols, LlamaSymbols } from "./symbols.ts";

/** One ggml device as reported by the backend registry. */
export interface DeviceInfo {
  /** Index in ggml's device list. */
  index: number;
  /** Device name, e.g. `CUDA0` or `CPU`. */
  name: string;
  /** Human description, e.g. the GPU model. */
  description: string;
  /** Backend (registry) name, e.g. `CUDA`, `Vulkan`, `Metal`, `CPU`. */
  backend: string;
  /** Device kind. */
  type: "cpu" | "gpu" | "igpu" | "accel" | "meta";
  /** Free memory in bytes. */
  freeBytes: number;
  /** Total memory in bytes. */
  totalBytes: number;
}

/** Options for {@link Llama.open}. */
export interface LlamaOptions {
  /** Explicit library folder (overrides `SHIMMY_LIB_DIR`). */
  libDir?: string;
  /** Which library flavour to prefer. Default `"auto"`. */
  gpuBackend?: GpuBackend;
  /** Print llama.cpp's own log to stderr. Default false. */
  verbose?: boolean;
}

const LOG_LEVELS = ["none", "debug", "info", "warn", "error", "cont"] as const;
/** Starts the lines of work done aside in the log listeners see (see `Llama.aside`). */
export const ASIDE_BEGINS = "[shimmy] aside begins: ";
/** Ends the lines of work done aside (see `Llama.aside`). */
export const ASIDE_ENDS = "[shimmy] aside ends: ";
const RECENT_LOG_LINES = 64;

/** The opened runtime; get it with {@link Llama.open}. */
export class Llama {
  static #shared: Llama | undefined;

  /** libllama's symbols. */
  readonly symbols: LlamaSymbols;
  /** libggml's symbols. */
  readonly ggml: GgmlSymbols;
  /** libggml-base's symbols. */
  readonly ggmlBase: GgmlBaseSymbols;
  /** Folder the libraries came from. */
  readonly libDir: string;
  /** The libllama file that was opened. */
  readonly llamaFile: string;

  readonly #libraries: NativeLibraries;
  readonly #logCallback: Deno.UnsafeCallback<{
    readonly parameters: readonly ["i32", "pointer", "pointer"];
    readonly result: "void";
  }>;
  /** A native function that ignores its arguments, to give ggml as its logger; null if none. */
  readonly #ggmlLogSink: Deno.PointerValue;
  /** Native calls in flight that want ggml's log (see {@link whileNative}). */
  #ggmlLogWanted = 0;
  #verbose: boolean;
  readonly #recentLog: string[] = [];
  #partialLine = "";
  #closed = false;

  private constructor(libraries: NativeLibraries, verbose: boolean) {
    this.#libraries = libraries;
    this.symbols = libraries.llama.symbols;
    this.ggml = libraries.ggml.symbols;
    this.ggmlBase = libraries.ggmlBase.symbols;
    this.libDir = libraries.dir;
    this.llamaFile = libraries.llamaFile;
    this.#verbose = verbose;
    // ggml_time_us takes no arguments and has no effects: as a logger it drops every line.
    this.#ggmlLogSink = exportedFunction(libraries.ggmlBaseFile, "ggml_time_us");
    this.#logCallback = Deno.UnsafeCallback.threadSafe(
      { parameters: ["i32", "pointer", "pointer"], result: "void" } as const,
      (level, text) => this.#onLog(level, readCString(text) ?? ""),
    );
    // The callback must not keep the process alive on its own.
    this.#logCallback.unref();
    this.symbols.llama_log_set(this.#logCallback.pointer, null); // llama's and ggml's
    this.#routeGgmlLog();
    this.ggml.ggml_backend_load_all_from_path(cString(libraries.dir));
    this.symbols.llama_backend_init();
  }

  /**
   * Opens the runtime once per process; later calls return the same instance (the library
   * options of the first call win, `verbose` is updated).
   *
   * @param options Library folder, GPU flavour and verbosity.
   * @returns The shared runtime.
   * @throws {LibraryNotFoundError} when no libllama can be found.
   * @example
   * ```ts
   * const llama = Llama.open({ gpuBackend: "cpu" });
   * console.log(llama.devices());
   * ```
   */
  static open(options: LlamaOptions = {}): Llama {
    if (Llama.#shared && !Llama.#shared.#closed) {
      if (options.verbose !== undefined) Llama.#shared.verbose = options.verbose;
      return Llama.#shared;
    }
    const libraries = openNativeLibraries(options);
    Llama.#shared = new Llama(libraries, options.verbose ?? false);
    return Llama.#shared;
  }

  /** Whether llama.cpp's log goes to stderr. */
  get verbose(): boolean {
    return this.#verbose;
  }

  set verbose(on: boolean) {
    this.#verbose = on;
    this.#routeGgmlLog();
  }

  /**
   * Runs a nonblocking native call with the log callback referenced, so that a log line
   * written from the worker thread can wake the event loop while the call is in flight.
   *
   * @param call The native call.
   * @param options `ggmlLog: false` for hot calls (decode) that should not route ggml's
   *   per-call debug lines through the callback. Default: ggml's log is routed too.
   * @returns Its result.
   */
  async whileNative<T>(
    call: () => Promise<T>,
    options: { ggmlLog?: boolean } = {},
  ): Promise<T> {
    const wantsGgmlLog = options.ggmlLog ?? true;
    this.#logCallback.ref();
    if (wantsGgmlLog && this.#ggmlLogWanted++ === 0) this.#routeGgmlLog();
    try {
      return await call();
    } finally {
      if (wantsGgmlLog && --this.#ggmlLogWanted === 0) this.#routeGgmlLog();
      this.#logCallback.unref();
    }
  }

  /** Points ggml's logger at the callback or at the sink, whichever is wanted now. */
  #routeGgmlLog(): void {
    if (this.#closed) return;
    const toCallback = this.#verbose || this.#ggmlLogWanted > 0 || this.#ggmlLogSink === null;
    this.ggmlBase.ggml_log_set(
      toCallback ? this.#logCallback.pointer : this.#ggmlLogSink,
      null,
    );
  }

  /**
   * Lets the event loop's I/O tasks (HTTP writes, new connections) run. A promise that is
   * already resolved, or `setImmediate`, does not: while JavaScript keeps the loop busy, those
   * tasks only run once the loop really waits, which this trivial off-thread call makes it do.
   */
  async yieldToIo(): Promise<void> {
    await this.symbols.llama_time_us_nonblocking();
  }

  /** llama.cpp's system info line (SIMD features, backends). */
  systemInfo(): string {
    return readCString(this.symbols.llama_print_system_info()) ?? "";
  }

  /** Every ggml device, CPU included. */
  devices(): DeviceInfo[] {
    const count = Number(this.ggml.ggml_backend_dev_count());
    const devices: DeviceInfo[] = [];
    for (let index = 0; index < count; index++) {
      const dev = this.ggml.ggml_backend_dev_get(BigInt(index));
      if (dev === null) continue;
      const free = new BigUint64Array(1);
      const total = new BigUint64Array(1);
      this.ggmlBase.ggml_backend_dev_memory(dev, free, total);
      const typeCode = this.ggmlBase.ggml_backend_dev_type(dev);
      const reg = this.ggmlBase.ggml_backend_dev_backend_reg(dev);
      devices.push({
        index,
        name: readCString(this.ggmlBase.ggml_backend_dev_name(dev)) ?? `device${index}`,
        description: readCString(this.ggmlBase.ggml_backend_dev_description(dev)) ?? "",
        backend: reg === null ? "" : readCString(this.ggmlBase.ggml_backend_reg_name(reg)) ?? "",
        type: (Object.entries(DeviceType).find(([, code]) => code === typeCode)?.[0] ??
          "cpu") as DeviceInfo["type"],
        freeBytes: Number(free[0]),
        totalBytes: Number(total[0]),
      });
    }
    return devices;
  }

  /** The native handle of a device, for `llama_model_params.devices`. */
  deviceHandle(index: number): Deno.PointerObject {
    const dev = this.ggml.ggml_backend_dev_get(BigInt(index));
    if (dev === null) throw new RangeError(`No ggml device with index ${index}`);
    return dev;
  }

  /**
   * Recent llama.cpp log lines at warning level or above, for error messages.
   *
   * @param since Only lines logged after this mark (from {@link logMark}).
   * @returns The lines, oldest first.
   */
  recentProblems(since = 0): string[] {
    return this.#recentLog.slice(Math.max(0, since - this.#logDropped));
  }

  /** A mark for {@link recentProblems}: the count of problem lines logged so far. */
  logMark(): number {
    return this.#logDropped + this.#recentLog.length;
  }

  #logDropped = 0;

  readonly #listeners = new Set<(text: string) => void>();

  /**
   * Calls a listener with every llama.cpp log text until the returned function is called
   * (e.g. a model load reads "offloaded N/M layers to GPU" from it).
   *
   * @param listener Receives raw log texts.
   * @returns Unsubscribes.
   */
  listen(listener: (text: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Runs native work whose log is not the caller's (the attention probe loads a model of its own
   * while a model loads), between two lines that listeners see: {@link ASIDE_BEGINS} and
   * {@link ASIDE_ENDS}, each followed by the label and a newline. A reader of a load's log skips
   * what lies between them.
   *
   * @param label What the work is.
   * @param work The work.
   * @returns Its result.
   */
  async aside<T>(label: string, work: () => Promise<T>): Promise<T> {
    for (const listener of this.#listeners) listener(`${ASIDE_BEGINS}${label}\n`);
    try {
      return await work();
    } finally {
      for (const listener of this.#listeners) listener(`${ASIDE_ENDS}${label}\n`);
    }
  }

  #onLog(level: number, text: string): void {
    if (this.#verbose) {
      Deno.stderr.writeSync(new TextEncoder().encode(text));
    }
    for (const listener of this.#listeners) listener(text);
    const name = LOG_LEVELS[level] ?? "info";
    if (name !== "warn" && name !== "error" && !(name === "cont" && this.#partialLine)) return;
    this.#partialLine += text;
    if (!this.#partialLine.endsWith("\n")) return;
    const line = this.#partialLine.trim();
    this.#partialLine = "";
    if (!line) return;
    this.#recentLog.push(line);
    if (this.#recentLog.length > RECENT_LOG_LINES) {
      this.#recentLog.shift();
      this.#logDropped++;
    }
  }

  /**
   * Frees the backend and closes the libraries. Every model and context must be closed first.
   * Safe to call twice.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.symbols.llama_log_set(null, null);
    this.symbols.llama_backend_free();
    this.#logCallback.close();
    this.#libraries.llama.close();
    this.#libraries.ggml.close();
    this.#libraries.ggmlBase.close();
  }
}
