/**
 * The disk side of model discovery: a bounded folder walk (depth, entries, time; dot and
 * system folders skipped; symlinked folders entered once, so loops end), split-GGUF grouping,
 * and the Hugging Face cache and Ollama store layouts. It finds candidate files; reading
 * their GGUF headers is `discovery_inspect.ts`'s job.
 *
 * @module
 */

import { basename, dirname, join, relative, sep } from "node:path";
import type { ModelSourceKind } from "./discovery_roots.ts";

/** Why something found on disk is not offered as a model or adapter. */
export type SkipKind =
  /** A scan stopped early (entries, time) or did not go deeper (depth). */
  | "limit"
  /** An explicit path that does not exist. */
  | "not-found"
  /** A folder or file that could not be read (permissions, I/O). */
  | "unreadable"
  /** A symlink whose target is missing (e.g. an unfinished download). */
  | "broken-link"
  /** Not a valid GGUF file, or malformed metadata. */
  | "corrupt"
  /** A GGUF file holding only a tokenizer, no weights. */
  | "vocab-only"
  /** Part of a split model whose other parts are missing. */
  | "missing-shard"
  /** An Ollama manifest that cannot be used. */
  | "manifest";

/** Something found but not listed, with the reason. */
export interface SkippedEntry {
  /** The file or folder. */
  readonly path: string;
  /** What kind of problem it is. */
  readonly kind: SkipKind;
  /** A human sentence saying what was wrong. */
  readonly reason: string;
  /** The source whose search found it. */
  readonly source: ModelSourceKind;
}

/** Folder names never entered (besides every name starting with a dot). */
export const SKIPPED_FOLDER_NAMES: ReadonlySet<string> = new Set([
  "node_modules",
  "__pycache__",
  "site-packages",
  "venv",
  "Library",
  "Caches",
  "AppData",
  "$RECYCLE.BIN",
  "System Volume Information",
  "proc",
  "sys",
  "dev",
]);

/** The limits of one root's scan; a shared deadline bounds the whole discovery. */
export class ScanBudget {
  /** Entries read so far. */
  entries = 0;
  /** Set once the scan stopped early: the reason. */
  stopped: string | undefined;
  /** True once a folder deeper than the depth limit was left out. */
  depthReached = false;

  /**
   * @param maxDepth Folder levels entered below a root.
   * @param maxEntries Directory entries read before stopping.
   * @param deadline `Date.now()` value after which scans stop.
   * @param timeLimitMs The time limit, for messages.
   */
  constructor(
    readonly maxDepth: number,
    readonly maxEntries: number,
    readonly deadline: number,
    readonly timeLimitMs: number,
  ) {}

  /** Checks the time limit; returns false (and records why) once it has passed. */
  inTime(): boolean {
    if (this.stopped !== undefined) return false;
    if (Date.now() >= this.deadline) {
      this.stopped = `time limit of ${this.timeLimitMs} ms reached`;
      return false;
    }
    return true;
  }

  /** Counts one entry; returns false (and records why) once the entry limit is passed. */
  count(): boolean {
    if (this.stopped !== undefined) return false;
    this.entries++;
    if (this.entries > this.maxEntries) {
      this.stopped = `limit of ${this.maxEntries} entries reached`;
      return false;
    }
    return true;
  }
}

/** Files found by {@link walkFiles}. */
export interface WalkResult {
  /** Matching files (or symlinks to files), as found, in sorted walk order. */
  readonly files: string[];
  /** Problems met on the way (broken links to matching names, unreadable folders). */
  readonly problems: { path: string; kind: SkipKind; reason: string }[];
}

/**
 * True for file names discovery treats as GGUF files.
 *
 * @param name A file name.
 * @returns Whether it ends in `.gguf` (any case).
 */
export function isGgufName(name: string): boolean {
  return name.toLowerCase().endsWith(".gguf");
}

/**
 * Walks a folder tree within a budget, depth first in name order. Dot folders and
 * {@link SKIPPED_FOLDER_NAMES} are not entered; a folder reached twice (through a symlink, or
 * from another root sharing `visited`) is entered once, so symlink loops end.
 *
 * @param root Folder to walk (it must exist).
 * @param budget Limits, updated as entries are read.
 * @param visited Real paths of folders already walked; updated.
 * @param match Which file names to return.
 * @returns The matching files and the problems met.
 */
