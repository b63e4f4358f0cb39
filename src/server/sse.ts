/**
 * Server-sent events framing. A payload with line breaks becomes several `data:` lines, which
 * every SSE client (EventSource, the OpenAI SDK) joins back with "\n"; this is how the native
 * `/api/generate` stream carries token text that contains newlines.
 *
 * @module
 */

import { errorBody, type HttpError, toHttpError } from "./http_error.ts";

const encoder = new TextEncoder();

/**
 * Frames one SSE event.
 *
 * @param data The payload (plain text or JSON).
 * @param event The event's name (`event:` line), for APIs with typed events (Anthropic,
 *   Responses); none by default.
 * @returns The bytes of `data: …\n\n`, one `data:` line per line of the payload.
 * @example
 * ```ts
 * sseEvent("a\nb"); // "data: a\ndata: b\n\n"
 * sseEvent("{}", "message_stop"); // "event: message_stop\ndata: {}\n\n"
 * ```
 */
export function sseEvent(data: string, event?: string): Uint8Array {
  const lines = data.split(/\r\n|\r|\n/);
  const name = event === undefined ? "" : `event: ${event}\n`;
  return encoder.encode(name + lines.map((line) => `data: ${line}\n`).join("") + "\n");
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
 * @param errorEvent Frames a failure as the stream's last event; default OpenAI's
 *   `data: {"error":{…}}`.
 * @returns The response.
 */
export function sseResponse(
  produce: (send: (bytes: Uint8Array) => void) => Promise<void>,
  abort: AbortController,
  errorEvent: (error: HttpError) => Uint8Array = openAiErrorEvent,
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
        send(errorEvent(toHttpError(error)));
      }
      if (!abort.signal.aborted) controller.close();
    },
    cancel() {
      abort.abort();
    },
  });
  return new Response(body, { headers: SSE_HEADERS });
}

function openAiErrorEvent(error: HttpError): Uint8Array {
  return sseEvent(JSON.stringify(errorBody(error)));
}
