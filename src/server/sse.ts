/**
 * Server-sent events framing. A payload with line breaks becomes several `data:` lines, which
 * every SSE client (EventSource, the OpenAI SDK) joins back with "\n"; this is how the native
 * `/api/generate` stream carries token text that contains newlines.
 *
 * @module
 */

import { errorBody, type HttpError } from "./http_error.ts";
import { type SendChunk, streamBody } from "./stream_body.ts";

const encoder = new TextEncoder();
const LINE_BREAK = /[\r\n]/;

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
  const name = event === undefined ? "" : `event: ${event}\n`;
  // JSON has no raw line breaks: most events are one line.
  if (!LINE_BREAK.test(data)) return encoder.encode(`${name}data: ${data}\n\n`);
  const lines = data.split(/\r\n|\r|\n/);
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
 * thrown by the producer ends the stream as `onError` frames it.
 *
 * @param produce Writes events with `send`; it should stop when `abort` aborts.
 * @param abort Aborted when the client disconnects (the generation's abort controller).
 * @param onError Sends the events that report a failure; default OpenAI's
 *   `data: {"error":{…}}`.
 * @returns The response.
 */
export function sseResponse(
  produce: (send: SendChunk) => Promise<void>,
  abort: AbortController,
  onError: (error: HttpError, send: SendChunk) => void = openAiErrorEvent,
): Response {
  return streamBody(produce, abort, SSE_HEADERS, onError);
}

function openAiErrorEvent(error: HttpError, send: SendChunk): void {
  send(sseEvent(JSON.stringify(errorBody(error))));
}