export async function walkFiles(
  root: string,
  budget: ScanBudget,
  visited: Set<string>,
  match: (name: string) => boolean,
): Promise<WalkResult> {
  const result: WalkResult = { files: [], problems: [] };
  let rootReal: string;
  try {
    rootReal = await Deno.realPath(root);
  } catch (error) {
    result.problems.push({ path: root, kind: "unreadable", reason: describe(error) });
    return result;
  }

  const visit = async (dir: string, real: string, depth: number): Promise<boolean> => {
    if (visited.has(real)) return true;
    visited.add(real);
    if (!budget.inTime()) return false;
    const entries: Deno.DirEntry[] = [];
    try {
      for await (const entry of Deno.readDir(dir)) {
        if (!budget.count()) return false;
        entries.push(entry);
      }
    } catch (error) {
      result.problems.push({
        path: dir,
        kind: "unreadable",
        reason: `Cannot read folder ${dir}: ${describe(error)}`,
      });
      return true;
    }
    entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    for (const entry of entries) {
      const path = join(dir, entry.name);
      let isDirectory = entry.isDirectory;
      let childReal = join(real, entry.name);
      if (entry.isSymlink) {
        try {
          const target = await Deno.stat(path);
          isDirectory = target.isDirectory;
          if (target.isFile && match(entry.name)) result.files.push(path);
          if (isDirectory) childReal = await Deno.realPath(path);
        } catch (error) {
          if (match(entry.name)) {
            result.problems.push({
              path,
              kind: "broken-link",
              reason: `Symlink ${path} points to a missing file (${
                describe(error)
              }); the download may be unfinished`,
            });
          }
          continue;
        }
      } else if (entry.isFile) {
        if (match(entry.name)) result.files.push(path);
        continue;
      }
      if (
        !isDirectory || entry.name.startsWith(".") || SKIPPED_FOLDER_NAMES.has(entry.name) ||
        visited.has(childReal)
      ) {
        continue;
      }
      if (depth >= budget.maxDepth) {
        budget.depthReached = true;
        continue;
      }
      if (!await visit(path, childReal, depth + 1)) return false;
    }
    return true;
  };

  await visit(root, rootReal, 0);
  return result;
}

/** A short description of a thrown value. */
export function describe(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "not found";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return error instanceof Error ? error.message : String(error);
}

/** The parts of a split GGUF file name (`PREFIX-00001-of-00003.gguf`). */
export interface ShardName {
  /** Everything before `-NNNNN-of-`. */
  readonly prefix: string;
  /** The 1-based shard number. */
  readonly index: number;
  /** How many shards the model has. */
  readonly count: number;
  /** The digits of the index as written (for their width). */
  readonly indexDigits: number;
  /** The count as written. */
  readonly countText: string;
}

const SHARD_PATTERN = /^(.+)-(\d{1,6})-of-(\d{1,6})\.gguf$/i;

/**
 * Parses a split GGUF file name.
 *
 * @param name A file name (not a path).
 * @returns Its parts, or `undefined` when it is not a split name (or a malformed one).
 *
 * @example
 * ```ts
 * import { parseShardName } from "./discovery_scan.ts";
 * parseShardName("qwen-00002-of-00003.gguf"); // { prefix: "qwen", index: 2, count: 3, … }
 * ```
 */
export function parseShardName(name: string): ShardName | undefined {
  const m = SHARD_PATTERN.exec(name);
  if (m === null) return undefined;
  const index = Number(m[2]);
  const count = Number(m[3]);
  if (index < 1 || count < 1 || index > count) return undefined;
  return { prefix: m[1]!, index, count, indexDigits: m[2]!.length, countText: m[3]! };
}

/**
 * The stem a model is named after: the file name without `.gguf` and without a split suffix.
 *
 * @param path A file path or name.
 * @returns The stem, lowercased.
 */
export function modelStem(path: string): string {
  const name = basename(path);
  const shard = parseShardName(name);
  return (shard?.prefix ?? name.replace(/\.gguf$/i, "")).toLowerCase();
}

