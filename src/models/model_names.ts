/**
 * Model naming shared by discovery, the registry and the error boundary.
 *
 * @module
 */

import { basename } from "node:path";

/** Raised when a model name or path matches no known model (HTTP 404). */
export class ModelNotFoundError extends Error {
  /** The name that was asked for. */
  readonly model: string;

  /**
   * @param model The requested name.
   * @param message Human message.
   */
  constructor(model: string, message: string) {
    super(message);
    this.name = "ModelNotFoundError";
    this.model = model;
  }
}

/**
 * A model's plain name: its file stem, lowercased.
 *
 * @param path The GGUF path.
 * @returns E.g. `phi3` for `/models/Phi3.gguf`.
 */
export function modelNameOf(path: string): string {
  return basename(path).replace(/\.gguf$/i, "").toLowerCase();
}

/**
 * The name the original Shimmy (the Rust project this one replaces) gave a model file: its
 * stem with `_` and spaces as `-`, lowercased. Models answer to it as an alias, so scripts
 * written for that server keep finding them.
 *
 * @param stem The file name without `.gguf` (or a split model's name without its shard part).
 * @returns E.g. `qwen2.5-0.5b-instruct-q4-k-m` for `Qwen2.5-0.5B-Instruct-Q4_K_M`.
 */
export function originalShimmyName(stem: string): string {
  return stem.replace(/[_ ]/g, "-").toLowerCase();
}

/**
 * The name the original Shimmy gave the `SHIMMY_BASE_GGUF` model, whatever its file (its README's
 * quick start asks for it); an alias of that model here.
 */
export const ORIGINAL_BASE_MODEL_NAME = "tinyllama-1.1b";

/**
 * The name the original Shimmy gave an Ollama model: its manifest's path under `manifests/`
 * joined with `/` (`registry.ollama.ai/library/llama3/latest`).
 *
 * @param reference The model's full reference, `HOST/NAMESPACE/NAME:TAG`.
 * @returns The reference with its tag after a `/`, lowercased.
 */
export function originalOllamaName(reference: string): string {
  const colon = reference.lastIndexOf(":");
  return `${reference.slice(0, colon)}/${reference.slice(colon + 1)}`.toLowerCase();
}
