/**
 * Reading llama.cpp's log while a model loads: the device each layer went to and the size of
 * each buffer (weights, KV cache, compute, output), as `shimmy probe` reports them.
 *
 * @module
 */

import { ASIDE_BEGINS, ASIDE_ENDS } from "../ffi/llama.ts";

/** What a llama.cpp buffer holds. */
export type BufferKind = "weights" | "kv" | "compute" | "output";

/** One llama.cpp buffer, as its log reports it. */
export interface BufferSize {
  /** Buffer type name, e.g. `CPU_Mapped`, `CUDA0`, `CUDA_Host`. */
  buffer: string;
  /** What it holds. */
  kind: BufferKind;
  /** Size in bytes (llama.cpp prints MiB with two decimals). */
  bytes: number;
}

/**
 * Reads llama.cpp's log while a model loads: where each layer went (`load_tensors: layer 3
 * assigned to device CUDA0`) and each buffer's size (`CUDA0 model buffer size = 12.5 MiB`,
 * `CPU KV buffer size`, `compute buffer size`, `output buffer size`).
 *
 * @example
 * ```ts
 * const log = new LoadLogReader();
 * const stop = llama.listen((text) => log.push(text));
 * // … load …
 * stop();
 * log.finish();
 * ```
 */
export class LoadLogReader {
  /** Device of each layer, by layer index (the output layer is the last index). */
  readonly layerDevice: Map<number, string> = new Map();
  /** Buffers in the order they were logged. */
  readonly buffers: BufferSize[] = [];
  #partial = "";
  #asideDepth = 0;

  /** @param text Log text as the callback delivers it (lines, or pieces of one). */
  push(text: string): void {
    const lines = (this.#partial + text).split("\n");
    this.#partial = lines.pop() ?? "";
    for (const line of lines) this.#line(line);
  }

  /** Reads a last line that had no newline. */
  finish(): void {
    if (this.#partial !== "") this.#line(this.#partial);
    this.#partial = "";
  }

  #line(line: string): void {
    // Another model's lines (the attention probe's, see `Llama.aside`) are not this load's.
    if (line.startsWith(ASIDE_BEGINS)) this.#asideDepth++;
    if (line.startsWith(ASIDE_ENDS)) this.#asideDepth = Math.max(0, this.#asideDepth - 1);
    if (this.#asideDepth > 0 || line.startsWith(ASIDE_ENDS)) return;
    const layer = /\blayer\s+(\d+) assigned to device ([^\s,]+)/.exec(line);
    if (layer) {
      this.layerDevice.set(Number(layer[1]), layer[2]!);
      return;
    }
    const buffer = /(\S+)\s+(model|KV|compute|output) buffer size =\s*([\d.]+) MiB/.exec(line);
    if (buffer) {
      const kinds: Record<string, BufferKind> = {
        model: "weights",
        KV: "kv",
        compute: "compute",
        output: "output",
      };
      this.buffers.push({
        buffer: buffer[1]!,
        kind: kinds[buffer[2]!]!,
        bytes: Math.round(Number(buffer[3]) * 1024 * 1024),
      });
    }
  }
}
