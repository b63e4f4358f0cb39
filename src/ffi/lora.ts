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

  private constructor(model: Model, pointer: Deno.PointerObject, path: string) {
    const free = model.llama.symbols.llama_adapter_lora_free;
    // llama.cpp frees adapters with their model: the model's close() closes this one first.
    super("LoraAdapter", pointer, () => free(pointer), [model]);
    this.model = model;
    this.path = path;
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
    await checkAdapterFile(path);
    const mark = llama.logMark();
    // Loading adds the adapter to the model's set, which decodes read: it runs alone.
    const pointer = await model.gate.exclusive(() =>
      llama.whileNative(() => llama.symbols.llama_adapter_lora_init(model.pointer, cString(path)))
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

/** GGUF files start with these bytes. */
const GGUF_MAGIC = "GGUF";

/**
 * Checks that a file is a regular GGUF file before llama.cpp opens it, so a missing file, a
 * FIFO or device (which would block a thread) or a non-GGUF file (whose first bytes llama.cpp
 * would echo in its error) never reaches it.
 */
async function checkAdapterFile(path: string): Promise<void> {
  const fail = (why: string) =>
    new ModelLoadError("load_failed", path, `Cannot load LoRA adapter ${path}: ${why}`);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new ModelLoadError("not_found", path, `Cannot load LoRA adapter ${path}: file not found`);
  }
  if (!info.isFile) throw fail("not a regular file");
  const head = new Uint8Array(4);
  using file = await Deno.open(path, { read: true });
  const read = await file.read(head);
  if (read !== 4 || new TextDecoder().decode(head) !== GGUF_MAGIC) throw fail("not a GGUF file");
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
