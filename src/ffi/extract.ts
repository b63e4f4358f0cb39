/**
 * First-run extraction of the native libraries embedded in the compiled executable.
 *
 * `deno compile` embeds `lib/<flavour>/` in the executable's read-only virtual file system,
 * but `dlopen` needs real files. {@link extractEmbeddedLibraries} copies them once into a
 * per-user cache folder named after the flavour and the hash of the folder's `SHA256SUMS`
 * (written by `scripts/compile.ts`, so the name changes exactly when the embedded bytes do):
 * `<cache>/libs/<flavour>-<hash16>/`. Nothing is ever written beside the executable, so a
 * read-only install folder (`/usr/local/bin`, `Program Files`) is fine.
 *
 * Two copies starting at once are safe: each copies into its own temporary folder next to the
 * final one, checks every file against `SHA256SUMS`, and renames the folder into place. A
 * rename is atomic, so the final folder is either absent or complete; the copy that loses the
 * race finds the winner's folder complete, deletes its own and uses the winner's. A later
 * start only checks that every listed file is present with its size (no hashing).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { pathExists } from "../util/fs.ts";

/** The checksum list in a library folder, in `sha256sum` format. */
export const LIBRARY_SUMS = "SHA256SUMS";

/** Temporary folders older than this are leftovers of a killed extraction and are removed. */
const STALE_TEMP_MS = 60 * 60 * 1000;

/** One line of a `SHA256SUMS` file. */
export interface SumEntry {
  /** Lower-case hex SHA-256. */
  sha256: string;
  /** File name inside the folder. */
  name: string;
}

/**
 * Parses `sha256sum` output (`<hex>  <name>` per line).
 *
 * @param text The file's text.
 * @returns Its entries.
 * @throws {Error} on a malformed line or a name that leaves the folder.
 * @example
 * ```ts
 * parseSums("ab…  libllama.so\n"); // [{ sha256: "ab…", name: "libllama.so" }]
 * ```
 */
export function parseSums(text: string): SumEntry[] {
  return text.split("\n").filter((line) => line.trim()).map((line) => {
    const match = /^([0-9a-f]{64}) [ *](.+)$/.exec(line.trim());
    if (!match || /[\\/]|^\.\.?$/.test(match[2]!)) {
      throw new Error(`Malformed ${LIBRARY_SUMS} line: ${JSON.stringify(line)}`);
    }
    return { sha256: match[1]!, name: match[2]! };
  });
}

/**
 * Hex SHA-256 of some bytes.
 *
 * @param data The bytes.
 * @returns 64 hex characters.
 * @example
 * ```ts
 * sha256Hex("abc").slice(0, 8); // "ba7816bf"
 * ```
 */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * Writes `SHA256SUMS` for the given files of a folder (what `compile` embeds).
 *
 * @param dir The library folder.
 * @param names File names in it.
 * @returns The text written.
 * @example
 * ```ts
 * writeSums("lib/linux-x64", ["libllama.so", "libggml.so"]);
 * ```
 */
export function writeSums(dir: string, names: readonly string[]): string {
  const text = [...names].sort().map((name) =>
    `${sha256Hex(Deno.readFileSync(join(dir, name)))}  ${name}\n`
  ).join("");
  Deno.writeTextFileSync(join(dir, LIBRARY_SUMS), text);
  return text;
}

/**
 * The per-user cache folder: `SHIMMY_CACHE_DIR`, else `%LOCALAPPDATA%\shimmy\cache` on
 * Windows, `~/Library/Caches/shimmy` on macOS, `$XDG_CACHE_HOME/shimmy` or
 * `~/.cache/shimmy` elsewhere.
 *
 * @returns The folder (it may not exist yet).
 * @throws {Error} when no home folder is known.
 * @example
 * ```ts
 * userCacheDir(); // "/home/me/.cache/shimmy" on Linux
 * ```
 */
export function userCacheDir(): string {
  const env = (name: string) => Deno.env.get(name) || undefined;
  const explicit = env("SHIMMY_CACHE_DIR");
  if (explicit) return explicit;
  if (Deno.build.os === "windows") {
    const local = env("LOCALAPPDATA");
    if (local) return join(local, "shimmy", "cache");
  }
  const home = env("HOME") ?? env("USERPROFILE");
  if (Deno.build.os === "darwin" && home) return join(home, "Library", "Caches", "shimmy");
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "shimmy");
  if (home) return join(home, ".cache", "shimmy");
  throw new Error(
    "Cannot extract the native libraries: no HOME; set SHIMMY_CACHE_DIR to a writable folder",
  );
}

