/**
 * Resumable streams, as llama-server has them: a streamed answer asked with an
 * `X-Conversation-Id` header outlives its connection. Its bytes go to a session kept under that
 * id, the generation goes on when the client hangs up (a laptop that sleeps, a page reloaded), and
 * `GET /v1/stream?conv_id=ID&from=N` replays them from byte N, then follows them live until the
 * answer ends. `POST /v1/streams/lookup` says which of the ids a client names have a session (it
 * never lists others), and `DELETE /v1/stream?conv_id=ID` stops one: its generation is cancelled
 * and its bytes dropped. A new request with the same id replaces (and stops) the session before.
 *
 * A session keeps at most {@link SESSION_MAX_BYTES} (older bytes are dropped: a replay from them
 * is a 400), and is forgotten {@link SESSION_TTL_MS} after its answer ended; at most
 * {@link MAX_ENDED_SESSIONS} ended ones, holding {@link MAX_ENDED_BYTES} together, are kept, the
 * oldest dropped first.
 *
 * @module
 */

import type { ServerContext } from "./context.ts";
import { badRequest, HttpError } from "./http_error.ts";
import { readRequestJson, refuseUnknownFields } from "./request_body.ts";
import { SSE_HEADERS } from "./sse.ts";
import { type ChunkSink, pushedChunks, streamBody } from "./stream_body.ts";
import type { ServedRequest } from "./served_request.ts";

/** Most bytes a session keeps (llama-server's bound). */
export const SESSION_MAX_BYTES = 4 * 1024 * 1024;

/** How long an ended session stays (llama-server's: five minutes). */
export const SESSION_TTL_MS = 5 * 60 * 1000;

/** Most ended sessions kept at once; live ones are bounded by the slots and the queue. */
export const MAX_ENDED_SESSIONS = 128;

/** Most bytes the ended sessions keep together (the oldest go first beyond it). */
export const MAX_ENDED_BYTES = 64 * 1024 * 1024;

/** Longest conversation id taken (a UUID, or one with a model name after `::`). */
const MAX_ID_LENGTH = 512;

/**
 * The bytes of one streamed answer, kept for replay (also a background response's events,
 * `responses_background.ts`).
 */
export class StreamSession {
  readonly id: string;
  /** Seconds since the epoch, as llama-server reports them. */
  readonly startedAt = Math.floor(Date.now() / 1000);
  /** When the answer ended, in seconds since the epoch (0 while it runs). */
  completedAt = 0;
  /** `Date.now()` when it ended, for the time to live. */
  endedMs = 0;
  readonly #chunks: Uint8Array[] = [];
  #kept = 0;
  #dropped = 0;
  readonly #waiters = new Set<() => void>();
  readonly #stop: AbortController;
  readonly #endWork: () => void;

  /**
   * @param id The conversation id.
   * @param stop Aborts the answer's generation.
   * @param endWork Ends the session's share of the server's activity.
   */
  constructor(id: string, stop: AbortController, endWork: () => void) {
    this.id = id;
    this.#stop = stop;
    this.#endWork = endWork;
  }

  /** Whether the answer has ended (or was stopped). */
  get done(): boolean {
    return this.completedAt !== 0;
  }

  /** Bytes written so far, dropped ones included. */
  get total(): number {
    return this.#dropped + this.#kept;
  }

  /** Bytes kept now. */
  get kept(): number {
    return this.#kept;
  }

  /** Bytes no longer kept: a replay must start at or after this offset. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Adds bytes (nothing once the session has ended); readers waiting wake. */
  append(bytes: Uint8Array): void {
    if (this.done || bytes.length === 0) return;
    this.#chunks.push(bytes);
    this.#kept += bytes.length;
    while (this.#kept > SESSION_MAX_BYTES && this.#chunks.length > 1) {
      const first = this.#chunks.shift() as Uint8Array;
      this.#kept -= first.length;
      this.#dropped += first.length;
    }
    this.#wake();
  }

  /** Ends the session: readers finish with what is kept; the work it counted for is over. */
  end(): void {
    if (this.done) return;
    this.completedAt = Math.floor(Date.now() / 1000);
    this.endedMs = Date.now();
    this.#endWork();
    this.#wake();
  }

  /** Stops the generation and ends the session. */
  stop(): void {
    this.#stop.abort();
    this.end();
  }

  /** The kept bytes from `offset` on (empty when there are none yet). */
  bytesFrom(offset: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let at = this.#dropped;
    for (const chunk of this.#chunks) {
      const end = at + chunk.length;
      if (end > offset) out.push(offset > at ? chunk.subarray(offset - at) : chunk);
      at = end;
    }
    return out;
  }

  /** Readers waiting for the next change ({@link StreamSession.changed}). */
  get waiting(): number {
    return this.#waiters.size;
  }

