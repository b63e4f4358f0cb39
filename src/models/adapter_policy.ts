/**
 * Which adapter files a request may name by path: only regular files inside the configured
 * model folders (after following symlinks), checked before anything is opened. A path outside
 * them is refused with the same message whether or not it exists, so the server never
 * reveals what is on the disk, and a FIFO or device is never opened.
 *
 * @module
 */

import { isAbsolute, relative, resolve } from "node:path";
import { GenerationError } from "../engine/errors.ts";

/** Raised for an adapter path a request may not use. */
export class AdapterPathError extends GenerationError {
  /** @param message Human message. */
  constructor(message: string) {
    super("invalid_request", message);
    this.name = "AdapterPathError";
  }
}

function inside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

async function realOrSelf(path: string): Promise<string> {
  try {
    return await Deno.realPath(path);
  } catch {
    return path;
  }
}

/**
 * Checks an adapter path named in a request.
 *
 * @param path The path as sent.
 * @param allowedDirs The configured model folders.
 * @returns The real path of the file, safe to load.
 * @throws {AdapterPathError} when it is outside the folders, missing, or not a regular file.
 * @example
 * ```ts
 * const file = await allowedAdapterPath("/models/lora/style.gguf", ["/models"]);
 * ```
 */
export async function allowedAdapterPath(
  path: string,
  allowedDirs: readonly string[],
): Promise<string> {
  const refuse = () =>
    new AdapterPathError(
      `Adapter paths must name a file inside the model folders (--model-dirs, or the folder ` +
        `of a --model file); send the adapter's name instead`,
    );
  if (path.includes("\0") || allowedDirs.length === 0) throw refuse();
  const wanted = resolve(path);
  const dirs = await Promise.all(allowedDirs.map((dir) => realOrSelf(resolve(dir))));
  const lexical = allowedDirs.map((dir) => resolve(dir));
  if (!lexical.some((dir) => inside(dir, wanted)) && !dirs.some((dir) => inside(dir, wanted))) {
    throw refuse();
  }
  let real: string;
  try {
    real = await Deno.realPath(wanted);
  } catch {
    throw new AdapterPathError(`Adapter file ${path} does not exist`);
  }
  if (!dirs.some((dir) => inside(dir, real))) throw refuse(); // a symlink out of the folders
  const info = await Deno.stat(real);
  if (!info.isFile) throw new AdapterPathError(`Adapter ${path} is not a regular file`);
  return real;
}
