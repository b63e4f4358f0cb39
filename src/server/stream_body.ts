/**
 * The body of a streamed answer (SSE, NDJSON): a producer writes chunks until it is done or the
 * client goes away, and a failure after the headers left is framed by the stream's own format
 * as its last chunks. SSE and NDJSON differ only in framing; this is the one place that pumps.
 *
 * The body is a `ReadableStream`, which `Deno.serve` reads, and the connection guard's own HTTP/1.1
 * serving can instead take its chunks pushed ({@link pushedChunks}): each one then goes to the
 * socket in the turn the producer sends it, without the stream's enqueue and read between (about
 * 20 µs a streamed token on 2 cores). Chunks sent before either consumer attaches wait for it.
 *
 * @module
 */

import { type HttpError, toHttpError } from "./http_error.ts";

/** Writes one framed chunk to the client (nothing once it has gone). */
export type SendChunk = (bytes: Uint8Array) => void;

/** Where a streamed body's chunks go once a consumer has attached. */
export interface ChunkSink {
  /** Takes one chunk. */
  write(bytes: Uint8Array): void;
  /** The producer is done: no chunk follows. */
  close(): void;
}

/** Attaches the sink that a streamed body's chunks go to from now on (once per body). */
export type AttachSink = (sink: ChunkSink) => void;

/** The bodies made by {@link streamBody}, by their stream: how to take their chunks pushed. */
const pushedBodies = new WeakMap<ReadableStream<Uint8Array>, AttachSink>();

/**
 * How to take a streamed body's chunks as the producer sends them, instead of reading its stream.
 * The stream stays unread; cancelling it still stops the producer.
 *
 * @param body A response's body.
 * @returns The attach function of a body made by {@link streamBody} that no one has read or
 *   attached to yet; undefined for any other.
 */
export function pushedChunks(body: ReadableStream<Uint8Array> | null): AttachSink | undefined {
  if (body === null || body.locked) return undefined;
  const attach = pushedBodies.get(body);
  pushedBodies.delete(body);
  return attach;
}

/** A producer's chunks, held until a consumer attaches, then passed straight on. */
class ChunkRelay {
  #sink: ChunkSink | null = null;
  #held: Uint8Array[] = [];
  #closed = false;

  write(bytes: Uint8Array): void {
    if (this.#sink) this.#sink.write(bytes);
    else this.#held.push(bytes);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sink?.close();
  }

  attach(sink: ChunkSink): void {
    if (this.#sink) throw new Error("A streamed body has one consumer");
    this.#sink = sink;
    for (const bytes of this.#held) sink.write(bytes);
    this.#held = [];
    if (this.#closed) sink.close();
  }
}

/**
 * Builds a streaming response whose producer stops when the client goes away.
 *
 * @param produce Writes chunks with `send`; it should stop when `abort` aborts.
 * @param abort Aborted when the client disconnects (the generation's abort controller).
 * @param headers The response's headers (its content type).
 * @param onError Frames a failure thrown by `produce` as the stream's last chunks.
 * @returns The response.
 * @example
 * ```ts
 * streamBody(async (send) => send(bytes), abort, SSE_HEADERS, (error, send) => send(frame(error)));
 * ```
 */
export function streamBody(
  produce: (send: SendChunk) => Promise<void>,
  abort: AbortController,
  headers: Record<string, string>,
  onError: (error: HttpError, send: SendChunk) => void,
): Response {
  const relay = new ChunkRelay();
  const send = (bytes: Uint8Array) => {
    if (!abort.signal.aborted) relay.write(bytes);
  };
  void (async () => {
    try {
      await produce(send);
    } catch (error) {
      // Headers are gone already: the error travels in the stream's own framing.
      onError(toHttpError(error), send);
    }
    if (!abort.signal.aborted) relay.close();
  })();
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    // Read (by Deno.serve): the chunks go through the stream from the first read on.
    pull(controller) {
      if (!pushedBodies.delete(body)) return;
      relay.attach({
        write: (bytes) => controller.enqueue(bytes),
        close: () => cancelled || controller.close(),
      });
    },
    // The consumer gave up: the producer stops, and a pushed consumer hears of the end.
    cancel() {
      cancelled = true;
      abort.abort();
      relay.close();
    },
  }, { highWaterMark: 0 });
  pushedBodies.set(body, (sink) => relay.attach(sink));
  return new Response(body, { headers });
}

/**
 * The abort controller of a request's work: aborted when the client goes away, and by the
 * stream itself when its reader cancels. Every generating endpoint ties its work to one.
 *
 * @param clientGone Aborts when the client disconnects (the route handler's signal).
 * @returns A controller that follows the client.
 * @example
 * ```ts
 * const abort = followClient(clientGone);
 * const started = await startGeneration(ctx, fields, source, abort.signal);
 * ```
 */
export function followClient(clientGone: AbortSignal): AbortController {
  const abort = new AbortController();
  // A client can hang up before this (while its body was read or its model loaded).
  if (clientGone.aborted) abort.abort();
  else clientGone.addEventListener("abort", () => abort.abort(), { once: true });
  return abort;
}
