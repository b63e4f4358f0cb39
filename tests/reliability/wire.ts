/**
 * Clients for the reliability suite that see the wire as it is: a raw HTTP/1.1 client over
 * `Deno.connect` (so requests can carry any bytes, headers and methods, stall, or be dropped
 * at any point), an SSE reader, a WebSocket session, and the checks every answer must pass
 * (JSON or SSE on 2xx, the OpenAI error shape on 4xx/5xx).
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A request for {@link buildRequest}. */
export interface RawRequestSpec {
  method: string;
  /** Path and query, sent as is. */
  path: string;
  /** Header lines in order; `host` defaults to `127.0.0.1:PORT`. */
  headers?: [string, string][];
  /** The body; `content-length` is added unless a header already frames the body. */
  body?: Uint8Array | string;
}

/**
 * Serialises a request (with `Connection: close`, so one connection carries one exchange).
 *
 * @param port The server's port (for the default `Host`).
 * @param spec Method, path, headers and body.
 * @returns The bytes to send.
 */
export function buildRequest(port: number, spec: RawRequestSpec): Uint8Array {
  const headers = spec.headers ?? [];
  const names = new Set(headers.map(([k]) => k.toLowerCase()));
  const body = typeof spec.body === "string" ? encoder.encode(spec.body) : spec.body;
  const lines = [`${spec.method} ${spec.path} HTTP/1.1`];
  if (!names.has("host")) lines.push(`Host: 127.0.0.1:${port}`);
  for (const [k, v] of headers) lines.push(`${k}: ${v}`);
  if (!names.has("connection")) lines.push("Connection: close");
  if (body && !names.has("content-length") && !names.has("transfer-encoding")) {
    lines.push(`Content-Length: ${body.length}`);
  }
  const head = encoder.encode(lines.join("\r\n") + "\r\n\r\n");
  if (!body) return head;
  const all = new Uint8Array(head.length + body.length);
  all.set(head);
  all.set(body, head.length);
  return all;
}

/** A parsed HTTP response. */
export interface RawResponse {
  status: number;
  headers: Headers;
  body: Uint8Array;
  /** The body decoded as UTF-8 (lossy). */
  text: string;
}

/** What happened to one raw exchange. */
export interface RawResult {
  /** The response, when a whole one arrived. */
  response?: RawResponse;
  /** How the exchange ended without a whole response: `closed`, `reset` or `timeout`. */
  failure?: "closed" | "reset" | "timeout";
  /** Milliseconds from connect to the end. */
  ms: number;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array, from = 0): number {
  outer: for (let i = from; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

const CRLF = encoder.encode("\r\n");
const HEADER_END = encoder.encode("\r\n\r\n");

/** Decodes a chunked body; undefined while incomplete. */
function dechunk(data: Uint8Array): Uint8Array | undefined {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (;;) {
    const eol = indexOf(data, CRLF, at);
    if (eol < 0) return undefined;
    const size = parseInt(decoder.decode(data.subarray(at, eol)).split(";")[0] as string, 16);
    if (!Number.isFinite(size)) return undefined;
    if (size === 0) {
      return indexOf(data, CRLF, eol + 2) >= 0 ? concat(parts) : undefined;
    }
    if (data.length < eol + 2 + size + 2) return undefined;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

/**
 * Byte arrays one after another, in one array.
 *
 * @param parts The arrays, in order.
 * @returns A new array holding them all.
 */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Parses a response out of the bytes received so far.
 *
 * @param data Bytes received.
 * @param head Whether the request was HEAD (no body).
 * @param eof Whether the connection has ended (a body framed by EOF is complete).
 * @returns The response when complete.
 */
function parseResponse(data: Uint8Array, head: boolean, eof: boolean): RawResponse | undefined {
  let start = 0;
  for (;;) {
    const end = indexOf(data, HEADER_END, start);
    if (end < 0) return undefined;
    const lines = decoder.decode(data.subarray(start, end)).split("\r\n");
    const status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(lines[0] ?? "")?.[1]);
    if (!Number.isInteger(status)) return undefined;
    const headers = new Headers();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    const rest = data.subarray(end + 4);
    if (status >= 100 && status < 200 && status !== 101) {
      start = end + 4; // 100 Continue: the real answer follows.
      continue;
    }
    const done = (body: Uint8Array) => ({ status, headers, body, text: decoder.decode(body) });
    if (head || status === 204 || status === 304 || status === 101) return done(new Uint8Array());
    if (headers.get("transfer-encoding")?.toLowerCase().includes("chunked")) {
      const body = dechunk(rest);
      return body ? done(body) : undefined;
    }
    const length = headers.get("content-length");
    if (length !== null) {
      const n = Number(length);
      return rest.length >= n ? done(rest.subarray(0, n)) : undefined;
    }
    return eof ? done(rest) : undefined;
  }
}

/** Options of {@link rawExchange}. */
export interface RawOptions {
  /** Most milliseconds for the whole exchange. Default 30 000. */
  timeoutMs?: number;
  /** The request is HEAD (its answer has no body). */
  head?: boolean;
}

/**
 * Sends bytes on a new connection and reads one response (the request is written while the
 * response is read, so a server that answers a huge upload early is seen answering).
 *
 * @param port Server port on 127.0.0.1.
 * @param request The bytes to send.
 * @param options Time limit and HEAD.
 * @returns The response or how the exchange failed.
 */
export async function rawExchange(
  port: number,
  request: Uint8Array,
  options: RawOptions = {},
): Promise<RawResult> {
  const started = performance.now();
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return { failure: "reset", ms: performance.now() - started };
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, options.timeoutMs ?? 30_000);
  const writing = (async () => {
    let at = 0;
    while (at < request.length) at += await conn.write(request.subarray(at, at + 256 * 1024));
  })().catch(() => {});
  const chunks: Uint8Array[] = [];
  let received: Uint8Array = new Uint8Array();
  let response: RawResponse | undefined;
  let failure: RawResult["failure"];
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) {
        response = parseResponse(received, options.head ?? false, true);
        if (!response) failure = "closed";
        break;
      }
      chunks.push(buffer.slice(0, n));
      received = concat(chunks);
      chunks.length = 0;
      chunks.push(received);
      response = parseResponse(received, options.head ?? false, false);
      if (response) break;
    }
  } catch {
    response = parseResponse(received, options.head ?? false, true);
    if (!response) failure = timedOut ? "timeout" : "reset";
  }
  clearTimeout(timer);
  closeQuietly(conn);
  await writing;
  if (response) response = await decoded(response);
  return {
    ...(response ? { response } : { failure: failure ?? "closed" }),
    ms: performance.now() - started,
  };
}

