/**
 * The connection guard's own HTTP/1.1 serving: requests of the plain shape (see
 * `http1_head.ts`) are read from the public connection, handed to the handler as an
 * `IncomingRequest` (`served_request.ts`), and its `Response` is written straight back, with no
 * loopback hop to `Deno.serve` and no second copy of each streamed token. The first request of
 * another shape hands the connection, with the bytes read so far, back to the caller, which
 * forwards it to `Deno.serve` from then on.
 *
 * A body in chunks is read by `chunked_body.ts` as the handler reads it; one whose framing
 * breaks, or that the client ends before it is whole (a half-close included), fails the
 * handler's read, which answers a 400, and the connection closes after the answer.
 *
 * While a request is in flight the connection is still read (up to {@link WATCH_LIMIT}
 * bytes ahead), so a client that hangs up aborts the request's signal, cancels a streamed
 * body, and rejects `completed`, as `Deno.serve` does. A response body that has ended by the
 * time its first chunk is read gets a `Content-Length`; a streamed one is sent chunked, each
 * chunk written as soon as the handler enqueues it. An event stream (SSE, NDJSON) gets its head
 * at once, before its first event, so that a client is ready for the first token when it comes;
 * one made by `streamBody` has its events pushed to the socket in the turn they are sent, and
 * those sent while a write is in flight go out together in the next.
 *
 * @module
 */

import {
  type BodyFraming,
  hasNoBody,
  isEventStream,
  malformedAnswer,
  parseRequestHead,
  type RequestHead,
  responseCloses,
  responseHead,
} from "./http1_head.ts";
import { concatBytes, writeAll } from "../util/bytes.ts";
import { IncomingRequest, type ServedRequest } from "./served_request.ts";
import { type AttachSink, pushedChunks } from "./stream_body.ts";
import { ChunkedBodyReader } from "./chunked_body.ts";

/** Serves one request: resolves to its response; `completed` settles once it is sent. */
export type ServeRequest = (request: ServedRequest, completed: Promise<void>) => Promise<Response>;

/** What this module uses of a connection: a socket, or its owner's wrapper that times writes. */
export type Http1Conn = Pick<Deno.Conn, "read" | "write" | "closeWrite">;

/** What the connection's owner hears of and decides. */
export interface ConnectionEvents {
  /** Bytes arrived (the owner times a request's head from the first of them). */
  bytesArrived(): void;
  /** Whether the connection is to close instead of serving another request. */
  ending(): boolean;
  /** The server's side has shut; the client gets a moment to read and close. */
  closing(): void;
  /** Aborted when the owner closes the connection: a request in flight is given up. */
  destroyed: AbortSignal;
}

/** How {@link serveHttp1} left the connection. */
export type Http1Outcome =
  /** Done: the client closed, a graceful close finished, or the socket failed. */
  | { kind: "done" }
  /** A request outside the plain shape: these bytes, from its first, go to `Deno.serve`. */
  | { kind: "forward"; bytes: Uint8Array; webSocketHead?: number };

/** Bytes read ahead of the handler while a request is in flight, to notice a hang-up. */
const WATCH_LIMIT = 64 * 1024;
/** Unread request body left by a handler that is read and dropped to keep the connection. */
const DISCARD_LIMIT = 1024 * 1024;
const INITIAL_BUFFER = 16 * 1024;
/** Free bytes a read gets at least: the data moves to the front (or the buffer grows) for it. */
const MIN_READ_ROOM = 4 * 1024;
const LAST_CHUNK = new TextEncoder().encode("0\r\n\r\n");
const CRLF = new TextEncoder().encode("\r\n");
const NOT_YET = Promise.resolve("not yet" as const);
const encoder = new TextEncoder();

/** Bytes read from a connection and not used yet; one read in flight at a time. */
class InputBuffer {
  readonly #conn: Http1Conn;
  readonly #bytesArrived: () => void;
  #bytes = new Uint8Array(INITIAL_BUFFER);
  #start = 0;
  #end = 0;
  #reading: Promise<boolean> | null = null;
  #ended = false;
  #roomWaiters: (() => void)[] = [];
  /** Called once when the client closes or the socket fails. */
  onEnd: (() => void) | null = null;

