/**
 * Ollama's streaming framing: newline-delimited JSON, one object per line (`{…}\n`), the last
 * one carrying `"done": true`. A failure once the stream has started travels as a last line
 * `{"error": "message"}`, which Ollama's clients raise as an error.
 *
 * @module
 */

import { ollamaErrorBody } from "../http_error.ts";
import { streamBody } from "../stream_body.ts";

const encoder = new TextEncoder();

/** Headers of an NDJSON response, as Ollama sends them. */
export const NDJSON_HEADERS: Record<string, string> = {
  "content-type": "application/x-ndjson",
  "cache-control": "no-cache",
  "x-accel-buffering": "no",
};

/**
 * Frames one object as an NDJSON line.
 *
 * @param value The object.
 * @returns The bytes of its JSON and a `\n`.
 * @example
 * ```ts
 * ndjsonLine({ done: true }); // bytes of '{"done":true}\n'
 * ```
 */
export function ndjsonLine(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value) + "\n");
}

/**
 * Builds a streaming NDJSON response whose producer stops when the client goes away; an error
 * thrown by the producer is sent as a last `{"error": …}` line.
 *
 * @param produce Writes objects with `send`; it should stop when `abort` aborts.
 * @param abort Aborted when the client disconnects (the generation's abort controller).
 * @returns The response.
 * @example
 * ```ts
 * return ndjsonResponse(async (send) => send({ done: true }), new AbortController());
 * ```
 */
export function ndjsonResponse(
  produce: (send: (value: unknown) => void) => Promise<void>,
  abort: AbortController,
): Response {
  return streamBody(
    (send) => produce((value) => send(ndjsonLine(value))),
    abort,
    NDJSON_HEADERS,
    (error, send) => send(ndjsonLine(ollamaErrorBody(error))),
  );
}