/** Undoes a gzip or deflate `content-encoding` (the server compresses when asked). */
async function decoded(response: RawResponse): Promise<RawResponse> {
  const encoding = response.headers.get("content-encoding")?.toLowerCase();
  if (encoding !== "gzip" && encoding !== "deflate") return response;
  try {
    const stream = new Blob([response.body as Uint8Array<ArrayBuffer>]).stream()
      .pipeThrough(new DecompressionStream(encoding));
    const body = new Uint8Array(await new Response(stream).arrayBuffer());
    return { ...response, body, text: decoder.decode(body) };
  } catch {
    return response;
  }
}

/**
 * Closes a connection, ignoring one already closed.
 *
 * @param conn The connection.
 */
export function closeQuietly(conn: { close(): void }): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/**
 * Waits until the server closes a connection (EOF or reset) or sends something.
 *
 * @param conn An open connection.
 * @param timeoutMs Most milliseconds to wait.
 * @returns What happened, with the bytes received and the time it took.
 */
export async function awaitServerEnd(
  conn: Deno.Conn,
  timeoutMs: number,
): Promise<{ outcome: "closed" | "reset" | "timeout"; text: string; ms: number }> {
  const started = performance.now();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, timeoutMs);
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(16 * 1024);
  let outcome: "closed" | "reset" | "timeout" = "closed";
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      parts.push(buffer.slice(0, n));
    }
  } catch {
    outcome = timedOut ? "timeout" : "reset";
  }
  clearTimeout(timer);
  closeQuietly(conn);
  return { outcome, text: decoder.decode(concat(parts)), ms: performance.now() - started };
}

/**
 * Splits an SSE body into its events' data (multi-line data joined with "\n").
 *
 * @param text The body.
 * @returns The payloads, or a problem when a line is not `data: …`.
 */
export function sseEvents(text: string): { events: string[]; problem?: string } {
  const events: string[] = [];
  for (const block of text.split("\n\n")) {
    if (block === "") continue;
    const lines: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      if (!line.startsWith("data:")) {
        return { events, problem: `not an SSE data line: ${JSON.stringify(line.slice(0, 120))}` };
      }
      lines.push(line.slice(line.startsWith("data: ") ? 6 : 5));
    }
    if (lines.length > 0) events.push(lines.join("\n"));
  }
  if (text !== "" && !text.endsWith("\n\n")) {
    return { events, problem: "the stream does not end with a blank line" };
  }
  return { events };
}

/**
 * Checks an error body: OpenAI's `{"error":{"message":string,"type":string,
 * "param":string|null,"code":string|null}}`, or Anthropic's
 * `{"type":"error","error":{"type":string,"message":string}}` (its Messages routes).
 *
 * @param text The body.
 * @returns A problem, or undefined when it has that shape.
 */