  constructor(conn: Http1Conn, bytesArrived: () => void) {
    this.#conn = conn;
    this.#bytesArrived = bytesArrived;
  }

  get size(): number {
    return this.#end - this.#start;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The buffered bytes, as a view valid until the next read. */
  view(): Uint8Array {
    return this.#bytes.subarray(this.#start, this.#end);
  }

  /** Drops `count` buffered bytes. */
  consume(count: number): void {
    this.#start += count;
    this.wakeWatcher();
  }

  /** Removes and returns (as a copy) the first `count` buffered bytes. */
  take(count: number): Uint8Array {
    const taken = this.#bytes.slice(this.#start, this.#start + count);
    this.consume(count);
    return taken;
  }

  /** Settles when bytes are consumed or {@link wakeWatcher} is called. */
  room(): Promise<void> {
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  /** Lets a watcher waiting in {@link room} look again. */
  wakeWatcher(): void {
    const waiters = this.#roomWaiters;
    this.#roomWaiters = [];
    for (const wake of waiters) wake();
  }

  /** Reads more bytes. @returns false once the client has closed (or the socket failed). */
  fill(): Promise<boolean> {
    this.#reading ??= this.#read().finally(() => this.#reading = null);
    return this.#reading;
  }

  async #read(): Promise<boolean> {
    if (this.#ended) return false;
    this.#makeRoom();
    let count: number | null;
    try {
      count = await this.#conn.read(this.#bytes.subarray(this.#end));
    } catch {
      count = null;
    }
    if (count === null) {
      this.#ended = true;
      this.onEnd?.();
      return false;
    }
    this.#end += count;
    this.#bytesArrived();
    return true;
  }

  /** Leaves at least {@link MIN_READ_ROOM} bytes after the data for the next read. */
  #makeRoom(): void {
    if (this.#bytes.length - this.#end >= MIN_READ_ROOM) return;
    const size = this.size;
    if (size * 2 > this.#bytes.length) {
      const grown = new Uint8Array(this.#bytes.length * 2);
      grown.set(this.view());
      this.#bytes = grown;
    } else {
      this.#bytes.copyWithin(0, this.#start, this.#end);
    }
    this.#start = 0;
    this.#end = size;
  }
}

/** One chunk of a chunked body, framed. */
function chunk(bytes: Uint8Array): Uint8Array {
  return concatBytes([encoder.encode(`${bytes.length.toString(16)}\r\n`), bytes, CRLF]);
}

/** Chunks of the chunked transfer coding, one after the other, in one buffer. */
function framedChunks(parts: readonly Uint8Array[]): Uint8Array {
  return parts.length === 1 ? chunk(parts[0]!) : concatBytes(parts.map(chunk));
}

/**
 * Serves a connection's requests of the plain shape until it closes, ends, or a request of
 * another shape arrives.
 *
 * @param conn The public connection.
 * @param serve Serves one request.
 * @param events The owner's timing and closing.
 * @returns How the connection was left.
 * @example
 * ```ts
 * const outcome = await serveHttp1(conn, (request) => handler(request), {
 *   bytesArrived() {},
 *   ending: () => false,
 *   closing() {},
 *   destroyed: new AbortController().signal,
 * });
 * if (outcome.kind === "forward") forward(conn, outcome.bytes);
 * ```
 */
export async function serveHttp1(
  conn: Http1Conn,
  serve: ServeRequest,
  events: ConnectionEvents,
): Promise<Http1Outcome> {
  const input = new InputBuffer(conn, () => events.bytesArrived());
  for (;;) {
    if (input.size > 0) events.bytesArrived();
    let reading = parseRequestHead(input.view());
    while (reading.kind === "incomplete") {
      if (events.ending() || !(await input.fill())) return await linger(conn, input, events);
      reading = parseRequestHead(input.view());
    }
    if (events.ending()) return await linger(conn, input, events);
    if (reading.kind === "malformed") {
      await writeAll(conn, malformedAnswer(reading)).catch(() => {});
      return await linger(conn, input, events);
    }
    if (reading.kind === "forward") {
      return {
        kind: "forward",
        bytes: input.take(input.size),
        webSocketHead: reading.webSocketHead,
      };
    }
    const request = requestOf(reading.head, input);
    const keepOpen = await exchange(conn, input, serve, request, events.destroyed);
    if (!keepOpen) return await linger(conn, input, events);
  }
}

/** A request read from the connection, with its body still to come. */
interface ReadRequest {
  request: IncomingRequest;
  keepAlive: boolean;
  /** Hangs up the request: aborts its signal. */
  abort: AbortController;
  /** Body bytes not read yet. */
  unread(): number;
}

/**
 * Builds the request for a parsed head and consumes the head. Its URL is taken as it came (a Host
 * that makes no URL is the handler's to refuse, as with `Deno.serve`).
 */
function requestOf(head: RequestHead, input: InputBuffer): ReadRequest {
  if (head.chunked) return chunkedRequestOf(head, input);
  // A body that came with its head (most JSON requests) is handed over whole; a longer one
  // streams from the connection as the handler reads it.
  const whole = head.length + head.contentLength <= input.size;
  let remaining = whole ? 0 : head.contentLength;
  const streamed = () =>
    new ReadableStream<Uint8Array>({
      async pull(controller) {
        while (input.size === 0) {
          if (!(await input.fill())) {
            return controller.error(new Error("The client closed before sending the whole body"));
          }
        }
        const bytes = input.take(Math.min(remaining, input.size));
        remaining -= bytes.length;
        controller.enqueue(bytes);
        if (remaining === 0) controller.close();
      },
    }, { highWaterMark: 0 });
  const body = head.contentLength === 0
    ? null
    : whole
    ? input.view().slice(head.length, head.length + head.contentLength)
    : streamed;
  input.consume(head.length + (whole ? head.contentLength : 0));
  return readRequest(head, body, () => remaining);
}

/** The request of a head, with its body and what is left of it unread. */
function readRequest(
  head: RequestHead,
  body: Uint8Array | (() => ReadableStream<Uint8Array>) | null,
  unread: () => number,
): ReadRequest {
  const abort = new AbortController();
  const request = new IncomingRequest({
    method: head.method,
    url: `http://${head.host}${head.target}`,
    headers: head.headers,
    signal: abort.signal,
    body,
  });
  return { request, keepAlive: head.keepAlive, abort, unread };
}

/** {@link requestOf} for a body in chunks: it streams as the handler reads it. */
function chunkedRequestOf(head: RequestHead, input: InputBuffer): ReadRequest {
  input.consume(head.length);
  const chunks = new ChunkedBodyReader(input);
  const body = () =>
    new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const piece = await chunks.next();
          if (piece === null) controller.close();
          else controller.enqueue(piece);
        } catch (error) {
          controller.error(error);
        }
      },
    }, { highWaterMark: 0 });
  // A body the handler left unread (or whose framing broke) has no known end: the connection
  // closes after the answer.
  return readRequest(head, body, () => chunks.done ? 0 : Infinity);
}

