/**
 * The space on the disk that holds a path. Deno has no `Deno.statfs`; its Node layer's
 * `node:fs` `statfs` asks the system, and needs `--allow-sys` besides `--allow-read`. Where it
 * cannot answer, the space is unknown rather than an error.
 *
 * @module
 */

import { statfs } from "node:fs/promises";

/** A disk's size and its space free, in bytes. */
export interface DiskSpace {
  /** Bytes this process may still write (blocks free to unprivileged users). */
  free: number;
  /** The disk's size. */
  total: number;
}

/**
 * The space on the disk that holds `path`.
 *
 * @param path A file or folder on the disk.
 * @returns Its size and free space, or undefined where the system cannot tell (no such path,
 *   no `--allow-sys`, a platform Deno does not answer for).
 * @example
 * ```ts
 * const space = await diskSpace("/var/lib/shimmy");
 * if (space && space.free < 2 ** 30) console.warn("Less than 1 GiB free");
 * ```
 */
export async function diskSpace(path: string): Promise<DiskSpace | undefined> {
  try {
    const stats = await statfs(path);
    return { free: stats.bavail * stats.bsize, total: stats.blocks * stats.bsize };
  } catch {
    return undefined;
  }
}
