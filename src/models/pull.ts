/**
 * `pullModel()`: a model reference to GGUF files on disk, shared by `shimmy pull`, `shimmy
 * run`, `serve --allow-pull` and `POST /api/pull`. Hub models land in the Hugging Face cache
 * layout — `models--ORG--REPO/blobs/SHA256`, `snapshots/COMMIT/FILE` a relative symlink to the
 * blob, `refs/REVISION` holding the commit — so discovery, llama.cpp and Python tools share
 * them; a plain URL lands in Shimmy's own models folder. Files already there are not fetched
 * again, and no download starts that would leave the disk less than its reserve free
 * ({@link reserveRoom}). {@link findPulled} answers, without the network, whether a reference is
 * on disk.
 *
 * @module
 */

import { plainFileNameProblem } from "../util/plain_file_name.ts";
import { dirname, join, relative } from "node:path";
import { discoveryRoots } from "./discovery_roots.ts";
import { downloadFile, remoteSize, sha256File } from "./download.ts";
import {
  type HubFile,
  hubHeaders,
  hubSettings,
  listRepoFiles,
  type ModelRef,
  parseModelRef,
  pickGgufFiles,
  PullError,
  quantOf,
} from "./hf_hub.ts";
import { isFile } from "../util/fs.ts";
import type { DiskSpace } from "../util/disk_space.ts";
import { reserveRoom } from "./pull_room.ts";

/** Progress of a pull, reported as it goes. */
export interface PullProgress {
  /** `listing` the repository, `downloading` a file, `verifying` it, `present` (already there), `done`. */
  status: "listing" | "downloading" | "verifying" | "present" | "done";
  /** The file (path in the repository, or the URL's file name). */
  file?: string;
  /** Its SHA-256, when the hub gave one. */
  digest?: string;
  /** Bytes of this file on disk. */
  completed?: number;
  /** Its size, when known. */
  total?: number;
}

/** Options of {@link pullModel}. */
export interface PullOptions {
  /** The Hugging Face hub cache. Default: where discovery looks (HF_HUB_CACHE, HF_HOME/hub…). */
  hubCache?: string;
  /** Where plain URLs go. Default Shimmy's models folder (~/.local/share/shimmy/models). */
  modelsDir?: string;
  /** Hub base URL. Default `HF_ENDPOINT`, else https://huggingface.co. */
  endpoint?: string;
  /** Hub token. Default `HF_TOKEN`. */
  token?: string;
  /** Called with progress. */
  onProgress?: (progress: PullProgress) => void;
  /** Stops the pull; partial files stay and the next pull resumes them. */
  signal?: AbortSignal;
  /** List what would be fetched, fetch nothing. Default false. */
  dryRun?: boolean;
  /** Wait before a download retry, in ms. Default 500. */
  retryDelayMs?: number;
  /** The space on the disk of a folder (tests pass their own). Default: the system's answer. */
  diskSpace?: (path: string) => Promise<DiskSpace | undefined>;
}

/** A file of a pull. */
export interface PulledFile {
  /** Path in the repository (or the URL's file name). */
  path: string;
  /** Size in bytes (0 when unknown before a dry run). */
  size: number;
  /** SHA-256, when known. */
  sha256?: string;
  /** Where it is (or would be) on disk. */
  localPath: string;
  /** Whether it was already on disk. */
  present: boolean;
}

/** What a pull fetched. */
export interface PullResult {
  /** `ORG/REPO`, for hub models. */
  repo?: string;
  /** The commit pulled, for hub models. */
  commit?: string;
  /** The files, shards in order. */
  files: PulledFile[];
  /** The model's file on disk (the first shard). */
  path: string;
  /** A name that finds it afterwards: `hf.co/ORG/REPO:QUANT`, or the file name. */
  name: string;
  /** Bytes of all files. */
  bytes: number;
}

/**
 * The Hugging Face hub cache folder discovery searches (and `pull` writes).
 *
 * @param env Environment lookup. Default the process environment.
 * @returns The folder.
 */
export function hubCacheDir(env?: Record<string, string>): string {
  const roots = discoveryRoots(env ? { env } : {}).filter((r) => r.source === "huggingface");
  const root = roots[0];
  if (!root) throw new PullError("Cannot find the Hugging Face cache folder: set HF_HOME", 400);
  return root.path;
}

/**
 * Shimmy's own models folder, where plain URLs are saved.
 *
 * @returns The folder.
 */
export function shimmyModelsDir(): string {
  const roots = discoveryRoots().filter((r) => r.source === "shimmy");
  const root = roots.find((r) => /shimmy[\\/]models$/.test(r.path)) ?? roots[0];
  if (!root) throw new PullError("Cannot find a models folder: set HOME", 400);
  return root.path;
}

/**
 * The cache folder of a repository: `models--ORG--REPO`.
 *
 * @param hubCache The hub cache.
 * @param repo `ORG/REPO`.
 * @returns The folder.
 */
export function repoCacheDir(hubCache: string, repo: string): string {
  return join(hubCache, `models--${repo.split("/").join("--")}`);
}