/** The shards of one model, or why they cannot be used. */
export type ShardGroup =
  | { readonly ok: true; readonly shards: string[] }
  | { readonly ok: false; readonly path: string; readonly reason: string };

/**
 * Groups the files of one folder scan into models: a single file is its own group; split
 * files with the same folder, prefix and count form one group ordered by shard number. A
 * group missing any shard is rejected (its first present file names it).
 *
 * @param files GGUF file paths, in walk order.
 * @returns Groups in the order of their first file.
 */
export function groupShards(files: readonly string[]): ShardGroup[] {
  const groups: { key: string; single?: string; count: number; parts: Map<number, string> }[] = [];
  const byKey = new Map<string, (typeof groups)[number]>();
  for (const path of files) {
    const shard = parseShardName(basename(path));
    if (shard === undefined || shard.count === 1) {
      groups.push({ key: path, single: path, count: 1, parts: new Map() });
      continue;
    }
    const key = `${dirname(path)}\0${shard.prefix.toLowerCase()}\0${shard.count}`;
    let group = byKey.get(key);
    if (group === undefined) {
      group = { key, count: shard.count, parts: new Map() };
      byKey.set(key, group);
      groups.push(group);
    }
    if (!group.parts.has(shard.index)) group.parts.set(shard.index, path);
  }
  return groups.map((group): ShardGroup => {
    if (group.single !== undefined) return { ok: true, shards: [group.single] };
    const missing: number[] = [];
    const shards: string[] = [];
    for (let i = 1; i <= group.count; i++) {
      const part = group.parts.get(i);
      if (part === undefined) missing.push(i);
      else shards.push(part);
    }
    if (missing.length === 0) return { ok: true, shards };
    const first = [...group.parts.entries()].sort((a, b) => a[0] - b[0])[0]![1];
    return {
      ok: false,
      path: first,
      reason:
        `Split model ${basename(first)} is missing shard${missing.length > 1 ? "s" : ""} ${
          missing.join(", ")
        } of ${group.count}` +
        "; download the missing parts or remove the others",
    };
  });
}

/**
 * Finds the sibling shards of an explicitly named split file by their expected names, without
 * listing its folder.
 *
 * @param path A file path (any shard, or a single file).
 * @returns The shard group (a single file is a group of one).
 */
export async function siblingShards(path: string): Promise<ShardGroup> {
  const shard = parseShardName(basename(path));
  if (shard === undefined || shard.count === 1) return { ok: true, shards: [path] };
  const dir = dirname(path);
  const shards: string[] = [];
  const missing: number[] = [];
  for (let i = 1; i <= shard.count; i++) {
    const name = `${shard.prefix}-${
      String(i).padStart(shard.indexDigits, "0")
    }-of-${shard.countText}.gguf`;
    const candidate = join(dir, name);
    try {
      if ((await Deno.stat(candidate)).isFile) {
        shards.push(candidate);
        continue;
      }
    } catch {
      // missing: reported below
    }
    missing.push(i);
  }
  if (missing.length === 0) return { ok: true, shards };
  return {
    ok: false,
    path,
    reason: `Split model ${basename(path)} is missing shard${missing.length > 1 ? "s" : ""} ${
      missing.join(", ")
    } of ${shard.count}; download the missing parts`,
  };
}

/** A GGUF file (or split group) found in a Hugging Face cache. */
export interface HfFile {
  /** `ORG/NAME` (or `NAME` for repositories without an organisation). */
  readonly repo: string;
  /** The snapshot revision it was taken from. */
  readonly revision: string;
  /** Path inside the snapshot with `/` separators. */
  readonly relativePath: string;
  /** The snapshot path of the file (a symlink into `blobs/`). */
  readonly path: string;
}

/**
 * Parses a hub cache folder name (`models--ORG--NAME`).
 *
 * @param folder The folder name.
 * @returns `ORG/NAME`, or `undefined` for datasets, spaces and other folders.
 */
export function hfRepoOf(folder: string): string | undefined {
  if (!folder.startsWith("models--")) return undefined;
  const parts = folder.slice("models--".length).split("--").filter((s) => s !== "");
  return parts.length === 0 ? undefined : parts.join("/");
}