/** Options for {@link extractEmbeddedLibraries}. */
export interface ExtractOptions {
  /** The cache folder that receives `libs/<flavour>-<hash>/`. Default: {@link userCacheDir}. */
  cacheDir?: string;
  /**
   * Called after the files are copied and checked, just before the rename into place. A test
   * seam for racing two processes; default: none.
   */
  beforeRename?: (tempDir: string) => void;
}

function isComplete(dir: string, sourceDir: string, entries: readonly SumEntry[]): boolean {
  try {
    return entries.every(({ name }) =>
      Deno.statSync(join(dir, name)).size === Deno.statSync(join(sourceDir, name)).size
    );
  } catch {
    return false;
  }
}

function removeQuietly(path: string) {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch {
    // already gone, or another process is removing it
  }
}

function removeStaleTemps(parent: string, prefix: string) {
  try {
    for (const entry of Deno.readDirSync(parent)) {
      if (!entry.name.startsWith(prefix)) continue;
      const path = join(parent, entry.name);
      const mtime = Deno.statSync(path).mtime?.getTime() ?? Date.now();
      if (Date.now() - mtime > STALE_TEMP_MS) removeQuietly(path);
    }
  } catch {
    // cleaning up is best effort
  }
}

/**
 * Copies an embedded library folder to the per-user cache, once, and returns the copy.
 *
 * @param sourceDir The embedded folder (`lib/<flavour>/` in the executable); it must hold
 *   {@link LIBRARY_SUMS}. It is only read.
 * @param options Cache folder and test seam.
 * @returns The folder to `dlopen` from.
 * @throws {Error} when the cache is not writable or a copied file does not match its sum.
 * @example
 * ```ts
 * const dir = extractEmbeddedLibraries("/tmp/deno-compile-shimmy/lib/linux-x64");
 * // ~/.cache/shimmy/libs/linux-x64-3f2a…/
 * ```
 */
export function extractEmbeddedLibraries(sourceDir: string, options: ExtractOptions = {}): string {
  const sumsText = Deno.readTextFileSync(join(sourceDir, LIBRARY_SUMS));
  const entries = parseSums(sumsText);
  const key = `${basename(sourceDir)}-${sha256Hex(sumsText).slice(0, 16)}`;
  const parent = join(options.cacheDir ?? userCacheDir(), "libs");
  const finalDir = join(parent, key);
  if (isComplete(finalDir, sourceDir, entries)) return finalDir;

  const tempPrefix = `.${key}.tmp-`;
  try {
    Deno.mkdirSync(parent, { recursive: true });
    removeStaleTemps(parent, tempPrefix);
    const temp = Deno.makeTempDirSync({ dir: parent, prefix: tempPrefix });
    try {
      for (const { name, sha256 } of entries) {
        const data = Deno.readFileSync(join(sourceDir, name));
        if (sha256Hex(data) !== sha256) {
          throw new Error(`${name} does not match its checksum in ${LIBRARY_SUMS}`);
        }
        Deno.writeFileSync(join(temp, name), data, { mode: 0o755 });
      }
      Deno.writeTextFileSync(join(temp, LIBRARY_SUMS), sumsText);
      options.beforeRename?.(temp);
      // A folder that exists is complete unless someone deleted files from it: move it aside.
      if (pathExists(finalDir) && !isComplete(finalDir, sourceDir, entries)) {
        const aside = `${join(parent, tempPrefix)}broken-${crypto.randomUUID()}`;
        try {
          Deno.renameSync(finalDir, aside);
          removeQuietly(aside);
        } catch {
          // another process moved it
        }
      }
      try {
        Deno.renameSync(temp, finalDir);
        return finalDir;
      } catch (error) {
        // Another copy renamed its folder into place first: use that one.
        if (isComplete(finalDir, sourceDir, entries)) return finalDir;
        throw error;
      }
    } finally {
      removeQuietly(temp);
    }
  } catch (error) {
    // Deno's own permission errors go up untouched.
    if (error instanceof Deno.errors.NotCapable) throw error;
    throw new Error(
      `Cannot extract the native libraries into ${finalDir}: ${(error as Error).message}. ` +
        `Make ${dirname(parent)} writable, or set SHIMMY_CACHE_DIR to a writable folder`,
      { cause: error },
    );
  }
}