/**
 * The name a pulled hub model answers to: `hf.co/ORG/REPO:QUANT` (or `hf.co/ORG/REPO/FILE`
 * when the file has no quantization tag).
 *
 * @param repo `ORG/REPO`.
 * @param file The first file's path in the repository.
 * @returns The name.
 */
export function pulledName(repo: string, file: string): string {
  const quant = quantOf(file);
  return quant ? `hf.co/${repo}:${quant}` : `hf.co/${repo}/${file}`;
}

/**
 * Downloads the model a reference names, unless it is already on disk.
 *
 * @param reference `hf.co/ORG/REPO[:QUANT]`, `ORG/REPO[:QUANT]`, `ORG/REPO/FILE.gguf` or a URL.
 * @param options Cache folder, hub settings, progress, signal, dry run.
 * @returns What was pulled and where it is.
 * @throws {PullError} for a bad reference, a hub refusal, a missing file, a bad checksum.
 * @example
 * ```ts
 * const pulled = await pullModel("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF", {
 *   onProgress: (p) => console.log(p.status, p.file, p.completed, p.total),
 * });
 * console.log(pulled.path);
 * ```
 */
export async function pullModel(reference: string, options: PullOptions = {}): Promise<PullResult> {
  const ref = parseModelRef(reference);
  const settings = { ...hubSettings(), ...definedOnly(options.endpoint, options.token) };
  if (ref.kind === "url") return await pullUrl(ref.url, options, settings.token);
  options.onProgress?.({ status: "listing" });
  const listing = await listRepoFiles(ref.repo, ref.revision, {
    ...settings,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const picked = pickGgufFiles(ref.repo, listing.files, ref.quant, ref.file);
  const hubCache = options.hubCache ?? hubCacheDir();
  const repoDir = repoCacheDir(hubCache, ref.repo);
  const snapshot = join(repoDir, "snapshots", listing.commit);
  const files = picked.map((f) => planned(f, snapshot));
  const result: PullResult = {
    repo: ref.repo,
    commit: listing.commit,
    files,
    path: files[0]!.localPath,
    name: pulledName(ref.repo, picked[0]!.path),
    bytes: files.reduce((sum, f) => sum + f.size, 0),
  };
  if (options.dryRun) return result;
  const blobs = join(repoDir, "blobs");
  await Deno.mkdir(blobs, { recursive: true });
  const blobOf = (file: PulledFile) =>
    join(blobs, file.sha256 ?? `download-${listing.commit}-${file.path.replaceAll("/", "--")}`);
  // Another snapshot's blob is reused as it is.
  const reused = (file: PulledFile) =>
    file.sha256 !== undefined && sizeOf(blobOf(file)) === file.size;
  const toFetch = files.filter((file) => !file.present && !reused(file));
  const release = await reserveRoom(
    blobs,
    // A partial download is resumed: only its rest is to come.
    toFetch.reduce((sum, f) => sum + f.size - (sizeOf(`${blobOf(f)}.incomplete`) ?? 0), 0),
    ref.repo,
    options.diskSpace,
  );
  try {
    for (const file of files) {
      const base = { file: file.path, ...(file.sha256 ? { digest: file.sha256 } : {}) };
      if (file.present) {
        const size = { completed: file.size, total: file.size };
        options.onProgress?.({ status: "present", ...base, ...size });
        continue;
      }
      const blob = blobOf(file);
      if (toFetch.includes(file)) {
        const url = `${settings.endpoint}/${ref.repo}/resolve/${listing.commit}/${file.path}`;
        await downloadFile(url, blob, {
          size: file.size,
          headers: hubHeaders(settings.token),
          label: `${ref.repo}/${file.path}`,
          onProgress: (completed, total) =>
            options.onProgress?.({
              status: "downloading",
              ...base,
              completed,
              ...(total ? { total } : {}),
            }),
          ...(file.sha256 ? { sha256: file.sha256 } : {}),
          ...(options.signal ? { signal: options.signal } : {}),
          ...(options.retryDelayMs !== undefined ? { retryDelayMs: options.retryDelayMs } : {}),
        });
      }
      let finalBlob = blob;
      if (!file.sha256) {
        finalBlob = join(blobs, await sha256File(blob));
        await Deno.rename(blob, finalBlob);
      }
      await Deno.mkdir(dirname(file.localPath), { recursive: true });
      await Deno.remove(file.localPath).catch(() => {});
      try {
        await Deno.symlink(relative(dirname(file.localPath), finalBlob), file.localPath);
      } catch (error) {
        // Windows without the symlink privilege: a copy, as huggingface_hub falls back to
        if (Deno.build.os !== "windows") throw error;
        await Deno.copyFile(finalBlob, file.localPath);
      }
      const size = { completed: file.size, total: file.size };
      options.onProgress?.({ status: "verifying", ...base, ...size });
    }
  } finally {
    release();
  }
  if (ref.revision !== listing.commit) {
    await Deno.mkdir(join(repoDir, "refs"), { recursive: true });
    await Deno.writeTextFile(join(repoDir, "refs", ref.revision), listing.commit);
  }
  options.onProgress?.({ status: "done" });
  return result;
}

/**
 * Finds a hub reference on disk without the network: the snapshot its revision's ref points
 * to, and the files there the reference picks.
 *
 * @param reference A hub reference (`hf.co/ORG/REPO[:QUANT]`…).
 * @param hubCache The hub cache. Default: where discovery looks.
 * @returns The first file's path and the model's name, or undefined when it is not pulled.
 */
export function findPulled(
  reference: string,
  hubCache?: string,
): { path: string; name: string } | undefined {
  let ref: ModelRef;
  try {
    ref = parseModelRef(reference);
  } catch {
    return undefined;
  }
  if (ref.kind !== "hub") return undefined;
  const repoDir = repoCacheDir(hubCache ?? hubCacheDir(), ref.repo);
  let commit = ref.revision;
  try {
    commit = Deno.readTextFileSync(join(repoDir, "refs", ref.revision)).trim();
  } catch {
    // a commit given directly, or not pulled
  }
  const snapshot = join(repoDir, "snapshots", commit);
  const files: HubFile[] = [];
  const walk = (dir: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory) walk(path);
      else if (/\.gguf$/i.test(entry.name) && isFile(path)) {
        files.push({ path: relative(snapshot, path).split("\\").join("/"), size: 0 });
      }
    }
  };
  walk(snapshot);
  try {
    const picked = pickGgufFiles(ref.repo, files, ref.quant, ref.file);
    return { path: join(snapshot, picked[0]!.path), name: pulledName(ref.repo, picked[0]!.path) };
  } catch {
    return undefined;
  }
}