  /**
   * Waits for the next change. A reader whose client has gone stops waiting at once and leaves
   * nothing behind: a session's readers are woken on every chunk.
   *
   * @param signal Ends the wait when it aborts (the reader has gone).
   * @returns Resolves when bytes are added, the session ends, or `signal` aborts.
   * @example
   * ```ts
   * while (!session.done && !signal.aborted) await session.changed(signal);
   * ```
   */
  changed(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const wake = () => {
        this.#waiters.delete(wake);
        signal?.removeEventListener("abort", wake);
        resolve();
      };
      this.#waiters.add(wake);
      signal?.addEventListener("abort", wake, { once: true });
    });
  }

  #wake(): void {
    for (const wake of [...this.#waiters]) wake();
  }
}

/** The sessions of one server, by conversation id. */
export class StreamSessions {
  readonly #sessions = new Map<string, StreamSession>();

  /** Sessions kept now. */
  get size(): number {
    this.#sweep();
    return this.#sessions.size;
  }

  /**
   * Opens the session of a streamed answer, stopping the one the id had.
   *
   * @param id The conversation id.
   * @param stop Aborts the answer's generation (on `DELETE`, or when a new request takes the id).
   * @param endWork Called once the answer has ended.
   * @returns The session.
   */
  open(id: string, stop: AbortController, endWork: () => void): StreamSession {
    this.#sweep();
    this.#sessions.get(id)?.stop();
    this.#sessions.delete(id);
    const session = new StreamSession(id, stop, endWork);
    this.#sessions.set(id, session);
    return session;
  }

  /** The session of an id, while it is kept. */
  get(id: string): StreamSession | undefined {
    this.#sweep();
    return this.#sessions.get(id);
  }

  /**
   * The sessions of the ids asked: each id's own, and those of `id::model` (llama-server's form
   * for one conversation's answers from several models).
   */
  lookup(ids: readonly string[]): StreamSession[] {
    this.#sweep();
    const out: StreamSession[] = [];
    for (const id of ids) {
      for (const session of this.#sessions.values()) {
        if (session.id === id || session.id.startsWith(`${id}::`)) out.push(session);
      }
    }
    return out;
  }

  /** Stops a session and forgets it; an unknown id is no error. */
  stop(id: string): void {
    this.#sessions.get(id)?.stop();
    this.#sessions.delete(id);
  }

