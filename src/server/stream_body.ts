/**
 * The body of a streamed answer (SSE, NDJSON): a producer writes chunks until it is done or the
 * client goes away, and a failure after the headers left is framed by the stream's own format
 * as its last chunks. SSE and NDJSON differ only in framing; this is the one place that pumps.
 *
 * @module
 */

import { type HttpError, toHttpError } from "./http_error.ts";

/** Writes one framed chunk to the client (nothing once it has gone). */
export type SendChunk = (bytes: Uint8Array) => void;

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
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (bytes: Uint8Array) => {
        if (!abort.signal.aborted) controller.enqueue(bytes);
      };
      try {
        await produce(send);
      } catch (error) {
        // Headers are gone already: the error travels in the stream's own framing.
        onError(toHttpError(error), send);
      }
      if (!abort.signal.aborted) controller.close();
    },
    cancel() {
      abort.abort();
    },
  });
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
