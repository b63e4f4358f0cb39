/**
 * The requests the server's handlers read. A `Request` is one (what `Deno.serve` hands over for
 * the connections the guard forwards to it: upgrades, chunked bodies…); the connection guard's
 * own HTTP/1.1 serving hands over an {@link IncomingRequest}, which costs a fraction of a
 * `Request` to build: on 2 cores a `Request` with its headers, body and signal took 44–60 µs
 * to build after an idle spell (4 µs in a loop), and its headers' lookups go through WebIDL too
 * (bench/README.md, "A request's way in after an idle spell").
 *
 * @module
 */

/** The header lookups handlers make; `Headers` has them. */
export interface HeaderFields {
  /** The field's value (several fields of one name joined by ", "), or null. */
  get(name: string): string | null;
  has(name: string): boolean;
}

/** What a handler reads of a request; `Request` has all of it. */
export interface ServedRequest {
  readonly method: string;
  /** The absolute URL. */
  readonly url: string;
  readonly headers: HeaderFields;
  /** Aborts when the client hangs up. */
  readonly signal: AbortSignal;
  /** The body as a stream, or null when there is none. */
  readonly body: ReadableStream<Uint8Array> | null;
  /** Whether the body has been read (or is being read). */
  readonly bodyUsed: boolean;
  /** The whole body as text (UTF-8). */
  text(): Promise<string>;
  /** The whole body's bytes. */
  arrayBuffer(): Promise<ArrayBuffer>;
}

/** What an {@link IncomingRequest} is built from. */
export interface IncomingRequestInit {
  method: string;
  url: string;
  /** Header fields as sent (names in any case), already checked. */
  headers: readonly (readonly [string, string])[];
  signal: AbortSignal;
  /**
   * The body: its bytes when it came whole with the head, a function that opens its stream
   * when it is still to come, or null when there is none.
   */
  body: Uint8Array | (() => ReadableStream<Uint8Array>) | null;
}

/**
 * A request read by the connection guard: plain fields, headers in a map, and a body that is
 * only made a stream if a handler asks for one ({@link takeWholeBody} hands over the bytes).
 */
export class IncomingRequest implements ServedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: HeaderFields;
  readonly signal: AbortSignal;
  #whole: Uint8Array | null;
  #open: (() => ReadableStream<Uint8Array>) | null;
  #stream: ReadableStream<Uint8Array> | null = null;
  #taken = false;

  /**
   * @param init Method, URL, headers, signal and body.
   * @example
   * ```ts
   * const request = new IncomingRequest({
   *   method: "POST",
   *   url: "http://127.0.0.1:11435/v1/completions",
   *   headers: [["Content-Type", "application/json"]],
   *   signal: new AbortController().signal,
   *   body: new TextEncoder().encode('{"prompt":"hi"}'),
   * });
   * request.headers.get("content-type"); // "application/json"
   * ```
   */
  constructor(init: IncomingRequestInit) {
    this.method = init.method;
    this.url = init.url;
    this.headers = new HeaderMap(init.headers);
    this.signal = init.signal;
    this.#whole = init.body instanceof Uint8Array ? init.body : null;
    this.#open = typeof init.body === "function" ? init.body : null;
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this.#stream === null && !this.#taken) {
      const whole = this.#whole;
      this.#stream = whole ? ReadableStream.from([whole]) : this.#open?.() ?? null;
    }
    return this.#stream;
  }

  get bodyUsed(): boolean {
    return this.#taken || (this.#stream?.locked ?? false);
  }

  /**
   * The body's bytes, once, when it came whole with the head and nothing has read it: no trip
   * through a stream.
   *
   * @returns The bytes (not to be changed), or undefined: then read {@link body}.
   */
  takeWholeBody(): Uint8Array | undefined {
    if (this.#whole === null || this.#stream !== null || this.#taken) return undefined;
    this.#taken = true;
    return this.#whole;
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const whole = this.takeWholeBody();
    if (whole) return whole.slice().buffer;
    if (this.bodyUsed) throw new TypeError("The request's body has already been read");
    return await new Response(this.body).arrayBuffer();
  }

  async text(): Promise<string> {
    return new TextDecoder().decode(await this.arrayBuffer());
  }
}

/** Header fields by lower-cased name, several of one name joined as `Headers` joins them. */
class HeaderMap implements HeaderFields {
  readonly #fields = new Map<string, string>();

  constructor(fields: readonly (readonly [string, string])[]) {
    for (const [name, value] of fields) {
      const key = name.toLowerCase();
      const before = this.#fields.get(key);
      this.#fields.set(key, before === undefined ? value : `${before}, ${value}`);
    }
  }

  get(name: string): string | null {
    return this.#fields.get(name.toLowerCase()) ?? null;
  }

  has(name: string): boolean {
    return this.#fields.has(name.toLowerCase());
  }
}
