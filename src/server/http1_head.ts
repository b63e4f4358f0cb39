/**
 * HTTP/1.1 message heads for the connection guard's own serving path: reading a request head
 * and writing a response head and its body framing. Only the plain shape of request is taken:
 * HTTP/1.1, an origin-form target, a `Host`, no body, one sized by `Content-Length`, or one in
 * chunks. Anything else (an upgrade, a transfer coding besides `chunked`, `Expect`, bytes outside
 * ASCII, another method or version) is left to `Deno.serve` behind the guard, which the caller
 * forwards the connection to. A head
 * that no server may take (a request line that is not a method, a target and HTTP/1.0 or 1.1 one
 * space apart, obsolete line folding, a control character, a header name that is no token, a
 * repeated `Content-Length` or `Host`, `Transfer-Encoding` beside `Content-Length` or not ending
 * in `chunked`, more than {@link MAX_HEAD_BYTES}) is answered here with an error body, where
 * `Deno.serve` would answer it with an empty one.
 *
 * @module
 */

import { errorBody, HttpError } from "./http_error.ts";

/** A request head the guard serves itself. */
export interface RequestHead {
  method: string;
  /** The origin-form target: path and query. */
  target: string;
  /** Header fields as sent, in order (a `Request` takes them as they are). */
  headers: [string, string][];
  /** The `Host` header's value. */
  host: string;
  /** Body bytes that follow the head (0 when there is no body or it is chunked). */
  contentLength: number;
  /** Whether the body is sent in chunks (`Transfer-Encoding: chunked`). */
  chunked: boolean;
  /** Whether the client lets the connection carry another request after this one. */
  keepAlive: boolean;
  /** Bytes the head takes, up to and including its blank line. */
  length: number;
}

/** What {@link parseRequestHead} found at the start of the buffered bytes. */
export type HeadReading =
  | { kind: "incomplete" }
  /**
   * A request for `Deno.serve`; `webSocketHead` is the length of its head when it is whole and
   * asks for a WebSocket (RFC 6455: the client sends nothing more until the server answers).
   */
  | { kind: "forward"; webSocketHead?: number }
  /** A head no server may take (RFC 9112): the guard answers it with an error body and closes. */
  | { kind: "malformed"; status: MalformedStatus; reason: string }
  | { kind: "head"; head: RequestHead };

/** The statuses of answers to heads no server may take. */
export type MalformedStatus = 400 | 431 | 501 | 505;

/** Longest request head taken; a longer one is a 431. */
export const MAX_HEAD_BYTES = 64 * 1024;

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A request line's method, target and version. */
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([!-~]+) HTTP\/(\d\.\d)$/;
/** The request line of HTTP/2's connection preface (prior knowledge), which Deno.serve speaks. */
const HTTP2_PREFACE = "PRI * HTTP/2.0";
const DIGITS = /^\d{1,15}$/;
/** Request headers that ask for more than the plain shape. */
const FORWARDED_HEADERS = new Set(["upgrade", "expect"]);
/** A `Connection` header's value that holds the `close` option. */
const CONNECTION_CLOSE = /(^|,)\s*close\s*(,|$)/i;
const CR = 13;
const LF = 10;
const INCOMPLETE: HeadReading = { kind: "incomplete" };
const FORWARD: HeadReading = { kind: "forward" };
const ascii = new TextDecoder();

/**
 * Reads the request head at the start of `bytes`.
 *
 * @param bytes Buffered bytes of the connection, from the start of a request.
 * @returns `incomplete` while the head's blank line has not arrived (and the head is under
 *   {@link MAX_HEAD_BYTES}), `forward` for a request outside the plain shape, else the head.
 * @example
 * ```ts
 * const reading = parseRequestHead(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
 * // reading.kind === "head", reading.head.target === "/"
 * ```
 */