/**
 * Serves one request and sends its response.
 *
 * @returns Whether the connection can carry another request.
 */
async function exchange(
  conn: Http1Conn,
  input: InputBuffer,
  serve: ServeRequest,
  read: ReadRequest,
  destroyed: AbortSignal,
): Promise<boolean> {
  let settle!: { resolve: () => void; reject: (error: unknown) => void };
  const completed = new Promise<void>((resolve, reject) => settle = { resolve, reject });
  let cancelBody = () => {};
  let hungUp = false;
  let gone!: () => void;
  const goneAway = new Promise<null>((resolve) => gone = () => resolve(null));
  const hangUp = () => {
    hungUp = true;
    read.abort.abort(new Error("The client closed the connection"));
    cancelBody();
    gone();
  };
  // The client's end of input while its body is still due is the body's error (answered with a
  // 400 the client may still read, after a half-close), not a hang-up.
  input.onEnd = () => {
    if (read.unread() === 0) hangUp();
  };
  destroyed.addEventListener("abort", hangUp);
  let active = true;
  // Not awaited: its read may still be in flight after the response, shared with the next head.
  void watchForHangUp(input, () => active);
  let sent = false;
  try {
    if (destroyed.aborted) hangUp();
    const served = serveSafely(serve, read.request, completed);
    // A handler that ignores the hang-up is not waited for; its late body is cancelled.
    const response = await Promise.race([served, goneAway]);
    if (response === null) {
      served.then((late) => late.body?.cancel()).catch(() => {});
      throw new Error("The client closed the connection");
    }
    const body = bodyOf(response);
    cancelBody = () => void body?.cancel().catch(() => {});
    if (hungUp) throw new Error("The client closed the connection");
    const close = !read.keepAlive || responseCloses(response);
    await send(conn, response, read.request.method, body, close);
    if (hungUp) throw new Error("The client closed the connection");
    sent = !close;
    settle.resolve();
  } catch (error) {
    cancelBody();
    settle.reject(error);
  } finally {
    active = false;
    input.onEnd = null;
    destroyed.removeEventListener("abort", hangUp);
    input.wakeWatcher();
  }
  return sent && await dropUnreadBody(input, read.unread());
}

