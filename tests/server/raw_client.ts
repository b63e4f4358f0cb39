/**
 * A hand-driven HTTP/1.1 client for the connection guard's tests: keep-alive, pipelining and
 * stalls are explicit, and responses are read as the bytes arrive.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A parsed HTTP/1.1 response. */
export interface RawResponse {
  status: number;
  headers: Headers;
  body: string;
}

/** A hand-driven HTTP/1.1 client on one socket, so that keep-alive and stalls are explicit. */
export class RawClient {
  readonly conn: Deno.TcpConn;
  #pending = new Uint8Array(0);
  #chunk = new Uint8Array(64 * 1024);

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  static async open(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async send(text: string): Promise<void> {
    const bytes = encoder.encode(text);
    let offset = 0;
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
  }

  /** Reads more bytes; false at end of stream. */
  async fill(): Promise<boolean> {
    const n = await this.conn.read(this.#chunk);
    if (n === null) return false;
    const joined = new Uint8Array(this.#pending.length + n);
    joined.set(this.#pending);
    joined.set(this.#chunk.subarray(0, n), this.#pending.length);
    this.#pending = joined;
    return true;
  }

  /** Takes everything read so far. */
  take(): string {
    const text = decoder.decode(this.#pending);
    this.#pending = new Uint8Array(0);
    return text;
  }

  async #line(): Promise<string> {
    for (;;) {
      const end = this.#pending.indexOf(10);
      if (end >= 0) {
        const line = decoder.decode(this.#pending.subarray(0, end)).replace(/\r$/, "");
        this.#pending = this.#pending.subarray(end + 1);
        return line;
      }
      if (!await this.fill()) throw new Error("Connection closed mid-response");
    }
  }

  async #bytes(count: number): Promise<string> {
    while (this.#pending.length < count) {
      if (!await this.fill()) throw new Error("Connection closed mid-body");
    }
    const text = decoder.decode(this.#pending.subarray(0, count));
    this.#pending = this.#pending.subarray(count);
    return text;
  }

  /**
   * Reads one response (Content-Length, chunked, or up to the end of the stream).
   *
   * @param bodyless The response has no body whatever its head says (one to a HEAD request).
   */
  async response(bodyless = false): Promise<RawResponse> {
    const status = Number((await this.#line()).split(" ")[1]);
    const headers = new Headers();
    for (let line = await this.#line(); line !== ""; line = await this.#line()) {
      const colon = line.indexOf(":");
      headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
    }
    let body = "";
    if (bodyless) {
      // Nothing follows the head.
    } else if (headers.has("content-length")) {
      body = await this.#bytes(Number(headers.get("content-length")));
    } else if (headers.get("transfer-encoding") === "chunked") {
      for (let size = parseInt(await this.#line(), 16); size > 0;) {
        body += await this.#bytes(size);
        await this.#line();
        size = parseInt(await this.#line(), 16);
      }
      await this.#line();
    } else {
      while (await this.fill());
      body = this.take();
    }
    return { status, headers, body };
  }

  /**
   * Waits for the server to close the connection.
   *
   * @returns Milliseconds until it did, or null if it was still open after `limitMs`.
   */
  async closedWithin(limitMs: number): Promise<number | null> {
    const reading = (async () => {
      try {
        while (await this.fill()) this.take();
      } catch {
        // Reset counts as closed.
      }
    })();
    const result = await settlesWithin(reading, limitMs);
    if (result === null) {
      this.close();
      await reading;
    }
    return result;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
  }
}

/**
 * Waits for a promise, but not forever.
 *
 * @returns Milliseconds until it settled, or null if it had not after `limitMs`.
 */
export async function settlesWithin(
  promise: Promise<unknown>,
  limitMs: number,
): Promise<number | null> {
  const start = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const result = await Promise.race([
    promise.then(() => performance.now() - start, () => performance.now() - start),
    new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), limitMs)),
  ]);
  clearTimeout(timer);
  return result;
}

/** A plain GET request's bytes. */
export const get = (path = "/") => `GET ${path} HTTP/1.1\r\nHost: test\r\n\r\n`;
