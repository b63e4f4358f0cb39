/**
 * A chunked request body (RFC 9112, 7.1) read by the connection guard from its input buffer:
 * the chunks' data in order, chunk extensions and trailer fields read and dropped. A framing
 * error (a size that is no hex number, a chunk whose data is not followed by CRLF, a size or
 * trailer line longer than the limits) rejects the read with {@link ChunkedBodyError}: the
 * handler then answers a 400 (`incomplete_body`) and the connection closes, where `Deno.serve`
 * had dropped it without an answer.
 *
 * @module
 */

import { concatBytes } from "../util/bytes.ts";

/** What the reader needs of the guard's input buffer. */
export interface ChunkSource {
  /** Bytes buffered. */
  readonly size: number;
  /** The buffered bytes (valid until the next read). */
  view(): Uint8Array;
  /** Drops the first `count` buffered bytes. */
  consume(count: number): void;
  /** Reads more; false once the client has closed. */
  fill(): Promise<boolean>;
}

/** A chunked body whose framing is broken. */
export class ChunkedBodyError extends Error {
  /** @param message What is wrong. */
  constructor(message: string) {
    super(message);
    this.name = "ChunkedBodyError";
  }
}

/** Longest chunk-size line (with its extensions) or trailer line taken. */
export const MAX_CHUNK_LINE = 4096;
/** Most bytes of trailer fields taken. */
const MAX_TRAILERS = 64 * 1024;
const CR = 13;
const LF = 10;
const decoder = new TextDecoder();

/** Most bytes one piece of the body holds: the data of several chunks is handed on together. */
const MAX_PIECE = 64 * 1024;

/** Reads one chunked body, piece by piece. */
export class ChunkedBodyReader {
  readonly #input: ChunkSource;
  /** What comes next on the connection. */
  #state: "size" | "data" | "crlf" | "trailers" | "done" = "size";
  /** Data bytes left in the current chunk. */
  #left = 0;
  /** Bytes of trailer fields read. */
  #trailerBytes = 0;

  /** @param input The bytes after the request's head. */
  constructor(input: ChunkSource) {
    this.#input = input;
  }

  /** Whether the last chunk and the trailers have been read. */
  get done(): boolean {
    return this.#state === "done";
  }

  /**
   * The next piece of the body's data: the data of every chunk already buffered (up to 64 KiB),
   * read in one pass over the buffer, so that a client sending a byte per chunk costs a piece
   * per read, not per byte. It waits for the client only while it has nothing to hand on.
   *
   * @returns Bytes, or null at the body's end.
   * @throws {ChunkedBodyError} For broken framing or a client that closed mid-body.
   */
  async next(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.#state === "done") return null;
      const view = this.#input.view();
      const parts: Uint8Array[] = [];
      const used = this.#scan(view, parts);
      // Copied out before the bytes are consumed: the parts are views of the buffer.
      const piece = parts.length === 1 ? (parts[0] as Uint8Array).slice() : concatBytes(parts);
      this.#input.consume(used);
      if (piece.length > 0) return piece;
      if (this.done) return null;
      if (!(await this.#input.fill())) {
        throw new ChunkedBodyError("The client closed before sending the whole body");
      }
    }
  }

  /**
   * Reads what the buffered bytes hold: data into `parts`, framing checked.
   *
   * @returns How many bytes it used.
   */
  #scan(view: Uint8Array, parts: Uint8Array[]): number {
    let at = 0;
    let total = 0;
    while (this.#state !== "done" && total < MAX_PIECE) {
      if (this.#state === "data") {
        const take = Math.min(this.#left, view.length - at, MAX_PIECE - total);
        if (take === 0) break;
        parts.push(view.subarray(at, at + take));
        at += take;
        total += take;
        this.#left -= take;
        if (this.#left === 0) this.#state = "crlf";
      } else if (this.#state === "crlf") {
        if (view.length - at < 2) break;
        if (view[at] !== CR || view[at + 1] !== LF) {
          throw new ChunkedBodyError("A chunk's data is not followed by CRLF (its size is wrong)");
        }
        at += 2;
        this.#state = "size";
      } else {
        const what = this.#state === "size" ? "chunk size" : "trailer";
        const end = view.indexOf(LF, at);
        if (end - at > MAX_CHUNK_LINE || (end < 0 && view.length - at > MAX_CHUNK_LINE)) {
          throw new ChunkedBodyError(`A ${what} line is longer than ${MAX_CHUNK_LINE} bytes`);
        }
        if (end < 0) break;
        if (end === at || view[end - 1] !== CR) {
          throw new ChunkedBodyError(`A ${what} line does not end in CRLF`);
        }
        if (this.#state === "size") this.#sizeLine(view, at, end - 1);
        else this.#trailer(end - 1 - at);
        at = end + 1;
      }
    }
    return at;
  }

  /** Takes a chunk-size line (`view[start, end)`, without its CRLF). */
  #sizeLine(view: Uint8Array, start: number, end: number): void {
    let size = 0;
    let at = start;
    while (at < end && at - start < 13) {
      const digit = hexValue(view[at] as number);
      if (digit < 0) break;
      size = size * 16 + digit;
      at++;
    }
    const rest = at < end ? view[at] as number : -1;
    const valid = at > start && (rest === -1 || rest === 0x3b || rest === 0x20 || rest === 0x09);
    if (!valid) {
      if (start === end) {
        throw new ChunkedBodyError(
          "A chunk size line is empty (is a chunk's data shorter than its size?)",
        );
      }
      const line = decoder.decode(view.subarray(start, Math.min(end, start + 40)));
      throw new ChunkedBodyError(
        `A chunk size must be hexadecimal digits (got ${JSON.stringify(line)})`,
      );
    }
    this.#left = size;
    this.#state = size > 0 ? "data" : "trailers";
  }

  /** Takes one trailer field (dropped) of `length` bytes, or the blank line that ends the body. */
  #trailer(length: number): void {
    if (length === 0) {
      this.#state = "done";
      return;
    }
    this.#trailerBytes += length + 2;
    if (this.#trailerBytes > MAX_TRAILERS) {
      throw new ChunkedBodyError(`The trailer fields are longer than ${MAX_TRAILERS} bytes`);
    }
  }
}

/** A hex digit's value, or -1. */
function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  const lower = byte | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}