/** Calls the handler; a throw becomes a 500, as `Deno.serve` answers. */
async function serveSafely(
  serve: ServeRequest,
  request: ServedRequest,
  completed: Promise<void>,
): Promise<Response> {
  try {
    return await serve(request, completed);
  } catch (error) {
    console.error("Request handler failed:", error);
    return new Response("Internal Server Error", { status: 500 });
  }
}

/** Reads ahead while a request is in flight, so that a hang-up is noticed. */
async function watchForHangUp(input: InputBuffer, active: () => boolean): Promise<void> {
  while (active() && !input.ended) {
    if (input.size >= WATCH_LIMIT) await input.room();
    else await input.fill();
  }
}

/** Reads and drops what the handler left of a request body. @returns Whether that worked. */
async function dropUnreadBody(input: InputBuffer, unread: number): Promise<boolean> {
  if (unread > DISCARD_LIMIT) return false;
  while (unread > 0) {
    if (input.size === 0 && !(await input.fill())) return false;
    const dropped = Math.min(unread, input.size);
    input.consume(dropped);
    unread -= dropped;
  }
  return true;
}

/** A response's body as it is sent: its chunks pushed, read from its stream, or none. */
type OutgoingBody =
  | { kind: "pushed"; attach: AttachSink; cancel(): Promise<void> }
  | { kind: "read"; reader: ReadableStreamDefaultReader<Uint8Array>; cancel(): Promise<void> };

/** How a response's body is taken: pushed where it is an event stream that offers it. */
function bodyOf(response: Response): OutgoingBody | null {
  const stream = response.body;
  if (stream === null) return null;
  const attach = isEventStream(response) ? pushedChunks(stream) : undefined;
  if (attach) return { kind: "pushed", attach, cancel: () => stream.cancel() };
  const reader = stream.getReader();
  return { kind: "read", reader, cancel: () => reader.cancel() };
}