/**
 * Lists the GGUF files of a Hugging Face hub cache: for each `models--ORG--NAME` repository,
 * the snapshot `refs/main` points to first, then other refs, then the remaining snapshots
 * newest first; a file path seen in an earlier snapshot hides the same path in later ones
 * (older revisions of the same file).
 *
 * @param hub The hub cache folder.
 * @param budget Scan limits.
 * @param visited Folders already walked.
 * @returns The files and the problems met.
 */
export async function scanHuggingFace(
  hub: string,
  budget: ScanBudget,
  visited: Set<string>,
): Promise<{ files: HfFile[]; problems: WalkResult["problems"] }> {
  const files: HfFile[] = [];
  const problems: WalkResult["problems"] = [];
  const repos: string[] = [];
  try {
    for await (const entry of Deno.readDir(hub)) {
      if (!budget.count()) return { files, problems };
      if ((entry.isDirectory || entry.isSymlink) && hfRepoOf(entry.name)) repos.push(entry.name);
    }
  } catch (error) {
    problems.push({
      path: hub,
      kind: "unreadable",
      reason: `Cannot read folder ${hub}: ${describe(error)}`,
    });
    return { files, problems };
  }
  repos.sort();
  for (const folder of repos) {
    if (!budget.inTime()) break;
    const repo = hfRepoOf(folder)!;
    const snapshots = join(hub, folder, "snapshots");
    const revisions = await orderedRevisions(join(hub, folder), snapshots, budget);
    const seen = new Set<string>();
    for (const revision of revisions) {
      const snapshot = join(snapshots, revision);
      const walked = await walkFiles(snapshot, budget, visited, isGgufName);
      problems.push(...walked.problems);
      for (const path of walked.files) {
        const relativePath = relative(snapshot, path).split(sep).join("/");
        if (seen.has(relativePath)) continue;
        seen.add(relativePath);
        files.push({ repo, revision, relativePath, path });
      }
      if (budget.stopped !== undefined) return { files, problems };
    }
  }
  return { files, problems };
}

async function orderedRevisions(
  repoDir: string,
  snapshots: string,
  budget: ScanBudget,
): Promise<string[]> {
  const present: { name: string; mtime: number }[] = [];
  try {
    for await (const entry of Deno.readDir(snapshots)) {
      if (!budget.count()) break;
      if (!entry.isDirectory && !entry.isSymlink) continue;
      let mtime = 0;
      try {
        mtime = (await Deno.stat(join(snapshots, entry.name))).mtime?.getTime() ?? 0;
      } catch {
        continue;
      }
      present.push({ name: entry.name, mtime });
    }
  } catch {
    return [];
  }
  const refs: { name: string; commit: string }[] = [];
  try {
    for await (const entry of Deno.readDir(join(repoDir, "refs"))) {
      if (!entry.isFile) continue;
      const commit = (await Deno.readTextFile(join(repoDir, "refs", entry.name))).trim();
      refs.push({ name: entry.name, commit });
    }
  } catch {
    // no refs folder: snapshots alone decide
  }
  refs.sort((a, b) =>
    a.name === "main" ? -1 : b.name === "main" ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0
  );
  const order: string[] = [];
  const names = new Set(present.map((s) => s.name));
  for (const ref of refs) {
    if (names.has(ref.commit) && !order.includes(ref.commit)) order.push(ref.commit);
  }
  present.sort((a, b) => b.mtime - a.mtime || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const s of present) if (!order.includes(s.name)) order.push(s.name);
  return order;
}

/** Ollama's media types for the layers discovery uses. */
export const OLLAMA_MEDIA_TYPES = {
  model: "application/vnd.ollama.image.model",
  adapter: "application/vnd.ollama.image.adapter",
  projector: "application/vnd.ollama.image.projector",
} as const;

/** A model of an Ollama store. */
export interface OllamaModel {
  /** `NAME:TAG`, `NAMESPACE/NAME:TAG` or `HOST/NAMESPACE/NAME:TAG`, lowercased. */
  readonly name: string;
  /** The full reference, `HOST/NAMESPACE/NAME:TAG`. */
  readonly reference: string;
  /** The manifest file. */
  readonly manifest: string;
  /** Blob of the model layer. */
  readonly model: string;
  /** Blobs of adapter layers. */
  readonly adapters: string[];
  /** Blobs of projector (mmproj) layers. */
  readonly projectors: string[];
}