export function parseRequestHead(bytes: Uint8Array): HeadReading {
  const end = headEnd(bytes);
  if (end < 0 && bytes.length > MAX_HEAD_BYTES || end > MAX_HEAD_BYTES) {
    return malformed(431, `The request head is longer than ${MAX_HEAD_BYTES} bytes`);
  }
  if (end < 0) return plainSoFar(bytes) ? INCOMPLETE : FORWARD;
  for (let i = 0; i < end; i++) {
    const byte = bytes[i] as number;
    if (byte === 0x7f || (byte < 0x20 && byte !== CR && byte !== LF && byte !== 9)) {
      return malformed(400, "The request head holds a control character");
    }
    if (byte >= 0x80) return FORWARD; // obs-text in a value: Deno.serve decides
  }
  const [requestLine = "", ...lines] = ascii.decode(bytes.subarray(0, end - 4)).split("\r\n");
  if (requestLine === HTTP2_PREFACE) return FORWARD;
  const line = readRequestLine(requestLine);
  if ("kind" in line) return line;
  const { method, target } = line;
  // The plain shape: HTTP/1.1, a path, a method the guard serves.
  let forward = line.version !== "1.1" || !target.startsWith("/") || !METHODS.has(method);
  const headers: [string, string][] = [];
  let contentLength: string | undefined;
  let host: string | undefined;
  let connection = "";
  let transferCodings: string[] | undefined;
  let webSocket = false;
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (line.startsWith(" ") || line.startsWith("\t")) {
      return malformed(400, "The request head folds a header over lines (obsolete line folding)");
    }
    if (colon <= 0 || line.includes("\n") || line.includes("\r")) {
      return malformed(
        400,
        `The request head holds a line that is no header: ${JSON.stringify(line.slice(0, 64))}`,
      );
    }
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) {
      return malformed(400, `${JSON.stringify(name.slice(0, 64))} is not a header name`);
    }
    const key = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    // An offer to switch to HTTP/2 in the clear (`curl --http2`) is ignored, as RFC 9110 lets a
    // server do: the request is answered in HTTP/1.1 (Deno.serve answered a POST's with an
    // empty 400).
    const h2cOffer = key === "upgrade" && value.toLowerCase() === "h2c";
    if (FORWARDED_HEADERS.has(key) && !h2cOffer) forward = true;
    if (key === "upgrade" && value.toLowerCase() === "websocket") webSocket = true;
    if (key === "content-length") {
      if (contentLength !== undefined || !DIGITS.test(value)) {
        return malformed(400, "Content-Length must be given once, as digits");
      }
      contentLength = value;
    } else if (key === "host") {
      if (host !== undefined) return malformed(400, "Host must be given once");
      host = value;
    } else if (key === "connection") {
      connection += `,${value}`;
    } else if (key === "transfer-encoding") {
      transferCodings = [...transferCodings ?? [], ...value.split(",").map((c) => c.trim())];
    }
    headers.push([name, value]);
  }
  if (transferCodings !== undefined) {
    if (contentLength !== undefined) {
      return malformed(400, "A request must not carry both Transfer-Encoding and Content-Length");
    }
    const chunked = transferCodings.map((c) => c.toLowerCase() === "chunked");
    if (!chunked.at(-1) || chunked.indexOf(true) !== chunked.length - 1) {
      return malformed(
        400,
        `Transfer-Encoding must end with chunked, once (got "${transferCodings.join(", ")}")`,
      );
    }
  }
  if (webSocket && method === "GET") {
    // Deno.serve refuses these with an empty 400 (even `Content-Length: 0`).
    if (contentLength !== undefined || transferCodings !== undefined) {
      return malformed(
        400,
        "A WebSocket upgrade carries no body: send it without Content-Length or Transfer-Encoding",
      );
    }
    return { kind: "forward", webSocketHead: end };
  }
  // A body in chunks is read here (`chunked_body.ts`), when `chunked` is its only coding.
  const chunked = transferCodings !== undefined;
  if (chunked && line.version === "1.0") {
    return malformed(400, "HTTP/1.0 has no Transfer-Encoding: send the body with Content-Length");
  }
  if (transferCodings !== undefined && transferCodings.length > 1) {
    return malformed(
      501,
      `Transfer-Encoding "${transferCodings.join(", ")}" is not supported: send the body in ` +
        "chunks alone (Transfer-Encoding: chunked) or with Content-Length",
    );
  }
  if (forward || host === undefined) return FORWARD;
  const length = contentLength === undefined ? 0 : Number(contentLength);
  // The fetch API refuses a body on these; Deno.serve has its own answer.
  if ((method === "GET" || method === "HEAD") && (length > 0 || chunked)) return FORWARD;
  return {
    kind: "head",
    head: {
      method,
      target,
      headers,
      host,
      contentLength: length,
      chunked,
      keepAlive: !CONNECTION_CLOSE.test(connection),
      length: end,
    },
  };
}

function malformed(status: MalformedStatus, reason: string): HeadReading {
  return { kind: "malformed", status, reason };
}

/**
 * A request line's method, target and version, or the answer to one no server may take (see
 * {@link HeadReading}): not a method, a target and a version one space apart, a version other
 * than HTTP/1.0 and 1.1 (505), or a target of none of the forms a request to this server can have.
 */
function readRequestLine(
  line: string,
): { method: string; target: string; version: string } | HeadReading {
  const parts = REQUEST_LINE.exec(line);
  if (parts === null) {
    return malformed(
      400,
      `The request line must be a method, a target and HTTP/1.1, one space apart (got ${
        JSON.stringify(line.slice(0, 64))
      })`,
    );
  }
  const [, method = "", target = "", version = ""] = parts;
  if (version !== "1.1" && version !== "1.0") {
    return malformed(505, `HTTP/${version} is not supported; send HTTP/1.1`);
  }
  const form = target.startsWith("/") || /^[a-z][a-z0-9+.-]*:\/\//i.test(target) ||
    (target === "*" && method === "OPTIONS") || method === "CONNECT";
  if (!form) {
    return malformed(
      400,
      `The request target must be a path such as /v1/models (got ${
        JSON.stringify(target.slice(0, 64))
      })`,
    );
  }
  return { method, target, version };
}

