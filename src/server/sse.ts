/**
 * Server-sent events framing. A payload with line breaks becomes several `data:` lines, which
 * every SSE client (EventSource, the OpenAI SDK) joins back with "\n"; this is how the native
 * `/api/generate` stream carries token text that contains newlines.
 *
 * @module
 */

import { errorBody, toHttpError } from "./http_error.ts";

const encoder = new TextEncoder();

/**
 * Frames one SSE event.
 *
 * @param data The payload (plain text or JSON).
 * @returns The bytes of `data: …\n\n`, one `data:` line per line of the payload.
 * @example
 * ```ts
 * sseEvent("a\nb"); // "data: a\ndata: b\n\n"
 * ```
 */
export function sseEvent(data: string): Uint8Array {
  const lines = data.split(/\r\n|\r|\n/);
  return encoder.encode(lines.map((line) => `data: ${line}\n`).join("") + "\n");
}

/** The OpenAI end-of-stream event. */
export const SSE_DONE: Uint8Array = sseEvent("[DONE]");

/** Headers of an SSE response. */
export const SSE_HEADERS: Record<string, string> = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  "x-accel-buffering": "no",
};

/**
 * Builds a streaming SSE response whose producer stops when the client goes away. An error
 * thrown by the producer is sent as a final `{"error":{…}}` event.
 *
 * @param produce Writes events with `send`; it should stop when `signal` aborts.
 * @param abort Aborted when the client disconnects (the generation's abort controller).
 * @returns The response.
 */
export function sseResponse(
  produce: (send: (bytes: Uint8Array) => void) => Promise<void>,
  abort: AbortController,
): Response {
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (bytes: Uint8Array) => {
        if (!abort.signal.aborted) controller.enqueue(bytes);
      };
      try {
        await produce(send);
      } catch (error) {
        // Headers are gone already: the error travels as a last event, OpenAI-style.
        send(sseEvent(JSON.stringify(errorBody(toHttpError(error)))));
      }
      if (!abort.signal.aborted) controller.close();
    },
    cancel() {
      abort.abort();
    },
  });
  return new Response(body, { headers: SSE_HEADERS });
}
