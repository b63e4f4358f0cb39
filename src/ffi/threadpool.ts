/**
 * `ThreadPool`: an owned ggml CPU threadpool. llama.cpp's tools attach one persistent pool to
 * each context; without it every decode spins threads up and down, which is several times
 * slower when cores are few.
 *
 * @module
 */

import { cString } from "./cstring.ts";
import { NativeHandle } from "./handle.ts";
import { DeviceType, GGML_MAX_N_THREADS, GgmlThreadpoolParamsTail } from "./layouts.ts";
import type { Llama } from "./llama.ts";

const NEW_SIGNATURE = { parameters: ["buffer"], result: "pointer" } as const;
const FREE_SIGNATURE = { parameters: ["pointer"], result: "void" } as const;

/** An owned `ggml_threadpool`. */
export class ThreadPool extends NativeHandle {
  /** Threads in the pool. */
  readonly threads: number;

  private constructor(pointer: Deno.PointerObject, threads: number, free: () => void) {
    super("ThreadPool", pointer, free);
    this.threads = threads;
  }

  /**
   * Creates a pool through the CPU backend, or returns undefined when the loaded libraries
   * have no CPU backend that offers one.
   *
   * @param llama The runtime.
   * @param threads Thread count.
   * @returns The pool, owned by the caller.
   */
  static create(llama: Llama, threads: number): ThreadPool | undefined {
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
    return new ThreadPool(pointer, threads, () => freeFn.call(pointer));
  }
}
