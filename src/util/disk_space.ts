/**
 * The space on the disk that holds a path. Deno has no `Deno.statfs`; its Node layer's
 * `node:fs` `statfs` asks the system, and needs `--allow-sys` besides `--allow-read`. Where it
 * cannot answer, the space is unknown rather than an error. Large writes (slot saves, pulled
 * models) keep {@link diskReserve} free.
 *
 * @module
 */

import { statfs } from "node:fs/promises";

/** A write leaves at least this much free on the disk, or {@link DISK_RESERVE_SHARE} if less. */
export const DISK_RESERVE_BYTES = 2 ** 30;

/** A write leaves at least this share of the disk free, or {@link DISK_RESERVE_BYTES} if less. */
export const DISK_RESERVE_SHARE = 0.05;

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

/**
 * The space a large write (a slot save, a pulled model) must leave free on a disk: the smaller
 * of {@link DISK_RESERVE_BYTES} and {@link DISK_RESERVE_SHARE} of it.
 *
 * @param space The disk's space.
 * @returns Bytes to keep free.
 * @example
 * ```ts
 * const space = await diskSpace("/var/lib/shimmy");
 * if (space && space.free - 2 ** 32 < diskReserve(space)) console.warn("No room for 4 GiB");
 * ```
 */
export function diskReserve(space: DiskSpace): number {
  return Math.min(DISK_RESERVE_BYTES, space.total * DISK_RESERVE_SHARE);
}
