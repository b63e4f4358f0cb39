/**
 * `ThreadPool`: an owned ggml CPU threadpool. llama.cpp's tools attach one persistent pool to
 * each context; without it every decode spins threads up and down, which is several times
 * slower when cores are few.
 *
 * @module
 */

import { mappedFile, pinningCpus } from "./core_pinning.ts";
import { cString } from "./cstring.ts";
import { NativeHandle } from "./handle.ts";
import { DeviceType, GGML_MAX_N_THREADS, GgmlThreadpoolParamsTail } from "./layouts.ts";
import type { Llama } from "./llama.ts";
import { exportedFunction } from "./symbol_address.ts";

const NEW_SIGNATURE = { parameters: ["buffer"], result: "pointer" } as const;
const FREE_SIGNATURE = { parameters: ["pointer"], result: "void" } as const;
const PAUSE_SIGNATURE = FREE_SIGNATURE;
type PauseFunction = Deno.UnsafeFnPointer<typeof PAUSE_SIGNATURE>;

/** An owned `ggml_threadpool`. */
export class ThreadPool extends NativeHandle {
  /** Threads in the pool. */
  readonly threads: number;
  /** Set when each thread has a core of its own (see `core_pinning.ts`). */
  readonly #pause: PauseFunction | undefined;

  private constructor(
    pointer: Deno.PointerObject,
    threads: number,
    free: () => void,
    pause: PauseFunction | undefined,
  ) {
    super("ThreadPool", pointer, free);
    this.threads = threads;
    this.#pause = pause;
  }

  /**
   * With pinning, gives the thread that calls the next computation its core: the caller is the
   * pool's first thread, and ggml sets its core when it resumes a paused pool. Call it before
   * each `llama_decode` that runs on Deno's blocking pool (its threads take turns). Nothing
   * happens without pinning.
   */
  pinNextCaller(): void {
    this.#pause?.call(this.pointer);
  }

  /**
   * Creates a pool through the CPU backend, or returns undefined when the loaded libraries
   * have no CPU backend that offers one.
   *
   * @param llama The runtime.
   * @param threads Thread count.
   * @param cores Cores of the machine: a pool that fills a machine of 2 cores sleeps between
   *   tasks instead of spinning (see {@link pollLevel}).
   * @returns The pool, owned by the caller.
   */
  static create(
    llama: Llama,
    threads: number,
    cores = navigator.hardwareConcurrency || 1,
  ): ThreadPool | undefined {
    const cpu = llama.ggml.ggml_backend_dev_by_type(DeviceType.cpu);
    if (cpu === null) return undefined;
    const reg = llama.ggmlBase.ggml_backend_dev_backend_reg(cpu);
    if (reg === null) return undefined;
    const lookup = (name: string) =>
      llama.ggmlBase.ggml_backend_reg_get_proc_address(reg, cString(name));
    const newPtr = lookup("ggml_threadpool_new");
    const freePtr = lookup("ggml_threadpool_free");
    if (newPtr === null || freePtr === null) return undefined;
    const params = new Uint8Array(GGML_MAX_N_THREADS + GgmlThreadpoolParamsTail.size);
    llama.ggmlBase.ggml_threadpool_params_init(params, threads);
    const tail = params.subarray(GGML_MAX_N_THREADS);
    const poll = pollLevel(threads, cores);
    if (poll !== undefined) GgmlThreadpoolParamsTail.set(tail, "poll", poll);
    const cpus = pinningCpus(threads);
    const pause = cpus ? pauseFunction(newPtr) : undefined;
    if (cpus && pause) {
      // One core per thread, the caller's last; created paused, so that the thread creating
      // the pool (the event loop's) is not pinned: the first computation pins its caller.
      for (const cpu of cpus) if (cpu < GGML_MAX_N_THREADS) params[cpu] = 1;
      GgmlThreadpoolParamsTail.set(tail, "strict_cpu", true);
      GgmlThreadpoolParamsTail.set(tail, "paused", true);
    }
    const create = new Deno.UnsafeFnPointer(
      newPtr as Deno.PointerObject<typeof NEW_SIGNATURE>,
      NEW_SIGNATURE,
    );
    const pointer = create.call(params);
    if (pointer === null) return undefined;
    const freeFn = new Deno.UnsafeFnPointer(
      freePtr as Deno.PointerObject<typeof FREE_SIGNATURE>,
      FREE_SIGNATURE,
    );
    return new ThreadPool(pointer, threads, () => freeFn.call(pointer), cpus && pause);
  }
}

/**
 * `ggml_threadpool_pause` of the CPU backend library that holds another of its functions (the
 * backend may be one of several CPU variants ggml chose at run time; it does not hand this
 * function out by name), on Linux.
 */
function pauseFunction(backendFunction: Deno.PointerObject): PauseFunction | undefined {
  try {
    const address = BigInt(Deno.UnsafePointer.value(backendFunction));
    const file = mappedFile(address, Deno.readTextFileSync("/proc/self/maps"));
    if (file === undefined) return undefined;
    const pause = exportedFunction(file, "ggml_threadpool_pause");
    if (pause === null) return undefined;
    return new Deno.UnsafeFnPointer(
      pause as Deno.PointerObject<typeof PAUSE_SIGNATURE>,
      PAUSE_SIGNATURE,
    );
  } catch {
    return undefined;
  }
}

/** Most cores on which a pool with a thread per core sleeps between tasks ({@link pollLevel}). */
const FEW_CORES = 2;

/**
 * How hard a pool's idle threads spin before they sleep: 0 (sleep at once) for a pool that takes
 * every core of a machine of at most {@link FEW_CORES}, ggml's default (undefined here) otherwise.
 * On 2 cores with 2 threads every spinning thread keeps the decoding thread or the event loop off
 * a core: sleeping took one stream (bench-125m, `bench/serve_bench.ts`) from 0.76–0.83× to
 * 0.93–0.94× llama-server's decode rate, and with the decode thread still measured 0.97–1.03×
 * against 0.92–0.93× spinning. On more cores a sleeping pool pays for every decode by waking
 * each of its threads, which there costs more than the cores spinning take from the rest: on a
 * 16-core Xeon `shimmy bench` made 85–108 tok/s with 16 sleeping threads against 257–428
 * spinning, and with 4 or 8 threads under `taskset` spinning was as fast or faster
 * (`bench/results/h100-2026-12-05/`).
 *
 * @param threads Threads in the pool.
 * @param cores Cores of the machine.
 * @returns The `poll` level to set, or undefined for ggml's default.
 * @example
 * ```ts
 * pollLevel(2, 2); // 0
 * pollLevel(16, 16); // undefined
 * ```
 */
export function pollLevel(threads: number, cores: number): number | undefined {
  return threads >= cores && cores <= FEW_CORES ? 0 : undefined;
}