export function errorShapeProblem(text: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return `error body is not JSON: ${JSON.stringify(text.slice(0, 200))}`;
  }
  const error = (value as { error?: Record<string, unknown> } | null)?.error;
  if (typeof error !== "object" || error === null) {
    return `no "error" object: ${text.slice(0, 200)}`;
  }
  const nullableString = (v: unknown) => v === null || typeof v === "string";
  if ((value as { type?: unknown }).type === "error") {
    return typeof error.message === "string" && typeof error.type === "string"
      ? undefined
      : `Anthropic error object has the wrong shape: ${text.slice(0, 300)}`;
  }
  if (
    typeof error.message !== "string" || typeof error.type !== "string" ||
    !nullableString(error.param) || !nullableString(error.code)
  ) {
    return `error object has the wrong shape: ${text.slice(0, 300)}`;
  }
  return undefined;
}

/** Paths whose errors take Ollama's shape: under /ollama, and its routes at the root. */
const OLLAMA_PATH = /^\/(?:ollama(?:\/|$)|api\/(?:chat|show|embed|version|tags|ps)\/*$)/;

/**
 * Whether a path's errors take Ollama's shape.
 *
 * @param path The request target (origin or absolute form; a query is ignored).
 * @returns True under `/ollama` and for Ollama's routes at the root.
 */
export function isOllamaPath(path: string): boolean {
  let pathname: string;
  try {
    pathname = new URL(path, "http://localhost").pathname;
  } catch {
    return false;
  }
  return OLLAMA_PATH.test(pathname);
}

/**
 * Checks an Ollama error body: `{"error": string}`.
 *
 * @param text The body.
 * @returns A problem, or undefined when it has that shape.
 */
export function ollamaErrorProblem(text: string): string | undefined {
  try {
    const value = JSON.parse(text);
    if (typeof value?.error === "string") return undefined;
  } catch {
    return `error body is not JSON: ${JSON.stringify(text.slice(0, 200))}`;
  }
  return `Ollama error body is not {"error": string}: ${text.slice(0, 200)}`;
}

/**
 * The `code` of an error body, if it has one.
 *
 * @param text The body.
 * @returns The code, or undefined.
 */
export function errorCode(text: string): string | undefined {
  try {
    const code = JSON.parse(text)?.error?.code;
    return typeof code === "string" ? code : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks any answer against the suite's rule: 2xx with a JSON body or a well-formed SSE stream
 * that ends with `[DONE]` or an error event (`/metrics` is text; 204 and HEAD have no body),
 * or 4xx/5xx with the OpenAI error shape.
 *
 * @param method The request method.
 * @param path The request path.
 * @param response The answer.
 * @returns A problem, or undefined when it is fine.
 */
export function answerProblem(
  method: string,
  path: string,
  response: RawResponse,
): string | undefined {
  const { status } = response;
  const type = response.headers.get("content-type") ?? "";
  if (status >= 400) {
    if (method === "HEAD") return undefined;
    if (!type.includes("application/json")) return `status ${status} with content-type "${type}"`;
    return isOllamaPath(path)
      ? ollamaErrorProblem(response.text)
      : errorShapeProblem(response.text);
  }
  if (status < 200 || status >= 300) return `unexpected status ${status}`;
  if (method === "HEAD" || status === 204) return undefined;
  if (type.includes("application/json")) {
    try {
      JSON.parse(response.text);
      return undefined;
    } catch {
      return `2xx JSON body does not parse: ${response.text.slice(0, 200)}`;
    }
  }
  if (type.includes("text/event-stream")) {
    const { events, problem } = sseEvents(response.text);
    if (problem) return problem;
    const last = events[events.length - 1];
    if (last === "[DONE]") return undefined;
    if (last !== undefined && last.startsWith("{") && errorShapeProblem(last) === undefined) {
      return undefined;
    }
    // llama-server's /completion and /infill end on the answer's object instead (only the
    // fields `response_fields` names).
    if (last !== undefined && LLAMA_ROUTES.has(path) && isObject(last)) return undefined;
    return `SSE stream does not end with [DONE], an error event or a final object (last: ${
      last?.slice(0, 120)
    })`;
  }
  if (type.includes("application/x-ndjson")) {
    // Ollama's streams: JSON lines, the last one done or an error.
    try {
      const last = JSON.parse(response.text.trimEnd().split("\n").at(-1) ?? "");
      if (last?.done === true || ollamaErrorProblem(JSON.stringify(last)) === undefined) {
        return undefined;
      }
    } catch {
      // reported below
    }
    return `NDJSON stream does not end with a done or error line: ${response.text.slice(-200)}`;
  }
  if (path.split("?")[0]?.replace(/\/+$/, "") === "/metrics" && type.startsWith("text/plain")) {
    return undefined;
  }
  // The chat page at / and its files under /webui/.
  const pagePath = path.split("?")[0]?.replace(/\/+$/, "") || "/";
  if (/^\/(?:$|webui\/)/.test(pagePath) && /^text\/(?:html|javascript|css)/.test(type)) {
    return undefined;
  }
  return `2xx with content-type "${type}"`;
}

/** The outcome of a WebSocket session. */
export interface WsOutcome {
  /** Text frames received, in order (binary frames as `<binary N>`). */
  frames: string[];
  /** Close code (1006 when the connection dropped without a close frame). */
  closeCode: number;
  closeReason: string;
  /** Whether the handshake succeeded. */
  opened: boolean;
  /** Set when the session did not end within the time limit. */
  timedOut: boolean;
  ms: number;
}

/** Options of {@link wsSession}. */
export interface WsOptions {
  /** Called for each received frame; may send, or close the socket. */
  onFrame?: (ws: WebSocket, frame: string, count: number) => void;
  /** Most milliseconds for the session; the socket is closed after. Default 30 000. */
  timeoutMs?: number;
  /** Closes the socket when it aborts. */
  signal?: AbortSignal;
}

/**
 * Opens `/ws/generate`, sends `first` (if any), and collects frames until the socket closes.
 *
 * @param baseUrl Server URL (`http://…`).
 * @param first The first frame (the generation request).
 * @param options Frame callback and time limit.
 * @returns Frames and close code.
 */
export function wsSession(
  baseUrl: string,
  first: string | undefined,
  options: WsOptions = {},
): Promise<WsOutcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const ws = new WebSocket(`${baseUrl.replace(/^http/, "ws")}/ws/generate`);
    const frames: string[] = [];
    let opened = false;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ws.close();
    }, options.timeoutMs ?? 30_000);
    const abort = () => ws.close();
    options.signal?.addEventListener("abort", abort, { once: true });
    if (options.signal?.aborted) abort();
    ws.onopen = () => {
      opened = true;
      if (first !== undefined) ws.send(first);
    };
    ws.onmessage = (event) => {
      frames.push(
        typeof event.data === "string" ? event.data : `<binary ${String(event.data?.size)}>`,
      );
      options.onFrame?.(ws, frames[frames.length - 1] as string, frames.length);
    };
    ws.onerror = () => {};
    ws.onclose = (event) => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", abort);
      resolve({
        frames,
        closeCode: event.code,
        closeReason: event.reason,
        opened,
        timedOut,
        ms: performance.now() - started,
      });
    };
  });
}