/**
 * The answer to a malformed head (see {@link HeadReading}): an error body in the OpenAI shape, and
 * the connection closes, since where the next request would start is unknown.
 *
 * @param reading The malformed reading.
 * @returns The whole response's bytes.
 * @example
 * ```ts
 * malformedAnswer({ kind: "malformed", status: 400, reason: "Host must be given once" });
 * ```
 */
export function malformedAnswer(
  reading: { status: MalformedStatus; reason: string },
): Uint8Array {
  const code = reading.status === 431
    ? "header_too_large"
    : reading.status === 505
    ? "http_version_not_supported"
    : reading.status === 501
    ? "unsupported_transfer_coding"
    : "malformed_request";
  const body = JSON.stringify(errorBody(new HttpError(reading.status, reading.reason, { code })));
  const response = new Response(body, { status: reading.status, headers: JSON_TYPE });
  const head = responseHead(
    response,
    { contentLength: new TextEncoder().encode(body).length },
    true,
  );
  return new TextEncoder().encode(head + body);
}

const JSON_TYPE = { "content-type": "application/json" };

/**
 * Whether the bytes of a head not yet whole can still become one of the plain shape: text, with
 * every line ending in CRLF. Lines ending in a bare LF (which `Deno.serve` reads) or bytes that are
 * no HTTP at all (a TLS handshake) go to `Deno.serve` at once, which answers them, instead of
 * waiting for a CRLF CRLF that never comes until the header timeout.
 */
function plainSoFar(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i] as number;
    if (
      byte === LF ? bytes[i - 1] !== CR : byte >= 0x7f || (byte < 0x20 && byte !== CR && byte !== 9)
    ) {
      return false;
    }
  }
  return true;
}

/** Index just past the head's blank line (`\r\n\r\n`), or -1 when it has not arrived. */
function headEnd(bytes: Uint8Array): number {
  for (let i = bytes.indexOf(LF); i >= 0 && i + 2 < bytes.length; i = bytes.indexOf(LF, i + 1)) {
    if (bytes[i - 1] === CR && bytes[i + 1] === CR && bytes[i + 2] === LF) return i + 3;
  }
  return -1;
}

/** How a response's body is framed on the connection. */
export type BodyFraming = { contentLength: number } | "chunked" | "none";

/** Response headers the guard writes itself, whatever the handler set. */
const FRAMING_HEADERS = new Set(["content-length", "transfer-encoding", "connection"]);
const REASONS: Record<number, string> = {
  200: "OK",
  201: "Created",
  204: "No Content",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};
let dateSecond = -1;
let dateValue = "";

/** The `Date` header's value, formatted once a second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

/**
 * Writes a response head.
 *
 * @param response The handler's response (its status and headers).
 * @param framing How the body follows.
 * @param close Whether the connection closes after this response.
 * @returns The head's text, blank line included.
 * @example
 * ```ts
 * responseHead(new Response("hi"), { contentLength: 2 }, false);
 * // "HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\ndate: …\r\ncontent-length: 2\r\n\r\n"
 * ```
 */
export function responseHead(response: Response, framing: BodyFraming, close: boolean): string {
  const reason = response.statusText || REASONS[response.status] || "";
  let head = `HTTP/1.1 ${response.status} ${reason}\r\n`;
  for (const [name, value] of response.headers) {
    if (!FRAMING_HEADERS.has(name)) head += `${name}: ${value}\r\n`;
  }
  head += `date: ${httpDate()}\r\n`;
  if (framing === "chunked") head += "transfer-encoding: chunked\r\n";
  else if (framing !== "none") head += `content-length: ${framing.contentLength}\r\n`;
  if (close) head += "connection: close\r\n";
  return head + "\r\n";
}

/** Whether a response with this status to this method carries no body at all. */
export function hasNoBody(method: string, status: number): boolean {
  return method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200);
}

/** Content types of bodies made of events sent as they happen (SSE, Ollama's NDJSON). */
const EVENT_STREAM = /^\s*(text\/event-stream|application\/x-ndjson)\s*(;|$)/i;

/** Whether the response's body is a stream of events, sent as they happen. */
export function isEventStream(response: Response): boolean {
  return EVENT_STREAM.test(response.headers.get("content-type") ?? "");
}

/** Whether the response asks for the connection to close after it. */
export function responseCloses(response: Response): boolean {
  return CONNECTION_CLOSE.test(response.headers.get("connection") ?? "");
}
