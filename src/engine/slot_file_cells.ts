/**
 * The KV cell counts a slot file states, checked before llama.cpp reads it. llama.cpp sizes a
 * batch by a stream's cell count before it compares the count with the cache, so a corrupt or
 * foreign file that says 2^32 - 1 cells had it allocate memory for ever, with the model held (its
 * other requests waited and the server could not stop). A count over the context's cells is
 * refused here instead.
 *
 * The layout is the one llama.cpp writes for a sequence (`llama_state_seq_save_file`): a header
 * and the token list, then the KV cache's state (two of them for sliding-window models), each a
 * stream count and, per stream, a cell count, the cells' positions and the K and V rows of every
 * layer. The check follows that layout as far as the file's own sizes lead it; where the file
 * leaves it (a recurrent model's state), llama.cpp's own checks decide.
 *
 * @module
 */

import { SlotFileError } from "./slot_file.ts";

/** What a slot file restored into a context may hold. */
export interface SlotFileLimits {
  /** The context's KV streams (one per slot, or one they share). */
  streams: number;
  /** Cells of the context's whole KV cache: no stream of a file it can restore holds more. */
  maxCells: number;
  /** The model's layers. */
  layers: number;
}

/** Bytes of a cell's position, its sequence count and its sequence. */
const CELL_BYTES = 12;
/** Bytes of the extra a cell carries for M-RoPE models (2D position, token). */
const CELL_EXT_BYTES = 12;
/** ggml's type ids are below this (`GGML_TYPE_COUNT` of the pinned llama.cpp). */
const GGML_TYPES = 43;
/** Beyond any row of K or V a real model has. */
const MAX_ROW_BYTES = 2 ** 24;

/**
 * Refuses a slot file whose stated cell counts no context of these limits could have written.
 *
 * @param path The slot file.
 * @param limits The context it would be restored into.
 * @throws {SlotFileError} when a stream's cell count is over `limits.maxCells`.
 * @example
 * ```ts
 * await checkSlotFileCells(path, { streams: 4, maxCells: 8192, layers: 16 });
 * ```
 */
export async function checkSlotFileCells(path: string, limits: SlotFileLimits): Promise<void> {
  using file = await Deno.open(path, { read: true });
  const reader = new SlotFileReader(file, (await file.stat()).size);
  reader.skip(8); // magic and version, which llama.cpp checks
  const tokens = await reader.u32();
  if (tokens === undefined) return;
  reader.skip(4 * tokens);
  while (!reader.atEnd()) {
    if (!await followsCacheState(reader, limits)) return;
  }
}

/** Reads one KV cache's state; false where the file leaves the layout. */
async function followsCacheState(reader: SlotFileReader, limits: SlotFileLimits): Promise<boolean> {
  if (await reader.u32() !== limits.streams) return false;
  for (let stream = 0; stream < limits.streams; stream++) {
    const cells = await reader.u32();
    if (cells === undefined) return false;
    if (cells > limits.maxCells) {
      throw new SlotFileError(
        `it says a KV stream holds ${cells} cells, more than this context's ${limits.maxCells}`,
      );
    }
    if (cells > 0 && !await followsCells(reader, cells, limits.layers)) return false;
  }
  return true;
}

/** Skips one stream's cells and K and V rows; false where the file leaves the layout. */
async function followsCells(
  reader: SlotFileReader,
  cells: number,
  layers: number,
): Promise<boolean> {
  const start = reader.position;
  // Which of the two cell sizes leads to the rows' header: V's layout flag and the layer count.
  let rowsAt: number | undefined;
  for (const cellBytes of [CELL_BYTES, CELL_BYTES + CELL_EXT_BYTES]) {
    const at = start + cells * cellBytes;
    const header = await reader.u32PairAt(at);
    if (rowsAt === undefined && header && header[0] <= 1 && header[1] === layers) rowsAt = at;
  }
  if (rowsAt === undefined) return false;
  reader.position = rowsAt;
  const transposedV = await reader.u32() === 1;
  reader.skip(4); // the layer count, read above
  for (let layer = 0; layer < layers; layer++) {
    const rowBytes = await typedRow(reader, "u64");
    if (rowBytes === undefined) return false;
    reader.skip(cells * rowBytes);
  }
  for (let layer = 0; layer < layers; layer++) {
    if (transposedV) {
      const elementBytes = await typedRow(reader, "u32");
      const width = await reader.u32();
      if (elementBytes === undefined || width === undefined || width > MAX_ROW_BYTES) return false;
      reader.skip(width * cells * elementBytes);
    } else {
      const rowBytes = await typedRow(reader, "u64");
      if (rowBytes === undefined) return false;
      reader.skip(cells * rowBytes);
    }
  }
  return reader.position <= reader.size;
}

/** A ggml type id followed by a size in bytes, when both are plausible. */
async function typedRow(reader: SlotFileReader, size: "u32" | "u64"): Promise<number | undefined> {
  const type = await reader.u32();
  const bytes = size === "u32" ? await reader.u32() : await reader.u64();
  if (type === undefined || type >= GGML_TYPES || !bytes || bytes > MAX_ROW_BYTES) return undefined;
  return bytes;
}

/** Little-endian reads at a position in an open file, which reads past the end leave undefined. */
class SlotFileReader {
  position = 0;
  readonly #file: Deno.FsFile;
  readonly size: number;

  constructor(file: Deno.FsFile, size: number) {
    this.#file = file;
    this.size = size;
  }

  atEnd(): boolean {
    return this.position >= this.size;
  }

  skip(bytes: number): void {
    this.position += bytes;
  }

  async u32(): Promise<number | undefined> {
    const view = await this.#read(this.position, 4);
    this.position += 4;
    return view?.getUint32(0, true);
  }

  async u64(): Promise<number | undefined> {
    const view = await this.#read(this.position, 8);
    this.position += 8;
    return view === undefined ? undefined : Number(view.getBigUint64(0, true));
  }

  async u32PairAt(at: number): Promise<[number, number] | undefined> {
    const view = await this.#read(at, 8);
    return view && [view.getUint32(0, true), view.getUint32(4, true)];
  }

  async #read(at: number, length: number): Promise<DataView | undefined> {
    if (at + length > this.size) return undefined;
    await this.#file.seek(at, Deno.SeekMode.Start);
    const bytes = new Uint8Array(length);
    for (let got = 0; got < length;) {
      const n = await this.#file.read(bytes.subarray(got));
      if (n === null) return undefined;
      got += n;
    }
    return new DataView(bytes.buffer);
  }
}
