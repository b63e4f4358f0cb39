/**
 * Resolves what a user typed as a model (a path, or a name) to a GGUF file. A name matches
 * the file stem, case-insensitively, in the model folders: the folder of `SHIMMY_BASE_GGUF`,
 * `--model-dirs` / `SHIMMY_MODEL_PATHS` (`;`-separated, or the OS path separator), and
 * `./models`, each searched two levels deep. Names never become paths: a name with a path
 * separator or `..` is only ever treated as a path the user typed on their own machine.
 *
 * @module
 */

import { basename, delimiter, dirname, join } from "node:path";

/** Raised when a model name or path matches no file. */
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

/** Where to look for models by name. */
export interface ModelSearchOptions {
  /** `--model-dirs` value (`;`-separated). */
  modelDirs?: string;
  /** Environment lookup (tests pass their own). Default `Deno.env.get`. */
  env?: (name: string) => string | undefined;
}

/**
 * The folders searched for models by name, in order, without duplicates.
 *
 * @param options `--model-dirs` and environment.
 * @returns Folder paths.
 */
export function modelSearchDirs(options: ModelSearchOptions = {}): string[] {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const split = (list: string | undefined) =>
    (list ?? "").split(/[;]/).flatMap((part) => part.split(delimiter)).map((p) => p.trim())
      .filter(Boolean);
  const base = env("SHIMMY_BASE_GGUF");
  return [
    ...new Set([
      ...(base ? [dirname(base)] : []),
      ...split(options.modelDirs),
      ...split(env("SHIMMY_MODEL_PATHS")),
      "models",
    ]),
  ];
}

/**
 * Every `.gguf` file in the model folders (two levels deep, dot folders skipped), with
 * `SHIMMY_BASE_GGUF` first when set.
 *
 * @param options Search folders and environment.
 * @returns File paths, without duplicates.
 */
export function findModelFiles(options: ModelSearchOptions = {}): string[] {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const base = env("SHIMMY_BASE_GGUF");
  return [
    ...new Set([
      ...(base ? [base] : []),
      ...modelSearchDirs(options).flatMap((dir) => ggufFilesIn(dir, 2)),
    ]),
  ];
}

function ggufFilesIn(dir: string, depth: number): string[] {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    if (entry.name.startsWith(".")) return [];
    const path = join(dir, entry.name);
    if (entry.isDirectory) return depth > 0 ? ggufFilesIn(path, depth - 1) : [];
    return entry.name.toLowerCase().endsWith(".gguf") ? [path] : [];
  });
}

/** A model's name: its file stem, lowercased. */
export function modelNameOf(path: string): string {
  return basename(path).replace(/\.gguf$/i, "").toLowerCase();
}

/**
 * Finds the GGUF file for a model argument.
 *
 * @param model A path to a `.gguf` file, or a model name.
 * @param options Search folders and environment.
 * @returns The file path.
 * @throws {ModelNotFoundError} listing the folders searched and the names available.
 * @example
 * ```ts
 * resolveModelPath("phi3", { modelDirs: "/models" }); // "/models/phi3.gguf"
 * ```
 */
export function resolveModelPath(model: string, options: ModelSearchOptions = {}): string {
  try {
    if (Deno.statSync(model).isFile) return model;
  } catch {
    // not a path on disk: try it as a name
  }
  const looksLikePath = /[\\/]/.test(model) || model.toLowerCase().endsWith(".gguf");
  const dirs = modelSearchDirs(options);
  const candidates = findModelFiles(options);
  const wanted = model.toLowerCase();
  if (!looksLikePath) {
    const exact = candidates.find((path) => modelNameOf(path) === wanted);
    if (exact) return exact;
    const prefixed = candidates.filter((path) => modelNameOf(path).startsWith(wanted));
    if (prefixed.length === 1) return prefixed[0] as string;
  }
  const names = [...new Set(candidates.map(modelNameOf))];
  throw new ModelNotFoundError(
    model,
    looksLikePath
      ? `Model file ${model} not found`
      : `Model "${model}" not found. Searched: ${dirs.join(", ")}. ` +
        (names.length ? `Available: ${names.join(", ")}` : "No .gguf files there") +
        ". Pass a path to a .gguf file, or add its folder with --model-dirs",
  );
}