  /** Forgets expired sessions, and the oldest ended ones past the bound. */
  #sweep(): void {
    const now = Date.now();
    const ended = [...this.#sessions.values()].filter((s) => s.done);
    for (const session of ended) {
      if (now - session.endedMs >= SESSION_TTL_MS) this.#sessions.delete(session.id);
    }
    const kept = ended.filter((s) => this.#sessions.get(s.id) === s)
      .sort((a, b) => a.endedMs - b.endedMs);
    let bytes = kept.reduce((sum, s) => sum + s.kept, 0);
    let count = kept.length;
    for (const session of kept) {
      if (count <= MAX_ENDED_SESSIONS && bytes <= MAX_ENDED_BYTES) break;
      this.#sessions.delete(session.id);
      count--;
      bytes -= session.kept;
    }
  }
}

/** The server's stream sessions, made on first use. */
function sessionsOf(ctx: ServerContext): StreamSessions {
  return ctx.streamSessions ??= new StreamSessions();
}

/**
 * The conversation id a request asks its stream to be kept under, when it asks.
 *
 * @param request The request.
 * @returns The id, or undefined without an `X-Conversation-Id` header.
 * @throws {HttpError} 400 for an id longer than 512 characters or with control characters.
 */
export function conversationIdOf(request: ServedRequest): string | undefined {
  const id = request.headers.get("x-conversation-id")?.trim();
  if (!id) return undefined;
  // deno-lint-ignore no-control-regex
  if (id.length > MAX_ID_LENGTH || /[\u0000-\u001f\u007f]/.test(id)) {
    throw badRequest(
      `X-Conversation-Id must be at most ${MAX_ID_LENGTH} printable characters`,
      "x-conversation-id",
    );
  }
  return id;
}

/**
 * Keeps a streamed answer under a conversation id: its bytes go to a new session, its generation
 * no longer stops when the client hangs up (only on `DELETE /v1/stream` or a new request with the
 * id), and the client reads the answer from the session.
 *
 * @param ctx Server state.
 * @param id The conversation id.
 * @param response The handler's answer: an SSE stream (anything else is returned as it is).
 * @param work Aborts the answer's generation; the caller has stopped tying it to the client.
 * @returns The client's answer.
 */
export function keepStream(
  ctx: ServerContext,
  id: string,
  response: Response,
  work: AbortController,
): Response {
  const session = sessionsOf(ctx).open(id, work, ctx.activity.begin());
  const sink: ChunkSink = {
    write: (bytes) => session.append(bytes),
    close: () => session.end(),
  };
  const attach = pushedChunks(response.body);
  if (attach) attach(sink);
  else void drain(response.body, sink);
  return replay(session, 0, new Headers(response.headers));
}

/** Reads a body that cannot be taken pushed into the sink. */
async function drain(body: ReadableStream<Uint8Array> | null, sink: ChunkSink): Promise<void> {
  try {
    if (body) { for await (const bytes of body) sink.write(bytes); }
  } finally {
    sink.close();
  }
}

/**
 * An SSE answer that replays a session from a byte offset, then follows it until it ends. A
 * client that hangs up stops only its own reading.
 *
 * @param session The session.
 * @param from The first byte to send (at least `session.dropped`).
 * @param headers The answer's headers.
 * @returns The answer.
 */
export function replay(session: StreamSession, from: number, headers: HeadersInit): Response {
  const reader = new AbortController();
  return streamBody(
    async (send) => {
      let offset = from;
      while (!reader.signal.aborted) {
        for (const bytes of session.bytesFrom(offset)) {
          send(bytes);
          offset += bytes.length;
        }
        if (session.done && offset >= session.total) return;
        if (offset < session.dropped) return; // fell behind past what is kept
        await session.changed(reader.signal);
      }
    },
    reader,
    Object.fromEntries(new Headers(headers)),
    () => {},
  );
}

/** The `conv_id` query parameter of a stream route. */
function conversationParam(request: ServedRequest): string {
  const id = new URL(request.url).searchParams.get("conv_id") ?? "";
  if (id === "") {
    throw badRequest('"conv_id" is required: the X-Conversation-Id of the stream', "conv_id");
  }
  return id;
}

/**
 * `GET /v1/stream?conv_id=ID&from=N`: a kept stream's bytes from byte N (default 0), then live
 * until its answer ends.
 *
 * @param ctx Server state.
 * @param request The request.
 * @returns The SSE bytes.
 * @throws {HttpError} 400 without `conv_id`, for a bad `from` or one whose bytes were dropped;
 *   404 for an unknown or expired id.
 */
export function getStream(ctx: ServerContext, request: ServedRequest): Response {
  const id = conversationParam(request);
  const session = sessionsOf(ctx).get(id);
  if (!session) {
    throw new HttpError(
      404,
      `No stream is kept for conversation "${id}": it ended over 5 minutes ago, or never was`,
      { code: "stream_not_found" },
    );
  }
  const raw = new URL(request.url).searchParams.get("from") ?? "0";
  const from = /^\d{1,15}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(from)) {
    throw badRequest('"from" must be a byte offset (0 or more)', "from");
  }
  if (from < session.dropped) {
    throw badRequest(
      `The stream's bytes before ${session.dropped} are no longer kept; start again from there or later`,
      "from",
    );
  }
  return replay(session, from, SSE_HEADERS);
}

/** The fields of a `POST /v1/streams/lookup`. */
const LOOKUP_FIELDS = new Set(["conversation_ids"]);

/**
 * `POST /v1/streams/lookup {"conversation_ids": [...]}`: the kept streams of those ids.
 *
 * @param ctx Server state.
 * @param request The request.
 * @returns `[{conversation_id, is_done, total_bytes, started_at, completed_at}]`.
 * @throws {HttpError} 400 when `conversation_ids` is not an array of strings.
 */
export async function lookupStreams(ctx: ServerContext, request: ServedRequest): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  refuseUnknownFields(body, LOOKUP_FIELDS, "/v1/streams/lookup");
  const ids = body.conversation_ids;
  if (!Array.isArray(ids) || !ids.every((id) => typeof id === "string") || ids.length > 1000) {
    throw badRequest(
      '"conversation_ids" must be an array of at most 1000 strings',
      "conversation_ids",
    );
  }
  const found = sessionsOf(ctx).lookup(ids.filter((id) => id !== ""));
  return Response.json(found.map((session) => ({
    conversation_id: session.id,
    is_done: session.done,
    total_bytes: session.total,
    started_at: session.startedAt,
    completed_at: session.completedAt,
  })));
}

/**
 * `DELETE /v1/stream?conv_id=ID`: stops a kept stream's generation and forgets its bytes; an
 * unknown id is no error (204 all the same).
 *
 * @param ctx Server state.
 * @param request The request.
 * @returns 204.
 * @throws {HttpError} 400 without `conv_id`.
 */
export function deleteStream(ctx: ServerContext, request: ServedRequest): Response {
  sessionsOf(ctx).stop(conversationParam(request));
  return new Response(null, { status: 204 });
}
