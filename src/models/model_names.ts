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