const MAX_MANIFEST_BYTES = 1 << 20;
const DIGEST_PATTERN = /^sha256[:-]([0-9a-f]{64})$/;

/**
 * The blob file of a layer digest (`sha256:HEX` is stored as `blobs/sha256-HEX`). Digests
 * come from files on disk, so anything but 64 hex digits is refused: a digest never
 * becomes a path outside `blobs/`.
 *
 * @param store The Ollama models folder.
 * @param digest The layer's `digest` field.
 * @returns The blob path, or `undefined` for a malformed digest.
 */
export function ollamaBlobPath(store: string, digest: unknown): string | undefined {
  if (typeof digest !== "string") return undefined;
  const m = DIGEST_PATTERN.exec(digest);
  return m === null ? undefined : join(store, "blobs", `sha256-${m[1]}`);
}

/**
 * Lists the models of an Ollama store from its manifests
 * (`manifests/HOST/NAMESPACE/NAME/TAG`). Models of `registry.ollama.ai/library` are named
 * `NAME:TAG`, other namespaces of that registry `NAMESPACE/NAME:TAG`, other registries
 * `HOST/NAMESPACE/NAME:TAG` (as `ollama list` shows them).
 *
 * @param store The models folder (holding `manifests/` and `blobs/`).
 * @param budget Scan limits.
 * @param visited Folders already walked.
 * @returns The models and the problems met.
 */
export async function scanOllama(
  store: string,
  budget: ScanBudget,
  visited: Set<string>,
): Promise<{ models: OllamaModel[]; problems: WalkResult["problems"] }> {
  const models: OllamaModel[] = [];
  const manifests = join(store, "manifests");
  try {
    await Deno.stat(manifests);
  } catch {
    return { models, problems: [] };
  }
  const walked = await walkFiles(manifests, budget, visited, () => true);
  const problems = walked.problems;
  for (const manifest of walked.files) {
    const parts = relative(manifests, manifest).split(sep);
    if (parts.length !== 4) continue;
    const [host, namespace, name, tag] = parts as [string, string, string, string];
    const reference = `${host}/${namespace}/${name}:${tag}`;
    const shown = host === "registry.ollama.ai"
      ? (namespace === "library" ? `${name}:${tag}` : `${namespace}/${name}:${tag}`)
      : reference;
    const fail = (reason: string) =>
      problems.push({
        path: manifest,
        kind: "manifest",
        reason: `Ollama model ${shown}: ${reason}`,
      });
    let layers: unknown;
    try {
      const stat = await Deno.stat(manifest);
      if (stat.size > MAX_MANIFEST_BYTES) {
        fail(`the manifest is ${stat.size} bytes, too large to be one`);
        continue;
      }
      layers = (JSON.parse(await Deno.readTextFile(manifest)) as { layers?: unknown })?.layers;
    } catch (error) {
      fail(`cannot read the manifest (${describe(error)})`);
      continue;
    }
    if (!Array.isArray(layers)) {
      fail("the manifest has no layers list");
      continue;
    }
    const blobs = (mediaType: string) =>
      layers.filter((l): l is { digest?: unknown } =>
        typeof l === "object" && l !== null &&
        (l as { mediaType?: unknown }).mediaType === mediaType
      ).map((l) => ({ digest: l.digest, path: ollamaBlobPath(store, l.digest) }));
    const modelLayers = blobs(OLLAMA_MEDIA_TYPES.model);
    const model = modelLayers[0];
    if (model === undefined) {
      fail(`the manifest has no ${OLLAMA_MEDIA_TYPES.model} layer`);
      continue;
    }
    if (model.path === undefined) {
      fail(`the model layer has a malformed digest ${JSON.stringify(model.digest)}`);
      continue;
    }
    const valid = (list: { path: string | undefined }[]) =>
      list.flatMap((l) => l.path === undefined ? [] : [l.path]);
    models.push({
      name: shown.toLowerCase(),
      reference,
      manifest,
      model: model.path,
      adapters: valid(blobs(OLLAMA_MEDIA_TYPES.adapter)),
      projectors: valid(blobs(OLLAMA_MEDIA_TYPES.projector)),
    });
  }
  return { models, problems };
}
