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

/** What the reader needs of the guard's input buffer. */
export interface ChunkSource {
  /** Bytes buffered. */
  readonly size: number;
  /** The buffered bytes (valid until the next read). */
  view(): Uint8Array;
  /** Removes and returns the first `count` buffered bytes. */
  take(count: number): Uint8Array;
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
/** A chunk size: hex digits, then extensions after `;` (or whitespace before them). */
const SIZE_LINE = /^([0-9A-Fa-f]{1,13})[ \t]*(;.*)?$/;
const decoder = new TextDecoder();

/** Reads one chunked body, piece by piece. */
export class ChunkedBodyReader {
  readonly #input: ChunkSource;
  /** Data bytes left in the current chunk; -1 before a size line. */
  #left = -1;
  #done = false;

  /** @param input The bytes after the request's head. */
  constructor(input: ChunkSource) {
    this.#input = input;
  }

  /** Whether the last chunk and the trailers have been read. */
  get done(): boolean {
    return this.#done;
  }

  /**
   * The next piece of the body's data.
   *
   * @returns Bytes, or null at the body's end.
   * @throws {ChunkedBodyError} For broken framing or a client that closed mid-body.
   */
  async next(): Promise<Uint8Array | null> {
    while (!this.#done) {
      if (this.#left > 0) {
        await this.#need(1);
        const piece = this.#input.take(Math.min(this.#left, this.#input.size));
        this.#left -= piece.length;
        if (this.#left === 0) await this.#chunkEnd();
        return piece;
      }
      const size = await this.#sizeLine();
      if (size > 0) {
        this.#left = size;
        continue;
      }
      await this.#trailers();
      this.#done = true;
    }
    return null;
  }

  /** Reads the CRLF after a chunk's data. */
  async #chunkEnd(): Promise<void> {
    await this.#need(2);
    const view = this.#input.view();
    if (view[0] !== CR || view[1] !== LF) {
      throw new ChunkedBodyError("A chunk's data is not followed by CRLF (its size is wrong)");
    }
    this.#input.consume(2);
    this.#left = -1;
  }

  async #sizeLine(): Promise<number> {
    const line = await this.#line("chunk size");
    const match = SIZE_LINE.exec(line);
    if (match === null) {
      throw new ChunkedBodyError(
        `A chunk size must be hexadecimal digits (got ${JSON.stringify(line.slice(0, 40))})`,
      );
    }
    return parseInt(match[1] as string, 16);
  }

  async #trailers(): Promise<void> {
    let total = 0;
    for (;;) {
      const line = await this.#line("trailer");
      if (line === "") return;
      total += line.length + 2;
      if (total > MAX_TRAILERS) {
        throw new ChunkedBodyError(`The trailer fields are longer than ${MAX_TRAILERS} bytes`);
      }
    }
  }

  /** The next line, without its CRLF. */
  async #line(what: string): Promise<string> {
    for (;;) {
      const view = this.#input.view();
      const end = view.indexOf(LF);
      if (end > MAX_CHUNK_LINE || (end < 0 && view.length > MAX_CHUNK_LINE)) {
        throw new ChunkedBodyError(`A ${what} line is longer than ${MAX_CHUNK_LINE} bytes`);
      }
      if (end >= 0) {
        if (end === 0 || view[end - 1] !== CR) {
          throw new ChunkedBodyError(`A ${what} line does not end in CRLF`);
        }
        const line = decoder.decode(view.subarray(0, end - 1));
        this.#input.consume(end + 1);
        return line;
      }
      if (!(await this.#input.fill())) {
        throw new ChunkedBodyError("The client closed before sending the whole body");
      }
    }
  }

  /** Waits until `count` bytes are buffered. */
  async #need(count: number): Promise<void> {
    while (this.#input.size < count) {
      if (!(await this.#input.fill())) {
        throw new ChunkedBodyError("The client closed before sending the whole body");
      }
    }
  }
}