/** Writes a response: head and body, framed. Throws when the connection fails. */
async function send(
  conn: Http1Conn,
  response: Response,
  method: string,
  outgoing: OutgoingBody | null,
  close: boolean,
): Promise<void> {
  const bodiless = hasNoBody(method, response.status);
  if (bodiless || outgoing === null) {
    const framing: BodyFraming = bodiless ? "none" : { contentLength: 0 };
    await outgoing?.cancel();
    return await writeAll(conn, encoder.encode(responseHead(response, framing, close)));
  }
  if (isEventStream(response)) {
    // Its events come as they are made (the first after a prompt): the head goes now, so that
    // the client has it in hand when the first one arrives.
    await writeAll(conn, encoder.encode(responseHead(response, "chunked", close)));
    if (outgoing.kind === "pushed") return await sendPushed(conn, outgoing.attach);
    return await sendChunks(conn, outgoing.reader, outgoing.reader.read());
  }
  if (outgoing.kind === "pushed") throw new Error("Only an event stream's chunks are pushed");
  const body = outgoing.reader;
  const first = await body.read();
  if (first.done) {
    return await writeAll(
      conn,
      encoder.encode(responseHead(response, { contentLength: 0 }, close)),
    );
  }
  const next = body.read();
  const ready = await Promise.race([next, NOT_YET]);
  if (ready !== "not yet" && ready.done) {
    const head = encoder.encode(
      responseHead(response, { contentLength: first.value.length }, close),
    );
    return await writeAll(conn, concatBytes([head, first.value]));
  }
  const head = encoder.encode(responseHead(response, "chunked", close));
  await writeAll(conn, first.value.length > 0 ? concatBytes([head, chunk(first.value)]) : head);
  await sendChunks(conn, body, next);
}

/** Writes a body's chunks, from the pending read on, and the last chunk. */
async function sendChunks(
  conn: Http1Conn,
  body: ReadableStreamDefaultReader<Uint8Array>,
  pending: Promise<ReadableStreamReadResult<Uint8Array>>,
): Promise<void> {
  for (let result = await pending; !result.done; result = await body.read()) {
    if (result.value.length > 0) await writeAll(conn, chunk(result.value));
  }
  await writeAll(conn, LAST_CHUNK);
}

/**
 * Most bytes of pushed chunks framed into one write. Chunks that come while a write is in flight
 * wait as the producer's own bytes, and are framed (copied) only as they go: a replay pushes up to
 * 4 MiB at once (`stream_sessions.ts`), and framed whole for a client that reads slowly it had
 * held two copies of it per connection until the last byte left.
 */
const PUSH_WRITE_BYTES = 64 * 1024;

/**
 * Writes an event stream's chunks as its producer sends them, each in the turn it comes; those
 * that come while a write is in flight go together in the next (at most
 * {@link PUSH_WRITE_BYTES} a write). Then the last chunk.
 *
 * @returns Settles once the last chunk is written; rejects when the connection fails.
 */
function sendPushed(conn: Http1Conn, attach: AttachSink): Promise<void> {
  return new Promise((resolve, reject) => {
    let queued: Uint8Array[] = [];
    let writing = false;
    let ended = false;
    let failed = false;
    const flush = async () => {
      writing = true;
      try {
        while (queued.length > 0) {
          let count = 1;
          let size = queued[0]!.length;
          while (count < queued.length && size + queued[count]!.length <= PUSH_WRITE_BYTES) {
            size += queued[count++]!.length;
          }
          const batch = queued.slice(0, count);
          queued = queued.slice(count);
          await writeAll(conn, framedChunks(batch));
        }
        writing = false;
        if (ended) await writeAll(conn, LAST_CHUNK).then(resolve);
      } catch (error) {
        failed = true;
        queued = [];
        reject(error);
      }
    };
    attach({
      write(bytes) {
        if (failed || bytes.length === 0) return;
        queued.push(bytes);
        if (!writing) void flush();
      },
      close() {
        ended = true;
        if (!writing && !failed) void flush();
      },
    });
  });
}

/**
 * Ends the connection gracefully: the server's side is shut, and what the client still sends
 * is read and dropped until it closes (the owner's sweep closes it after a while).
 */
async function linger(
  conn: Http1Conn,
  input: InputBuffer,
  events: ConnectionEvents,
): Promise<Http1Outcome> {
  if (input.ended) return { kind: "done" };
  events.closing();
  try {
    await conn.closeWrite();
  } catch {
    // Already shut by the owner, or the socket failed: reading tells which.
  }
  while (await input.fill()) input.consume(input.size);
  return { kind: "done" };
}
