/**
 * Room on disk for pulls: a download starts only when the disk that takes it keeps
 * {@link diskReserve} free afterwards (the slot-save folder's rule), so a request that names a
 * large model cannot fill the server's disk. Downloads under way in this process count with every
 * byte they are to write until they end (what they already wrote is then counted twice, on the
 * safe side), so two pulls started together cannot both take the last room. Where the system does
 * not tell the free space, nothing is checked.
 *
 * @module
 */

import { formatByteSize } from "../util/byte_size.ts";
import { diskReserve, type DiskSpace, diskSpace } from "../util/disk_space.ts";
import { PullError } from "./hf_hub.ts";

/** Bytes promised to downloads under way, by the device id of their disk. */
const promised = new Map<number, number>();

/**
 * Reserves room for a download's bytes on the disk of a folder.
 *
 * @param folder An existing folder on the disk the bytes go to.
 * @param bytes The bytes still to download.
 * @param what The model or file, for the message.
 * @param space The space on a disk. Default: the system's answer.
 * @returns Gives the room back; call it once the download has ended, however it ended.
 * @throws {PullError} 507 `disk_space_low` when the bytes would leave less than the reserve free.
 * @example
 * ```ts
 * const release = await reserveRoom("/home/me/.cache/huggingface/hub", 2 ** 32, "o/r");
 * try {
 *   // download
 * } finally {
 *   release();
 * }
 * ```
 */
export async function reserveRoom(
  folder: string,
  bytes: number,
  what: string,
  space: (path: string) => Promise<DiskSpace | undefined> = diskSpace,
): Promise<() => void> {
  if (bytes <= 0) return () => {};
  const disk = await Deno.stat(folder).then((info) => info.dev, () => 0);
  const free = await space(folder);
  if (!free) return () => {};
  // From here to the promise's record, nothing awaits: no other pull checks in between.
  const others = promised.get(disk) ?? 0;
  const reserve = diskReserve(free);
  if (free.free - others - bytes < reserve) {
    const promisedText = others > 0
      ? `, ${formatByteSize(others)} of it promised to pulls under way`
      : "";
    throw new PullError(
      `Cannot pull ${what}: it needs ${formatByteSize(bytes)}, and the disk of ${folder} has ` +
        `${formatByteSize(free.free)} free${promisedText}; the pull would leave less than the ` +
        `${formatByteSize(reserve)} kept free: free space on the disk, or pull a smaller ` +
        `quantization`,
      507,
      { code: "disk_space_low" },
    );
  }
  promised.set(disk, others + bytes);
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    const left = (promised.get(disk) ?? bytes) - bytes;
    if (left > 0) promised.set(disk, left);
    else promised.delete(disk);
  };
}
