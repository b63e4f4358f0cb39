/**
 * One file over HTTP into place, surviving interruptions: bytes go to `DEST.incomplete`; a
 * connection dropped mid-file, or a pull stopped and started again, continues from the bytes
 * already there with a `Range` request (a server that answers 200 instead of 206 restarts
 * it); the finished file's SHA-256 is checked before it is renamed to `DEST`, and a mismatch
 * deletes it. Redirects (the hub sends downloads to a CDN) are followed.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { hubRefusal, PullError } from "./hf_hub.ts";
import { writeAll } from "../util/bytes.ts";

/** Attempts per file before a flaky connection is reported. */
export const DOWNLOAD_ATTEMPTS = 5;

/** Options of {@link downloadFile}. */
export interface DownloadOptions {
  /** Expected size in bytes; checked when given. */
  size?: number;
  /** Expected SHA-256 (hex); checked when given. */
  sha256?: string;
  /** Extra request headers (the hub token). */
  headers?: Record<string, string>;
  /** Called as bytes arrive: bytes on disk so far, and the total when known. */
  onProgress?: (bytes: number, total: number | undefined) => void;
  /**
   * Called on each attempt, once the server tells the size and before a byte is written, with
   * the bytes still to come; what it throws ends the download (no room for them). Not called
   * when the server does not tell the size.
   */
  beforeWrite?: (bytes: number) => Promise<void>;
  /** Stops the download; the partial file stays for the next attempt. */
  signal?: AbortSignal;
  /** The repository, for messages. Default the URL. */
  label?: string;
  /** Wait before a retry, in ms. Default 500 (tests pass 0). */
  retryDelayMs?: number;
}

/**
 * Downloads `url` to `dest`, resuming `dest.incomplete` when it exists.
 *
 * @param url The file's URL.
 * @param dest Where the finished file goes.
 * @param options Expected size and checksum, headers, progress, signal.
 * @returns The bytes written (the file's size).
 * @throws {PullError} on a refusal, a checksum mismatch, or a connection that keeps failing.
 * @example
 * ```ts
 * await downloadFile("https://example.com/m.gguf", "/tmp/m.gguf", { sha256: "ab…" });
 * ```
 */
export async function downloadFile(
  url: string,
  dest: string,
  options: DownloadOptions = {},
): Promise<number> {
  const partial = `${dest}.incomplete`;
  const label = options.label ?? url;
  let lastError: unknown;
  let complete = false;
  for (let attempt = 0; attempt < DOWNLOAD_ATTEMPTS; attempt++) {
    if (attempt > 0) await sleep(options.retryDelayMs ?? 500, options.signal);
    const have = sizeOf(partial);
    if (options.size !== undefined && have === options.size) {
      complete = true;
      break;
    }
    if (options.size !== undefined && have > options.size) await Deno.remove(partial);
    const start = options.size !== undefined && have > options.size ? 0 : have;
    let response: Response;
    try {
      response = await fetch(url, {
        headers: { ...options.headers, ...(start > 0 ? { range: `bytes=${start}-` } : {}) },
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      lastError = error;
      continue;
    }
    if (response.status === 416 && start > 0) {
      await response.body?.cancel();
      complete = true; // nothing past what we have
      break;
    }
    if (!response.ok || !response.body) {
      await response.body?.cancel();
      if (response.status >= 500) {
        lastError = new Error(`HTTP ${response.status}`);
        continue;
      }
      throw hubRefusal(
        response.status,
        label,
        url.split("/").at(-1) ?? url,
        "authorization" in
          (options.headers ?? {}),
      );
    }
    const append = start > 0 && response.status === 206;
    const total = totalOf(response, append ? start : 0) ?? options.size;
    let written = append ? start : 0;
    if (total !== undefined && options.beforeWrite) {
      await options.beforeWrite(total - written).catch(async (error) => {
        await response.body?.cancel();
        throw error;
      });
    }
    const file = await Deno.open(partial, {
      write: true,
      create: true,
      append,
      truncate: !append,
    });
    try {
      options.onProgress?.(written, total);
      for await (const chunk of response.body) {
        await writeAll(file, chunk);
        written += chunk.length;
        options.onProgress?.(written, total);
      }
    } catch (error) {
      if (options.signal?.aborted) throw error;
      lastError = error; // dropped mid-file: the next attempt resumes from what was written
      continue;
    } finally {
      file.close();
    }
    if (total === undefined || written >= total) {
      complete = true;
      break;
    }
    lastError = new Error(`the connection closed after ${written} of ${total} bytes`);
  }
  const size = sizeOf(partial);
  if (!complete || (options.size !== undefined && size !== options.size)) {
    throw new PullError(
      `Cannot download ${label}: ${
        (lastError as Error)?.message ?? "incomplete"
      } (${size} bytes after ${DOWNLOAD_ATTEMPTS} attempts); run the pull again to resume`,
      502,
      { cause: lastError },
    );
  }
  if (options.sha256 !== undefined) {
    const actual = await sha256File(partial);
    if (actual !== options.sha256.toLowerCase()) {
      await Deno.remove(partial);
      throw new PullError(
        `Checksum mismatch for ${label}: SHA-256 ${actual}, the hub says ${options.sha256}; ` +
          `the partial download was deleted, run the pull again`,
      );
    }
  }
  await Deno.rename(partial, dest);
  return size;
}

/**
 * A file's size as its server tells it, without downloading it (a `HEAD` request): what a dry
 * run reports, and proof that the URL answers.
 *
 * @param url The file's URL.
 * @param options Headers (the hub token), signal, and the label for messages.
 * @returns The size in bytes, or undefined when the server does not say.
 * @throws {PullError} when the server cannot be reached or refuses.
 * @example
 * ```ts
 * await remoteSize("https://example.com/m.gguf"); // 491400032
 * ```
 */
export async function remoteSize(
  url: string,
  options: Pick<DownloadOptions, "headers" | "signal" | "label"> = {},
): Promise<number | undefined> {
  const label = options.label ?? url;
  let response: Response;
  try {
    response = await fetch(url, {
      method: "HEAD",
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    throw new PullError(`Cannot reach ${url}: ${(error as Error).message}`, 502, { cause: error });
  }
  await response.body?.cancel();
  if (!response.ok) {
    throw hubRefusal(
      response.status,
      label,
      url.split("/").at(-1) ?? url,
      "authorization" in (options.headers ?? {}),
    );
  }
  return totalOf(response, 0);
}

/**
 * The SHA-256 of a file, read in chunks.
 *
 * @param path The file.
 * @returns Lowercase hex.
 */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path); // its readable closes it
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

function totalOf(response: Response, start: number): number | undefined {
  const range = /\/(\d+)$/.exec(response.headers.get("content-range") ?? "");
  if (range) return Number(range[1]);
  const length = response.headers.get("content-length");
  return length === null ? undefined : start + Number(length);
}

function sizeOf(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch {
    return 0;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}