async function pullUrl(
  url: string,
  options: PullOptions,
  token: string | undefined,
): Promise<PullResult> {
  const name = urlFileName(url);
  const localPath = join(options.modelsDir ?? shimmyModelsDir(), name);
  const present = isFile(localPath);
  const file: PulledFile = {
    path: name,
    size: present ? Deno.statSync(localPath).size : 0,
    localPath,
    present,
  };
  const result: PullResult = { files: [file], path: localPath, name, bytes: file.size };
  if (present) {
    options.onProgress?.({ status: "present", file: name });
    return result;
  }
  const host = new URL(url).host;
  // the hub token only goes to the hub
  const headers = /(^|\.)(huggingface\.co|hf\.co)$/.test(host) ? hubHeaders(token) : {};
  if (options.dryRun) {
    file.size = await remoteSize(url, {
      headers,
      label: name,
      ...(options.signal ? { signal: options.signal } : {}),
    }) ?? 0;
    result.bytes = file.size;
    return result;
  }
  await Deno.mkdir(dirname(localPath), { recursive: true });
  // The size is known once the server answers (a server that does not say is not checked).
  let release = () => {};
  try {
    file.size = await downloadFile(url, localPath, {
      headers,
      label: name,
      onProgress: (completed, total) =>
        options.onProgress?.({
          status: "downloading",
          file: name,
          completed,
          ...(total ? { total } : {}),
        }),
      beforeWrite: async (bytes) => {
        release(); // an earlier attempt's
        release = await reserveRoom(dirname(localPath), bytes, name, options.diskSpace);
      },
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.retryDelayMs !== undefined ? { retryDelayMs: options.retryDelayMs } : {}),
    });
  } finally {
    release();
  }
  result.bytes = file.size;
  options.onProgress?.({ status: "done" });
  return result;
}

/**
 * The file name a URL's last path segment decodes to, checked to be a plain name: decoded, a
 * segment such as `..%2F..%2Fx.gguf` would name a file outside the models folder.
 *
 * @throws {PullError} 400 when the segment is not valid percent-encoding or not a plain name.
 */
function urlFileName(url: string): string {
  const segment = new URL(url).pathname.split("/").at(-1) ?? "";
  let name: string;
  try {
    name = decodeURIComponent(segment);
  } catch {
    throw new PullError(`Cannot pull ${url}: its file name is not valid percent-encoding`, 400);
  }
  const problem = plainFileNameProblem(name);
  if (problem !== undefined) {
    throw new PullError(
      `Cannot pull ${url}: ${JSON.stringify(name)} is not a plain file name: ${problem}`,
      400,
    );
  }
  return name;
}

function planned(file: HubFile, snapshot: string): PulledFile {
  const segments = file.path.split("/");
  if (!segments.every((segment) => plainFileNameProblem(segment) === undefined)) {
    throw new PullError(
      `The hub listed a file at ${JSON.stringify(file.path)}: not a relative path`,
    );
  }
  const localPath = join(snapshot, ...segments);
  let present = false;
  try {
    present = Deno.statSync(localPath).size === file.size;
  } catch {
    // not there (or a dangling link)
  }
  return { ...file, localPath, present };
}

function sizeOf(path: string): number | undefined {
  try {
    return Deno.statSync(path).size;
  } catch {
    return undefined;
  }
}

function definedOnly(endpoint?: string, token?: string): { endpoint?: string; token?: string } {
  return {
    ...(endpoint !== undefined ? { endpoint: endpoint.replace(/\/+$/, "") } : {}),
    ...(token !== undefined ? { token } : {}),
  };
}
