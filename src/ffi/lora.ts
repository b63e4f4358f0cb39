/**
 * `LoraAdapter`: an owned `llama_adapter_lora`, and applying a set of adapters to a context.
 *
 * @module
 */

import { cString } from "./cstring.ts";
import { ModelLoadError } from "./errors.ts";
import { NativeHandle } from "./handle.ts";
import type { Context } from "./context.ts";
import type { Model } from "./model.ts";

/** An owned LoRA adapter, tied to the model it was loaded for. */
export class LoraAdapter extends NativeHandle {
  /** The base model. */
  readonly model: Model;
  /** File it came from. */
  readonly path: string;

  readonly #release: () => void;

  private constructor(model: Model, pointer: Deno.PointerObject, path: string) {
    const free = model.llama.symbols.llama_adapter_lora_free;
    super("LoraAdapter", pointer, () => free(pointer));
    this.model = model;
    this.path = path;
    this.#release = model.adopt(this);
  }

  /** Frees the adapter (also done by the model's own `close()`, which comes first). */
  override close(): void {
    this.#release();
    super.close();
  }

  /**
   * Loads a GGUF LoRA adapter for a model.
   *
   * @param model The base model.
   * @param path The adapter file.
   * @returns The adapter; the caller owns it and closes it before the model.
   * @throws {ModelLoadError} when the file is missing or does not fit the model.
   */
  static async load(model: Model, path: string): Promise<LoraAdapter> {
    const llama = model.llama;
    try {
      await Deno.stat(path);
    } catch {
      throw new ModelLoadError(
        "not_found",
        path,
        `Cannot load LoRA adapter ${path}: file not found`,
      );
    }
    const mark = llama.logMark();
    const pointer = await llama.whileNative(() =>
      llama.symbols.llama_adapter_lora_init(model.pointer, cString(path))
    );
    if (pointer === null) {
      const reasons = llama.recentProblems(mark);
      throw new ModelLoadError(
        "load_failed",
        path,
        `Cannot load LoRA adapter ${path}` + (reasons.length ? `: ${reasons.join("; ")}` : ""),
      );
    }
    return new LoraAdapter(model, pointer, path);
  }
}

/**
 * Sets the adapters a context applies (replacing the previous set); call between decodes.
 *
 * @param context The context.
 * @param adapters Adapters with their scales; [] detaches all.
 */
export function applyLoraAdapters(
  context: Context,
  adapters: readonly { adapter: LoraAdapter; scale: number }[],
): void {
  const pointers = new BigUint64Array(Math.max(1, adapters.length));
  const scales = new Float32Array(Math.max(1, adapters.length));
  adapters.forEach(({ adapter, scale }, i) => {
    pointers[i] = BigInt(Deno.UnsafePointer.value(adapter.pointer));
    scales[i] = scale;
  });
  const status = context.model.llama.symbols.llama_set_adapters_lora(
    context.pointer,
    new Uint8Array(pointers.buffer),
    BigInt(adapters.length),
    new Uint8Array(scales.buffer),
  );
  if (status !== 0) throw new Error(`Cannot apply LoRA adapters (status ${status})`);
}
