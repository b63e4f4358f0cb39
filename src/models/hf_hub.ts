/**
 * The Hugging Face Hub as `shimmy pull` sees it: what a model reference names
 * (`hf.co/ORG/REPO[:QUANT]`, `ORG/REPO[:QUANT]`, `ORG/REPO/FILE.gguf`, an `https://` URL),
 * the repository's file list with each file's LFS SHA-256 (`GET
 * {endpoint}/api/models/{repo}/revision/{rev}?blobs=true`), and which GGUF files a
 * quantization tag picks (every shard of a split model; `Q4_K_M` unless told, as llama.cpp and
 * Ollama do). `HF_ENDPOINT` points it at a mirror, `HF_TOKEN` opens gated repositories.
 *
 * @module
 */

import { isObject } from "../util/objects.ts";

/** The quantization pulled when a reference names none. */
export const DEFAULT_QUANT = "Q4_K_M";

/** The public hub, unless `HF_ENDPOINT` names a mirror. */
export const DEFAULT_ENDPOINT = "https://huggingface.co";

/**
 * Raised when a pull cannot go on: bad reference, hub refusal, missing file, bad checksum, too
 * little disk space.
 */
export class PullError extends Error {
  /**
   * HTTP-like status for servers: 400 bad reference, 401/403 access, 404 missing, 502 hub, 507
   * disk space.
   */
  readonly status: number;
  /** A code for the error body's `code` (`disk_space_low`); undefined for the status's own. */
  readonly code: string | undefined;

  /**
   * @param message What went wrong and what to do.
   * @param status The status a server answers with. Default 502.
   * @param options The cause, when there is one, and the code.
   */
  constructor(message: string, status = 502, options?: ErrorOptions & { code?: string }) {
    super(message, options);
    this.name = "PullError";
    this.status = status;
    this.code = options?.code;
  }
}

/** A model reference, parsed. */
export type ModelRef =
  | {
    kind: "hub";
    /** `ORG/REPO` as typed. */
    repo: string;
    /** Branch, tag or commit. Default `main`. */
    revision: string;
    /** Quantization tag (`Q4_K_M`); undefined when a file is named or none was given. */
    quant?: string;
    /** A file path inside the repository, when one was named. */
    file?: string;
  }
  | { kind: "url"; url: string };

/**
 * Whether a model argument names something on the hub or the web rather than a local name or
 * path: `hf.co/…`, `huggingface.co/…`, `https://…`, or `ORG/REPO[:QUANT]` that is not a path.
 *
 * @param text What the user typed.
 * @returns True for a pullable reference.
 * @example
 * ```ts
 * isPullable("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF"); // true
 * isPullable("./models/x.gguf"); // false
 * ```
 */
