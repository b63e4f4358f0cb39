/**
 * The model registry: the models a server knows (by unique lowercase name), loaded on first
 * use and then shared by every request (the original Shimmy reloaded from disk per request).
 * Concurrent first requests share one load. Only files that exist are ever listed.
 *
 * @module
 */

import { basename } from "node:path";
import { LoadedModel, type OpenModelOptions } from "./loaded_model.ts";
import { modelNameOf, ModelNotFoundError } from "./model_resolver.ts";

/** A model the registry knows about. */
export interface ModelEntry {
  /** Unique lowercase name used in requests. */
  name: string;
  /** GGUF file path. */
  path: string;
  /** Where it was found (`--model`, `SHIMMY_BASE_GGUF`, a folder…). */
  source: string;
  /** File size in bytes. */
  sizeBytes: number;
}

/** Load state of one model. */
export type ModelState = "available" | "loading" | "loaded";

/** Options shared by every model the registry opens. */
export type RegistryLoadOptions = Omit<OpenModelOptions, "path" | "onProgress" | "signal">;

/**
 * Builds registry entries from file paths, giving each a unique name (a numeric suffix is
 * added when two files share a stem). Missing files are skipped.
 *
 * @param files Paths with their source labels.
 * @returns The entries.
 */
export function entriesFor(files: readonly { path: string; source: string }[]): ModelEntry[] {
  const entries: ModelEntry[] = [];
  const taken = new Set<string>();
  const seenPaths = new Set<string>();
  for (const { path, source } of files) {
    let size: number;
    try {
      const info = Deno.statSync(path);
      if (!info.isFile) continue;
      size = info.size;
    } catch {
      continue;
    }
    const real = Deno.realPathSync(path);
    if (seenPaths.has(real)) continue;
    seenPaths.add(real);
    const stem = modelNameOf(path) || basename(path).toLowerCase();
    let name = stem;
    for (let n = 2; taken.has(name); n++) name = `${stem}-${n}`;
    taken.add(name);
    entries.push({ name, path, source, sizeBytes: size });
  }
  return entries;
}

/** Known models, loaded on demand and shared. */
export class ModelRegistry {
  readonly #entries: ModelEntry[];
  readonly #options: RegistryLoadOptions;
  readonly #loads = new Map<string, Promise<LoadedModel>>();
  readonly #loaded = new Map<string, LoadedModel>();
  /** Milliseconds each model took to load. */
  readonly loadTimes = new Map<string, number>();

  /**
   * @param entries Known models; the first is the default.
   * @param options Load options for every model.
   */
  constructor(entries: ModelEntry[], options: RegistryLoadOptions = {}) {
    this.#entries = entries;
    this.#options = options;
  }

  /** Every known model. */
  list(): readonly ModelEntry[] {
    return this.#entries;
  }

  /** Load state of a model. */
  state(name: string): ModelState {
    if (this.#loaded.has(name)) return "loaded";
    return this.#loads.has(name) ? "loading" : "available";
  }

  /** The loaded models by name. */
  loaded(): ReadonlyMap<string, LoadedModel> {
    return this.#loaded;
  }

  /**
   * Finds a model by name (case-insensitive); no name means the default (first) model.
   *
   * @param name The requested model.
   * @returns Its entry.
   * @throws {ModelNotFoundError} for an unknown name, or when no model is known at all.
   */
  resolve(name?: string): ModelEntry {
    if (name === undefined || name === "") {
      const first = this.#entries[0];
      if (!first) {
        throw new ModelNotFoundError(
          "",
          "No models are available: start the server with --model PATH or --model-dirs DIRS",
        );
      }
      return first;
    }
    const wanted = name.toLowerCase();
    const entry = this.#entries.find((e) => e.name === wanted) ??
      this.#entries.find((e) => modelNameOf(e.path) === wanted.replace(/\.gguf$/, ""));
    if (!entry) {
      throw new ModelNotFoundError(
        name,
        `Model "${name}" not found. Available: ${this.#entries.map((e) => e.name).join(", ")}`,
      );
    }
    return entry;
  }

  /**
   * Returns the loaded model, loading it on first use; concurrent callers share one load.
   *
   * @param name Model name (default model when empty).
   * @returns The loaded model (owned by the registry).
   */
  acquire(name?: string): Promise<LoadedModel> {
    const entry = this.resolve(name);
    const loaded = this.#loaded.get(entry.name);
    if (loaded) return Promise.resolve(loaded);
    let pending = this.#loads.get(entry.name);
    if (!pending) {
      const started = performance.now();
      pending = LoadedModel.open({ ...this.#options, path: entry.path }).then(
        (model) => {
          this.#loaded.set(entry.name, model);
          this.loadTimes.set(entry.name, performance.now() - started);
          this.#loads.delete(entry.name);
          return model;
        },
        (error) => {
          this.#loads.delete(entry.name);
          throw error;
        },
      );
      this.#loads.set(entry.name, pending);
    }
    return pending;
  }

  /** Closes every loaded model (waiting for loads in progress first). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#loads.values()]);
    const models = [...this.#loaded.values()];
    this.#loaded.clear();
    await Promise.all(models.map((m) => m.close()));
  }
}
