/**
 * The `--slot-save-path` folder, bounded. A slot save is written only when the folder's regular
 * files (those directly in it) stay within `--slot-save-max-size` afterwards and number at most
 * {@link MAX_SLOT_FILES}, and the disk keeps
 * some space free (the smaller of 1 GiB and 5 % of it, where the system tells the free space);
 * else it is a 507 and nothing is written. The new file's size is known before it is written
 * (llama.cpp measures a slot's cells without writing them), so there is nothing to undo; a file
 * replaced counts only by how much it grows. Saves to the folder take turns from check to end of
 * write, so two at once cannot both pass the check and together go over the bound.
 *
 * @module
 */

import { join } from "node:path";
import { HttpError } from "./http_error.ts";
import { formatByteSize } from "../util/byte_size.ts";
import { diskReserve, type DiskSpace, diskSpace } from "../util/disk_space.ts";

/** The most the folder's files take unless `--slot-save-max-size` says: 10 GiB. */
export const DEFAULT_SLOT_SAVE_MAX_BYTES = 10 * 2 ** 30;

/**
 * Most files the folder may hold: a save under a new name past it is a 507. Each save lists the
 * folder, and saves of an empty slot (a few hundred bytes each) would fit millions of files in
 * the byte bound.
 */
export const MAX_SLOT_FILES = 4_096;

/** How to bound a slot folder. */
export interface SlotFolderOptions {
  /** Most bytes its regular files may take; `Infinity` for no bound. Default 10 GiB. */
  maxBytes?: number;
  /** The space on the folder's disk, undefined where unknown. Default: the system's answer. */
  diskSpace?: (path: string) => Promise<DiskSpace | undefined>;
}

/** What a folder's regular files take. */
export interface FolderUsage {
  /** Bytes of all of them. */
  used: number;
  /** How many there are. */
  files: number;
  /** Bytes of the one asked about; undefined when it is not there. */
  existing: number | undefined;
}

/** One slot folder, whose writes take turns and stay within its bound. */
export class SlotFolder {
  /** The folder (absolute). */
  readonly path: string;
  /** Most bytes its regular files may take (`Infinity`: no bound). */
  readonly maxBytes: number;
  readonly #diskSpace: (path: string) => Promise<DiskSpace | undefined>;
  /** The write whose turn it is, then the ones after it. */
  #turn: Promise<unknown> = Promise.resolve();

  /**
   * @param path The folder (absolute). The server makes one per folder.
   * @param options The bound and how to ask for the disk's space.
   */
  constructor(path: string, options: SlotFolderOptions = {}) {
    this.path = path;
    this.maxBytes = options.maxBytes ?? DEFAULT_SLOT_SAVE_MAX_BYTES;
    this.#diskSpace = options.diskSpace ?? diskSpace;
  }

  /**
   * Writes file `name` in the folder when there is room for it, once the writes asked for before
   * have ended. A new file that could not be written is removed (an old one replaced is left as
   * the writer left it).
   *
   * @param name The file's plain name in the folder.
   * @param bytes The size it will have.
   * @param write Writes it and returns the bytes written (0 when nothing could be).
   * @returns What `write` returned.
   * @throws {HttpError} 507 `slot_folder_full` when the folder's files would take more than its
   *   bound, 507 `disk_space_low` when the disk would keep less free than it must; `write` is not
   *   called then.
   * @example
   * ```ts
   * const folder = new SlotFolder("/var/lib/shimmy/slots", { maxBytes: 4 * 2 ** 30 });
   * const data = new Uint8Array(1024);
   * await folder.write("a.bin", data.length, async () => {
   *   await Deno.writeFile("/var/lib/shimmy/slots/a.bin", data);
   *   return data.length;
   * });
   * ```
   */
  write(name: string, bytes: number, write: () => Promise<number>): Promise<number> {
    const turn = this.#turn.then(() => this.#writeWithin(name, bytes, write));
    this.#turn = turn.catch(() => {});
    return turn;
  }

  /**
   * What the folder's regular files take (links, folders and devices in it do not count).
   *
   * @param name A file to report on besides.
   * @returns The bytes of all of them, and of `name`.
   * @example
   * ```ts
   * const { used } = await new SlotFolder("/var/lib/shimmy/slots").usage();
   * ```
   */
  async usage(name?: string): Promise<FolderUsage> {
    let used = 0;
    let files = 0;
    let existing: number | undefined;
    for await (const entry of Deno.readDir(this.path)) {
      if (!entry.isFile) continue;
      const size = await Deno.lstat(join(this.path, entry.name))
        .then((info) => info.isFile ? info.size : 0, (error) => {
          if (error instanceof Deno.errors.NotFound) return 0; // deleted meanwhile
          throw error;
        });
      used += size;
      files++;
      if (entry.name === name) existing = size;
    }
    return { used, files, existing };
  }

  async #writeWithin(name: string, bytes: number, write: () => Promise<number>): Promise<number> {
    const { used, files, existing } = await this.usage(name);
    if (existing === undefined && files >= MAX_SLOT_FILES) {
      throw new HttpError(
        507,
        `The slot save folder holds ${files} files, the most it may: save under the name of ` +
          "one of them, or delete slot files there",
        { code: "slot_folder_full" },
      );
    }
    const after = used - (existing ?? 0) + bytes;
    if (after > this.maxBytes) {
      const replacing = existing === undefined ? "" : `, in place of ${formatByteSize(existing)}`;
      throw new HttpError(
        507,
        `The slot save folder holds ${formatByteSize(used)} of files, and saving "${name}" ` +
          `(${formatByteSize(bytes)}${replacing}) would take it to ${formatByteSize(after)}, ` +
          `over its bound of ${formatByteSize(this.maxBytes)}: delete slot files there, or ` +
          `start the server with a larger --slot-save-max-size`,
        { code: "slot_folder_full" },
      );
    }
    const growth = bytes - (existing ?? 0);
    const space = growth > 0 ? await this.#diskSpace(this.path) : undefined;
    if (space) {
      const reserve = diskReserve(space);
      if (space.free - growth < reserve) {
        throw new HttpError(
          507,
          `The disk of the slot save folder has ${formatByteSize(space.free)} free; saving ` +
            `"${name}" (${formatByteSize(bytes)}) would leave less than the ` +
            `${formatByteSize(reserve)} kept free: delete slot files there, or free space on ` +
            `the disk`,
          { code: "disk_space_low" },
        );
      }
    }
    let written = 0;
    try {
      written = await write();
    } finally {
      if (written === 0 && existing === undefined) {
        await Deno.remove(join(this.path, name)).catch(() => {});
      }
    }
    return written;
  }
}