/**
 * Reads a streaming fetch response chunk by chunk, recording when each chunk arrived.
 *
 * @param response The response.
 * @param options `onChunk` may return false to stop reading (the body is then cancelled);
 *   `delayMs` pauses before each read (a slow reader).
 * @returns The text read, the arrival times (ms since the call), and whether it was cut.
 */
export async function readTimed(
  response: Response,
  options: { onChunk?: (text: string, n: number) => boolean | void; delayMs?: number } = {},
): Promise<{ text: string; times: number[]; cut: boolean }> {
  const started = performance.now();
  const reader = response.body!.getReader();
  const textDecoder = new TextDecoder();
  const times: number[] = [];
  let text = "";
  let cut = false;
  try {
    for (;;) {
      if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
      const { value, done } = await reader.read();
      if (done) break;
      const piece = textDecoder.decode(value, { stream: true });
      text += piece;
      times.push(performance.now() - started);
      if (options.onChunk?.(piece, times.length) === false) {
        cut = true;
        await reader.cancel().catch(() => {});
        break;
      }
    }
  } catch {
    cut = true;
  }
  return { text, times, cut };
}

/**
 * The largest gap between consecutive arrival times.
 *
 * @param times Arrival times in ms.
 * @returns The largest gap (0 with fewer than two).
 */
export function maxGap(times: readonly number[]): number {
  let worst = 0;
  for (let i = 1; i < times.length; i++) {
    worst = Math.max(worst, (times[i] as number) - (times[i - 1] as number));
  }
  return worst;
}

/** llama-server's completion routes, whose streams end on an object of the answer's fields. */
const LLAMA_ROUTES = new Set(["/completion", "/infill"]);

/** Whether an SSE event's data is a JSON object. */
function isObject(event: string): boolean {
  try {
    const value = JSON.parse(event);
    return typeof value === "object" && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}