export function isPullable(text: string): boolean {
  try {
    parseModelRef(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a text is a reference to a model on the Hugging Face Hub (or the `HF_ENDPOINT` mirror),
 * as opposed to a plain URL, which may point at any address.
 *
 * @param text A model name from a request or the command line.
 * @returns True for `hf.co/ORG/REPO[:QUANT]`, `ORG/REPO…` and the hub's own URLs.
 * @example
 * ```ts
 * isHubReference("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF"); // true
 * isHubReference("http://10.0.0.1/x.gguf"); // false
 * ```
 */
export function isHubReference(text: string): boolean {
  try {
    return parseModelRef(text).kind === "hub";
  } catch {
    return false;
  }
}

/**
 * Parses a model reference.
 *
 * @param text `hf.co/ORG/REPO[:QUANT]`, `ORG/REPO[:QUANT]`, `ORG/REPO/FILE.gguf`,
 *   `https://huggingface.co/ORG/REPO/resolve/REV/FILE.gguf`, or any `https://` URL.
 * @returns The reference.
 * @throws {PullError} (400) for anything else.
 * @example
 * ```ts
 * parseModelRef("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q8_0");
 * // { kind: "hub", repo: "bartowski/Llama-3.2-1B-Instruct-GGUF", revision: "main", quant: "Q8_0" }
 * ```
 */
export function parseModelRef(text: string): ModelRef {
  const trimmed = text.trim();
  const url = /^https?:\/\/(?:www\.)?(?:huggingface\.co|hf\.co)\/(.+)$/i.exec(trimmed);
  if (url) {
    const resolveUrl = /^([^/]+\/[^/]+)\/(?:resolve|blob)\/([^/]+)\/(.+?)(?:\?.*)?$/.exec(url[1]!);
    if (resolveUrl) {
      const revision = resolveUrl[2]!;
      // The revision names a file under refs/ in the cache.
      if (!/^[\w.-]+$/.test(revision) || /^\.+$/.test(revision)) {
        throw new PullError(`Cannot pull ${text}: "${revision}" is not a revision name`, 400);
      }
      return { kind: "hub", repo: resolveUrl[1]!, revision, file: resolveUrl[3]! };
    }
    return parseHubPath(url[1]!, text);
  }
  if (/^https?:\/\//i.test(trimmed)) {
    if (!/\.gguf(\?.*)?$/i.test(trimmed)) {
      throw new PullError(`Cannot pull ${text}: a URL must name a .gguf file`, 400);
    }
    return { kind: "url", url: trimmed };
  }
  const short = /^(?:hf\.co|huggingface\.co)\/(.+)$/i.exec(trimmed);
  if (short) return parseHubPath(short[1]!, text);
  if (trimmed.startsWith(".") || trimmed.startsWith("/") || trimmed.includes("\\")) {
    throw new PullError(`Cannot pull ${text}: it is a path, not a hub repository`, 400);
  }
  return parseHubPath(trimmed, text);
}

/**
 * The one spelling of a reference that every spelling of the same pull shares, lowercase (the
 * hub's names are not case-sensitive, and model names are matched lowercase):
 * `hf.co/ORG/REPO[:QUANT]` or `hf.co/ORG/REPO/FILE`, the `/resolve/` URL for another revision
 * than `main`, the URL itself for a plain URL. Trailing slashes, a `/resolve/` URL's query,
 * surrounding spaces and `:latest` make no difference. Text that is no reference is only trimmed
 * and lowercased.
 *
 * @param text A model reference as a request or the command line spelled it.
 * @returns Its canonical spelling.
 * @example
 * ```ts
 * canonicalReference(" HF.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/ ");
 * // "hf.co/qwen/qwen2.5-0.5b-instruct-gguf"
 * canonicalReference("https://huggingface.co/o/r/resolve/main/m-Q8_0.gguf?download=true");
 * // "hf.co/o/r/m-q8_0.gguf"
 * ```
 */
export function canonicalReference(text: string): string {
  let ref: ModelRef;
  try {
    ref = parseModelRef(text);
  } catch {
    return text.trim().toLowerCase();
  }
  if (ref.kind === "url") return ref.url.toLowerCase();
  let spelling = `hf.co/${ref.repo}${ref.quant !== undefined ? `:${ref.quant}` : ""}`;
  if (ref.file !== undefined) {
    spelling = ref.revision === "main"
      ? `hf.co/${ref.repo}/${ref.file}`
      : `${DEFAULT_ENDPOINT}/${ref.repo}/resolve/${ref.revision}/${ref.file}`;
  }
  return spelling.toLowerCase();
}

function parseHubPath(path: string, text: string): ModelRef {
  const parts = path.replace(/\/+$/, "").split("/");
  const valid = /^[A-Za-z0-9][\w.-]*$/;
  const [org, name, ...rest] = parts;
  const bad = () =>
    new PullError(
      `Cannot pull "${text}": expected hf.co/ORG/REPO[:QUANT], ORG/REPO/FILE.gguf or a URL`,
      400,
    );
  if (org === undefined || name === undefined || !valid.test(org)) throw bad();
  if (rest.length > 0) {
    const file = rest.join("/");
    if (!valid.test(name) || !/\.gguf$/i.test(file)) throw bad();
    return { kind: "hub", repo: `${org}/${name}`, revision: "main", file };
  }
  const colon = name.indexOf(":");
  const repoName = colon < 0 ? name : name.slice(0, colon);
  const quant = colon < 0 ? undefined : name.slice(colon + 1);
  if (/\.gguf$/i.test(repoName)) throw bad(); // a path like models/x.gguf
  if (!valid.test(repoName) || (quant !== undefined && !/^[\w.-]+$/.test(quant))) throw bad();
  return {
    kind: "hub",
    repo: `${org}/${repoName}`,
    revision: "main",
    ...(quant && quant.toLowerCase() !== "latest" ? { quant } : {}),
  };
}

/** A file of a hub repository. */
export interface HubFile {
  /** Path inside the repository. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** SHA-256 from the LFS metadata (hex); undefined for files not stored in LFS. */
  sha256?: string;
}

/** A repository's files at one commit. */
export interface HubListing {
  /** The commit the revision points to. */
  commit: string;
  /** Every file. */
  files: HubFile[];
}

/** How to reach the hub. */
export interface HubOptions {
  /** Base URL. Default `HF_ENDPOINT`, else https://huggingface.co. */
  endpoint?: string;
  /** Access token. Default `HF_TOKEN` (or `HUGGING_FACE_HUB_TOKEN`). */
  token?: string;
  /** Cancels the request. */
  signal?: AbortSignal;
}

/**
 * The hub settings from the environment.
 *
 * @param env Environment lookup. Default the process environment.
 * @returns Endpoint and token.
 */
export function hubSettings(
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): { endpoint: string; token?: string } {
  const endpoint = (env("HF_ENDPOINT") || DEFAULT_ENDPOINT).replace(/\/+$/, "");
  const token = env("HF_TOKEN") || env("HUGGING_FACE_HUB_TOKEN");
  return token ? { endpoint, token } : { endpoint };
}

/**
 * The request headers for the hub: the token, when there is one.
 *
 * @param token Access token.
 * @returns Headers.
 */
export function hubHeaders(token?: string): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/**
 * A hub refusal as a {@link PullError} that says what to do.
 *
 * @param status The HTTP status.
 * @param repo The repository.
 * @param what What was asked for.
 * @param hadToken Whether a token was sent.
 * @returns The error.
 */
export function hubRefusal(
  status: number,
  repo: string,
  what: string,
  hadToken: boolean,
): PullError {
  if (status === 401 || status === 403) {
    const fix = hadToken
      ? `your HF_TOKEN has no access: accept the model's terms at https://huggingface.co/${repo}`
      : `the repository is gated or private: accept its terms at https://huggingface.co/${repo}, ` +
        `then set HF_TOKEN to a token from https://huggingface.co/settings/tokens`;
    return new PullError(`Cannot pull ${repo}: access denied (HTTP ${status}); ${fix}`, status);
  }
  if (status === 404) {
    return new PullError(
      `Cannot pull ${repo}: ${what} not found on the hub (HTTP 404); check the name`,
      404,
    );
  }
  return new PullError(`Cannot pull ${repo}: the hub answered HTTP ${status} for ${what}`);
}

/**
 * Lists a repository's files with their sizes and SHA-256.
 *
 * @param repo `ORG/REPO`.
 * @param revision Branch, tag or commit.
 * @param options Endpoint, token, signal.
 * @returns The commit and files.
 * @throws {PullError} when the hub refuses or cannot be reached.
 * @example
 * ```ts
 * const { commit, files } = await listRepoFiles("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "main");
 * ```
 */
export async function listRepoFiles(
  repo: string,
  revision: string,
  options: HubOptions = {},
): Promise<HubListing> {
  const { endpoint, token } = { ...hubSettings(), ...options };
  const url = `${endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
  let response: Response;
  try {
    response = await fetch(url, {
      headers: hubHeaders(token),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    throw new PullError(
      `Cannot reach ${endpoint}: ${(error as Error).message}; check the network or HF_ENDPOINT`,
      502,
      { cause: error },
    );
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw hubRefusal(response.status, repo, `revision ${revision}`, token !== undefined);
  }
  let info: unknown;
  try {
    info = await response.json();
  } catch (error) {
    throw malformedListing(endpoint, `not JSON (${(error as Error).message})`);
  }
  return listingOf(info, endpoint);
}

/**
 * A hub's revision listing, checked: its commit and each file's checksum become folder and file
 * names in the cache, so a commit that is not hex (`../../x`) must never reach a path.
 */
function listingOf(info: unknown, endpoint: string): HubListing {
  const record = isObject(info) ? info : {};
  const commit = record.sha;
  if (typeof commit !== "string" || !/^[0-9a-f]{40,64}$/.test(commit)) {
    throw malformedListing(endpoint, "no commit id of hex digits");
  }
  const siblings = record.siblings ?? [];
  if (!Array.isArray(siblings)) throw malformedListing(endpoint, '"siblings" is not a list');
  const files = siblings.map((sibling): HubFile => {
    const { rfilename, size, lfs } = isObject(sibling) ? sibling : {};
    const blob = isObject(lfs) ? lfs : {};
    if (typeof rfilename !== "string") throw malformedListing(endpoint, "a file without a name");
    const bytes = blob.size ?? size ?? 0;
    if (typeof bytes !== "number" || !Number.isSafeInteger(bytes) || bytes < 0) {
      throw malformedListing(endpoint, `no size for ${JSON.stringify(rfilename)}`);
    }
    const sha256 = blob.sha256;
    if (sha256 !== undefined && (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/.test(sha256))) {
      throw malformedListing(
        endpoint,
        `a checksum of ${JSON.stringify(rfilename)} that is not hex`,
      );
    }
    return { path: rfilename, size: bytes, ...(sha256 ? { sha256 } : {}) };
  });
  return { commit, files };
}

function malformedListing(endpoint: string, what: string): PullError {
  return new PullError(`${endpoint} answered a revision listing with ${what}`, 502);
}

/** The quantization tag in a GGUF file name (`Q4_K_M`, `IQ3_XS`, `F16`, `BF16`…). */
export function quantOf(fileName: string): string | undefined {
  const stem = fileName.split("/").at(-1)!.replace(/(-\d{5}-of-\d{5})?\.gguf$/i, "");
  const match = /(?:^|[-_.])((?:I?Q\d+(?:_[A-Z0-9]+)*)|BF16|F16|F32)$/i.exec(stem);
  return match?.[1]?.toUpperCase();
}

const SHARD = /-(\d{5})-of-(\d{5})\.gguf$/i;

/**
 * The GGUF files a reference picks: the named file (and its other shards), else the files
 * whose quantization tag matches (case-insensitive), else — with no tag given and one
 * model in the repository — that model. Projector files (`mmproj`) are never picked by tag.
 *
 * @param repo `ORG/REPO`, for messages.
 * @param files The repository's files.
 * @param quant The tag asked for; undefined for the default.
 * @param file A file named in the reference.
 * @returns The files, shards in order.
 * @throws {PullError} (404) listing the tags the repository has.
 */
export function pickGgufFiles(
  repo: string,
  files: readonly HubFile[],
  quant?: string,
  file?: string,
): HubFile[] {
  const ggufs = files.filter((f) => /\.gguf$/i.test(f.path));
  const withShards = (first: HubFile) => {
    const shard = SHARD.exec(first.path);
    if (!shard) return [first];
    const prefix = first.path.slice(0, shard.index);
    return ggufs
      .filter((f) => f.path.startsWith(prefix) && SHARD.exec(f.path)?.[2] === shard[2])
      .sort((a, b) => (a.path < b.path ? -1 : 1));
  };
  if (file !== undefined) {
    const named = ggufs.find((f) => f.path === file);
    if (!named) {
      throw new PullError(`Cannot pull ${repo}: it has no file ${file}`, 404);
    }
    return withShards(named);
  }
  const models = ggufs.filter((f) => !/mmproj/i.test(f.path));
  const wanted = (quant ?? DEFAULT_QUANT).toUpperCase();
  const matching = models.filter((f) => quantOf(f.path) === wanted);
  const first = matching.find((f) => !SHARD.test(f.path) || SHARD.exec(f.path)?.[1] === "00001");
  if (first) return withShards(first);
  const firsts = models.filter((f) => !SHARD.test(f.path) || SHARD.exec(f.path)?.[1] === "00001");
  if (quant === undefined && firsts.length === 1) return withShards(firsts[0]!);
  if (models.length === 0) {
    throw new PullError(`Cannot pull ${repo}: the repository has no GGUF files`, 404);
  }
  const tags = [...new Set(models.map((f) => quantOf(f.path)).filter((t) => t !== undefined))];
  throw new PullError(
    `Cannot pull ${repo}: no ${wanted} GGUF file; it has ${tags.join(", ") || "untagged files"}` +
      `; pick one with ${repo}:TAG`,
    404,
  );
}
