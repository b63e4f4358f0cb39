/**
 * How the commands find models: the discovery options built from the flags, discovery over
 * every source (the global `--model-dirs` included), registry entries from its report, and
 * name-or-path lookup.
 *
 * @module
 */

import {
  type DiscoveredModel,
  discoverModels,
  type DiscoveryOptions,
  type DiscoveryReport,
  findModel,
  resolveModel,
} from "../models/discovery.ts";
import { isPullable } from "../models/hf_hub.ts";
import { ModelNotFoundError } from "../models/model_names.ts";
import { findPulled } from "../models/pull.ts";
import type { ModelEntry } from "../models/registry.ts";
import type { GlobalFlags } from "./global_flags.ts";
import { isFile, pathExists } from "../util/fs.ts";

/**
 * The discovery options of a command: the global `--model-dirs`, the command's `--model`
 * paths, over a base (tests pass `env`, `home` and `cwd` so the real home is not searched).
 *
 * @param globals Global flags.
 * @param models `--model PATH` values. Default none.
 * @param base Options to start from. Default `{}` (the process environment and home).
 * @returns Options for `discoverModels`.
 * @example
 * ```ts
 * const report = await discoverModels(discoveryOptions({ modelDirs: "/m", verbose: false }));
 * ```
 */
export function discoveryOptions(
  globals: GlobalFlags,
  models: readonly string[] = [],
  base: DiscoveryOptions = {},
): DiscoveryOptions {
  const modelDirs = [
    ...(typeof base.modelDirs === "string" ? [base.modelDirs] : base.modelDirs ?? []),
    ...(globals.modelDirs ? [globals.modelDirs] : []),
  ];
  return {
    ...base,
    ...(modelDirs.length > 0 ? { modelDirs } : {}),
    ...(models.length > 0 || base.models ? { models: [...(base.models ?? []), ...models] } : {}),
  };
}

/**
 * Runs discovery with the command line's model folders and the explicit models that are files
 * (the others are names, found among what discovery reports).
 *
 * @param globals Global flags (`--model-dirs`).
 * @param models `--model` values, names or paths.
 * @returns The report.
 */
export function discoverFor(globals: GlobalFlags, models: readonly string[] = []) {
  return discoverModels(discoveryOptions(globals, models.filter(isFile)));
}

/**
 * A registry entry for a discovered model.
 *
 * @param model The discovered model.
 * @param registered Whether it was named at start (`--model`; `SHIMMY_BASE_GGUF` always is).
 * @returns The entry.
 */
export function entryOf(model: DiscoveredModel, registered = false): ModelEntry {
  return {
    name: model.name,
    path: model.path,
    source: model.sourceDetail,
    registered: registered || model.source === "env",
    ...(model.architecture !== "unknown" ? { architecture: model.architecture } : {}),
    ...(model.parameterCount !== undefined ? { parameterCount: model.parameterCount } : {}),
    sizeBytes: model.sizeBytes,
    aliases: model.aliases,
    adapters: model.adapters.map((a) => ({ name: a.name, path: a.path })),
  };
}

/**
 * Registry entries, the models named on the command line first (the first is the default).
 *
 * @param report Discovery report.
 * @param wanted `--model` values (names or paths), in order.
 * @returns The entries.
 * @throws {ModelNotFoundError} when a wanted model is not found.
 */
export function entriesFrom(report: DiscoveryReport, wanted: readonly string[]): ModelEntry[] {
  const first = wanted.map((w) => resolveModel(report, w));
  const rest = report.models.filter((m) => !first.includes(m));
  return [...new Set([...first, ...rest])].map((model) => entryOf(model, first.includes(model)));
}

/**
 * The GGUF file for a model argument: an existing file as is, else a discovered model's name.
 *
 * @param nameOrPath What the user typed.
 * @param globals Global flags.
 * @returns The file path.
 * @throws {ModelNotFoundError}
 */
export async function findModelPath(nameOrPath: string, globals: GlobalFlags): Promise<string> {
  if (isFile(nameOrPath)) return nameOrPath;
  missingFileCheck(nameOrPath);
  const report = await discoverFor(globals);
  const found = findModel(report, nameOrPath) ?? findPulled(nameOrPath);
  if (found) return found.path;
  notPulledCheck(nameOrPath);
  return resolveModel(report, nameOrPath).path;
}

/**
 * Throws when a model argument is a path (it starts with `.`, `/` or `~`, or names a `.gguf`
 * file that is no hub reference) and no file is there: the file is missing, whatever the
 * discovered models are.
 *
 * @param nameOrPath What the user typed.
 * @throws {ModelNotFoundError} saying the file is missing.
 */
export function missingFileCheck(nameOrPath: string): void {
  const pathLike = /^(\.{1,2}[\\/]|[\\/]|~|[A-Za-z]:[\\/])/.test(nameOrPath) ||
    nameOrPath.includes("\\") || (/\.gguf$/i.test(nameOrPath) && !isPullable(nameOrPath));
  if (pathLike && !isFile(nameOrPath)) {
    const what = pathExists(nameOrPath) ? "not a file" : "file not found";
    throw new ModelNotFoundError(nameOrPath, `Cannot load model ${nameOrPath}: ${what}`);
  }
}

/**
 * Throws when a hub reference is not on disk, saying how to pull it.
 *
 * @param reference What the user typed.
 * @param allowPullFlag The flag that would pull it, if the command has one.
 * @throws {ModelNotFoundError} for a hub reference.
 */
export function notPulledCheck(reference: string, allowPullFlag?: string): void {
  if (!isPullable(reference) || !reference.includes("/")) return;
  throw new ModelNotFoundError(
    reference,
    `Model ${reference} is not on this machine: run "shimmy pull ${reference}"` +
      (allowPullFlag ? ` or add ${allowPullFlag}` : ""),
  );
}
