/**
 * Connection limits in front of `Deno.serve`, which has no timeouts of its own: a client that
 * sends half a header, or keeps an idle keep-alive connection, holds a socket forever. The
 * guard owns the public TCP listener and serves requests of the plain shape itself
 * (`http1_serve.ts`: HTTP/1.1, no body, one with a `Content-Length` or one in chunks), writing
 * each response and each streamed chunk straight to the client. The first request of another
 * shape (a WebSocket upgrade, HTTP/1.0, `Expect`…) hands its connection to an internal
 * `Deno.serve` bound to 127.0.0.1 on a free port: the connection gets its own loopback
 * connection to it, the bytes read so far go first, and two copy loops (64 KiB buffers, every
 * read written on at once, Nagle off on both sockets) carry bytes both ways from then on. The
 * internal server sees the guard's outbound port as the client port; a map from that port back
 * to the public connection lets the wrapped handler pass on the real client address and count
 * the requests in flight per connection (a request ends when `info.completed` settles). One
 * periodic sweep closes connections that are neither busy nor upgraded (a 101 response) once
 * their partial next request is older than `headerTimeoutMs` (trickled bytes do not extend it)
 * or once they have been silent for `idleTimeoutMs`; any, once a write to it has waited
 * `sendTimeoutMs` for the client to read; an upgraded one, once the server's WebSocket close
 * frame has waited {@link CLOSE_HANDSHAKE_MS} for the client's. Connections beyond
 * `maxConnections` get a 503 and are closed. `close()` drops every connection and aborts the internal server, so it
 * finishes at once even with stalled uploads, stuck handlers or open WebSockets. A WebSocket's
 * frames are followed on their way in (`websocket_watch.ts`), so that a message over the size
 * limit or a frame that breaks the protocol is refused from its header.
 *
 * @module
 */

import { type Http1Conn, serveHttp1 } from "./http1_serve.ts";
import { writeAll } from "../util/bytes.ts";
import type { ServedRequest } from "./served_request.ts";
import { WebSocketWatch } from "./websocket_watch.ts";
import { MAX_BODY_BYTES } from "./request_body.ts";
import { errorBody, HttpError } from "./http_error.ts";

/** Options of {@link serveGuarded}. */
export interface GuardOptions {
  /** Public host name or address to listen on. Default `"127.0.0.1"`. */
  hostname?: string;
  /** Public port; `0` picks a free one. */
  port: number;
  /**
   * How long a connection that is not busy may hold part of its next request: counted from
   * the first byte of that request, so bytes trickling in do not extend it. Default 10 000 ms.
   */
  headerTimeoutMs?: number;
  /**
   * How long a connection that is not busy may stay silent: a kept-alive one since its last
   * response, a new one since it opened. Default 30 000 ms.
   */
  idleTimeoutMs?: number;
  /**
   * How long one write to a client may wait for the client to take its bytes in: a client that
   * stops reading a large answer (or a stream) loses the connection after it. Default
   * {@link SEND_TIMEOUT_MS}.
   */
  sendTimeoutMs?: number;
  /** Most open public connections; the next ones get a 503 and are closed. Default 512. */
  maxConnections?: number;
  /**
   * The most payload bytes of one WebSocket message from a client; a longer one is refused from
   * its frame header with a close 1009 (see `websocket_watch.ts`). Default the body limit,
   * `MAX_BODY_BYTES`.
   */
  maxWebSocketMessageBytes?: number;
  /**
   * How long a new connection that has sent nothing counts as a request on its way
   * (`GuardedServer.requestsArriving`). Default {@link FRESH_CONNECTION_MS}.
   */
  freshConnectionMs?: number;
}

/** The handler the guard calls: the info carries the client's own address. */
export type GuardedHandler = (
  request: ServedRequest,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/**
 * A running guarded server. A connection is busy while a request on it is in flight (from the
 * handler's start until its response is sent), upgraded once a handler answered 101.
 *
 * @example A graceful shutdown
 * ```ts
 * server.stopAccepting();
 * server.closeIdle();
 * const deadline = Date.now() + 5_000;
 * while (server.connections() > 0 && Date.now() < deadline) {
 *   await new Promise((resolve) => setTimeout(resolve, 50));
 * }
 * await server.close();
 * ```
 */
export interface GuardedServer extends AsyncDisposable {
  /** The public address (with the real port when `port` was 0). */
  readonly addr: Deno.NetAddr;
  /** Settles once {@link GuardedServer.close} has closed everything. */
  readonly finished: Promise<void>;
  /**
   * Counts the open public connections.
   *
   * @returns Accepted connections not yet closed (refused ones not included).
   */
  connections(): number;
  /**
   * Counts the connections handed to the internal `Deno.serve` since the start: those that sent
   * a request outside the plain shape the guard serves itself (a WebSocket upgrade, HTTP/1.0…).
   *
   * @returns Connections forwarded so far.
   */
  forwardedConnections(): number;
  /**
   * Counts the requests that are arriving: on connections with no request in flight, the first
   * bytes of one came in within the last `withinMs`, and no handler has it yet; and the
   * connections that opened within `GuardOptions.freshConnectionMs` (and `withinMs`) and sent
   * nothing yet. A client opens a connection to send a request at once, but not always: a fetch
   * pool races a new connection against one about to be free and keeps the loser as a spare, so
   * a connection that sent nothing counts only for as long as a request takes to follow its
   * handshake.
   *
   * @param withinMs How recent.
   * @returns Requests still being read or forwarded.
   */
  requestsArriving(withinMs: number): number;
  /** Closes the public listener; open connections carry on. Safe to call twice. */
  stopAccepting(): void;
  /**
   * Closes every connection that is neither busy nor upgraded, and from then on each
   * connection as soon as its last request completes (for a graceful shutdown). The close is
   * orderly: what the server sent still reaches the client, which gets 1 s to hang up.
   */
  closeIdle(): void;
  /**
   * Closes every connection and the listener and stops the internal server at once, whatever
   * is in flight (stalled uploads, WebSockets). Safe to call twice.
   *
   * @returns Settles when everything is closed.
   */
  close(): Promise<void>;
}

/**
 * How long a new connection that has sent nothing counts as a request on its way (ms). A burst's
 * requests on new connections reach the server a handshake after one on a connection kept open:
 * on the 2-core CPU their first bytes came 0.1-3.8 ms after the accept (bench/README.md, "A burst
 * on new connections"). A spare connection (see `requestsArriving`) holds a first step back this
 * long at most.
 */
const FRESH_CONNECTION_MS = 4;
/** Bytes read at most per read, in each direction of a connection. */
const BUFFER_SIZE = 64 * 1024;
/** Longest period of the sweep that enforces the timeouts. */
const MAX_SWEEP_MS = 1_000;
/** How long a connection whose server side has ended may wait for the client to close. */
const LINGER_MS = 1_000;
/**
 * How long a WebSocket client has to answer the server's close frame before the connection is
 * closed under it (RFC 6455 7.1.1 lets the server close it): 512 clients that never answered had
 * held every connection the server takes, and every later client got a 503.
 */
const CLOSE_HANDSHAKE_MS = 2_000;
/**
 * Default of `GuardOptions.sendTimeoutMs`, as nginx's `send_timeout`: 20 clients that never read
 * their large answers had held their connections, and the answers' memory, for good.
 */
export const SEND_TIMEOUT_MS = 60_000;
/** How long a refused connection may take to read its 503 before it is closed. */
const REFUSE_LINGER_MS = 500;
/** Pause after a failed accept (out of descriptors…) before trying again. */
const ACCEPT_RETRY_MS = 100;

const BUSY_BODY = JSON.stringify({
  error: {
    message: "Too many open connections; try again shortly",
    type: "server_busy_error",
    param: null,
    code: "too_many_connections",
  },
});
const BUSY_RESPONSE = new TextEncoder().encode(
  "HTTP/1.1 503 Service Unavailable\r\n" +
    "Content-Type: application/json\r\n" +
    `Content-Length: ${BUSY_BODY.length}\r\n` +
    "Retry-After: 1\r\n" +
    "Connection: close\r\n\r\n" + BUSY_BODY,
);
/** Where refused connections' requests are read to and dropped (contents never used). */
const DISCARD = new Uint8Array(4096);

/**
 * Serves HTTP behind the connection guard.
 *
 * @param options Public address and limits.
 * @param handler Called for each request, with the client's real address.
 * @returns The running server.
 * @throws {Deno.errors.AddrInUse} When the public address is taken.
 * @example
 * ```ts
 * const server = serveGuarded({ port: 0 }, (_req, info) => new Response(info.remoteAddr.hostname));
 * // …
 * server.stopAccepting();
 * server.closeIdle();
 * await server.close();
 * ```
 */
export function serveGuarded(options: GuardOptions, handler: GuardedHandler): GuardedServer {
  return new ConnectionGuard(options, handler);
}

/** Whether a request asks for a WebSocket. */
function isWebSocketUpgrade(request: ServedRequest): boolean {
  return request.headers.get("upgrade")?.toLowerCase() === "websocket";
}

/** Closes a socket or listener; closing one twice, or a broken one, is harmless. */
function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // Already closed.
  }
}

/** The timeouts a sweep applies to a connection. */
interface TunnelLimits {
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  sendTimeoutMs: number;
}

/**
 * One public connection: served by the guard itself while its requests have the plain shape,
 * then forwarded through its loopback twin to the internal server.
 */
class Tunnel {
  readonly client: Deno.TcpConn;
  upstream: Deno.TcpConn | null = null;
  /** Whether its bytes go to the internal server (from the first request of another shape). */
  forwarding = false;
  /** Requests in flight on this connection. */
  busy = 0;
  /** A 101 response turned it into a WebSocket: the idle rules no longer apply. */
  upgraded = false;
  /** Set when its first request for the internal server asks for a WebSocket. */
  webSocket: WebSocketWatch | null = null;
  /** When it opened or its last request completed. */
  idleSince: number;
  /** When the first byte of a next request arrived since `idleSince`; 0 if none has. */
  firstByteAt = 0;
  /** When it opened (`performance.now()`). */
  readonly #openedAt = performance.now();
  /** Whether any byte has arrived on it. */
  #sentAnything = false;
  /** When the internal server's side ended (or was asked to end); 0 while it runs. */
  endingSince = 0;
  /** When the server's WebSocket close frame went to the client; 0 before. */
  closeFrameSentAt = 0;
  /** The client's socket as the guard writes to it: a write that waits on the client is timed. */
  readonly out: Http1Conn;
  /** When the write to the client now waiting began; 0 while none waits. */
  #writingSince = 0;
  closed = false;
  /** Aborted when it is closed: the guard's own serving gives up its request. */
  readonly #destroyed = new AbortController();

  constructor(client: Deno.TcpConn) {
    this.client = client;
    this.idleSince = Date.now();
    this.out = {
      read: (buffer) => client.read(buffer),
      write: (bytes) => this.#timedWrite(bytes),
      closeWrite: () => client.closeWrite(),
    };
  }

  async #timedWrite(bytes: Uint8Array): Promise<number> {
    this.#writingSince = Date.now();
    try {
      return await this.client.write(bytes);
    } finally {
      this.#writingSince = 0;
    }
  }

  /** Aborted once it is closed. */
  get destroyed(): AbortSignal {
    return this.#destroyed.signal;
  }

  requestStarted(): void {
    this.busy++;
  }

  /** @returns Whether no request is left in flight. */
  requestEnded(): boolean {
    this.busy--;
    if (this.busy > 0) return false;
    this.idleSince = Date.now();
    this.firstByteAt = 0;
    return true;
  }

  /**
   * Whether a request on it, begun at `since` (`Date.now()`) or later, is still on its way to the
   * handler; or, if it has sent nothing yet, whether it opened at `openedSince`
   * (`performance.now()`) or later.
   */
  arriving(since: number, openedSince: number): boolean {
    if (this.busy > 0 || this.upgraded || this.endingSince) return false;
    if (!this.#sentAnything) return this.#openedAt >= openedSince;
    return this.firstByteAt >= since;
  }

  /** Whether a sweep at `now` should close it. */
  expired(now: number, limits: TunnelLimits): boolean {
    if (this.#writingSince && now - this.#writingSince >= limits.sendTimeoutMs) return true;
    if (this.endingSince) return now - this.endingSince >= LINGER_MS;
    if (this.closeFrameSentAt) return now - this.closeFrameSentAt >= CLOSE_HANDSHAKE_MS;
    if (this.busy > 0 || this.upgraded) return false;
    if (this.firstByteAt) return now - this.firstByteAt >= limits.headerTimeoutMs;
    return now - this.idleSince >= limits.idleTimeoutMs;
  }

  /** Notes that bytes arrived: the first of a next request starts its header timeout. */
  bytesArrived(): void {
    this.#sentAnything = true;
    if (this.busy === 0 && this.firstByteAt === 0) this.firstByteAt = Date.now();
  }

  /**
   * Copies client bytes to the internal server until the client stops sending.
   *
   * @param upstream The loopback connection.
   * @param read What the guard had read already, which goes first.
   * @param webSocketHead Where the head of a WebSocket upgrade at the start of `read` ends: what
   *   follows it waits for the handler's answer, and after a 101 is read as frames.
   */
  async pumpIn(upstream: Deno.TcpConn, read: Uint8Array, webSocketHead?: number): Promise<void> {
    let first = read;
    if (this.webSocket !== null && webSocketHead !== undefined) {
      // The client waits for the answer before its first frame: the rest is held until then.
      await writeAll(upstream, read.subarray(0, webSocketHead));
      first = read.subarray(webSocketHead);
      await this.webSocket.decided;
    }
    if (first.length > 0) await this.#passIn(upstream, first);
    const buffer = new Uint8Array(BUFFER_SIZE);
    for (;;) {
      const n = await this.client.read(buffer);
      if (n === null) break;
      if (this.endingSince) continue; // The server side is closing: nothing more goes there.
      this.bytesArrived();
      await this.#passIn(upstream, buffer.subarray(0, n));
    }
    if (!this.endingSince) await upstream.closeWrite();
  }

  /** Sends client bytes on, unless they hold a WebSocket frame the watch refuses. */
  async #passIn(upstream: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
    if (this.webSocket === null || this.webSocket.passClient(bytes)) {
      return await writeAll(upstream, bytes);
    }
    // The server's side closes (its handler sees the socket close) once its answer to the
    // handshake is through; the client's is read and dropped until it closes or the linger
    // ends, after the refusal (see pumpOut).
    this.endingSince ||= Date.now();
    this.webSocket.afterHandshake(() => closeQuietly(upstream));
  }

  /** Copies the internal server's bytes to the client until the server closes. */
  async pumpOut(upstream: Deno.TcpConn): Promise<void> {
    const buffer = new Uint8Array(BUFFER_SIZE);
    try {
      for (;;) {
        const n = await upstream.read(buffer);
        if (n === null) break;
        this.webSocket?.followServer(buffer.subarray(0, n));
        await writeAll(this.out, buffer.subarray(0, n));
        if (this.webSocket?.serverClosed) this.closeFrameSentAt ||= Date.now();
      }
    } catch (error) {
      if (!this.webSocket?.refused) throw error; // Else the guard closed the server's side.
    }
    // A server that closed before answering the handshake answered no WebSocket.
    this.webSocket?.decide(false);
    const refusal = this.webSocket?.refusalFrames();
    if (refusal !== undefined) await writeAll(this.out, refusal);
    this.endingSince ||= Date.now();
    await this.client.closeWrite();
  }

  /**
   * Closes gracefully: the internal server finishes, everything sent reaches the client. A
   * connection the guard serves itself is shut at once (it is only ended between requests)
   * and its serving loop reads what still comes until the client closes.
   */
  end(): void {
    if (this.closed || this.endingSince) return;
    this.endingSince = Date.now();
    if (!this.forwarding) this.client.closeWrite().catch(() => this.destroy());
    else if (this.upstream === null) this.destroy();
    else this.upstream.closeWrite().catch(() => this.destroy());
  }

  /** Closes both sockets now; pending reads and writes fail and the pumps stop. */
  destroy(): void {
    this.closed = true;
    this.webSocket?.decide(false);
    this.#destroyed.abort();
    closeQuietly(this.client);
    if (this.upstream) closeQuietly(this.upstream);
  }
}

class ConnectionGuard implements GuardedServer {
  readonly addr: Deno.NetAddr;
  readonly finished: Promise<void>;
  readonly #handler: GuardedHandler;
  readonly #listener: Deno.TcpListener;
  readonly #inner: Deno.HttpServer<Deno.NetAddr>;
  readonly #abortInner = new AbortController();
  readonly #limits: TunnelLimits;
  readonly #maxConnections: number;
  readonly #maxWebSocketMessageBytes: number;
  readonly #freshConnectionMs: number;
  readonly #tunnels = new Set<Tunnel>();
  /** Tunnels by the local port of their connection to the internal server. */
  readonly #byPort = new Map<number, Tunnel>();
  readonly #refused = new Set<Deno.Conn>();
  /** Work that close() waits for: tunnels and refusals. */
  readonly #tasks = new Set<Promise<void>>();
  readonly #sweep: ReturnType<typeof setInterval>;
  readonly #accepting: Promise<void>;
  #forwarded = 0;
  #listening = true;
  #draining = false;
  #innerFinished = false;
  #closing: Promise<void> | null = null;
  #resolveFinished!: () => void;

  constructor(options: GuardOptions, handler: GuardedHandler) {
    this.#handler = handler;
    this.#limits = {
      headerTimeoutMs: options.headerTimeoutMs ?? 10_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 30_000,
      sendTimeoutMs: options.sendTimeoutMs ?? SEND_TIMEOUT_MS,
    };
    this.#maxConnections = options.maxConnections ?? 512;
    this.#maxWebSocketMessageBytes = options.maxWebSocketMessageBytes ?? MAX_BODY_BYTES;
    this.#freshConnectionMs = options.freshConnectionMs ?? FRESH_CONNECTION_MS;
    // Throws AddrInUse before anything else is started.
    this.#listener = Deno.listen({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port,
      transport: "tcp",
    });
    this.addr = this.#listener.addr;
    try {
      this.#inner = Deno.serve({
        hostname: "127.0.0.1",
        port: 0,
        signal: this.#abortInner.signal,
        onListen() {},
      }, this.#handle);
    } catch (error) {
      this.#listener.close();
      throw error;
    }
    this.#inner.finished.then(
      () => this.#innerFinished = true,
      () => this.#innerFinished = true,
    );
    this.finished = new Promise((resolve) => this.#resolveFinished = resolve);
    const period = Math.max(
      10,
      Math.min(MAX_SWEEP_MS, Math.min(...Object.values(this.#limits)) / 4),
    );
    this.#sweep = setInterval(() => this.#closeExpired(), period);
    Deno.unrefTimer(this.#sweep);
    this.#accepting = this.#acceptLoop();
  }

  connections(): number {
    return this.#tunnels.size;
  }

  forwardedConnections(): number {
    return this.#forwarded;
  }

  requestsArriving(withinMs: number): number {
    const since = Date.now() - withinMs;
    const openedSince = performance.now() - Math.min(withinMs, this.#freshConnectionMs);
    let count = 0;
    for (const tunnel of this.#tunnels) if (tunnel.arriving(since, openedSince)) count++;
    return count;
  }

  stopAccepting(): void {
    if (!this.#listening) return;
    this.#listening = false;
    closeQuietly(this.#listener);
  }

  closeIdle(): void {
    this.#draining = true;
    for (const tunnel of this.#tunnels) {
      if (tunnel.busy === 0 && !tunnel.upgraded) tunnel.end();
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#closeAll();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #closeAll(): Promise<void> {
    this.stopAccepting();
    clearInterval(this.#sweep);
    await this.#accepting; // No tunnel starts after this.
    for (const tunnel of this.#tunnels) tunnel.destroy();
    for (const conn of this.#refused) closeQuietly(conn);
    // Not shutdown(): it waits for every handler, and in Deno 2.9 aborting after it throws
    // BadResource from the signal's listener. Every client is gone anyway.
    if (!this.#innerFinished) this.#abortInner.abort();
    await this.#inner.finished.catch(() => {});
    await Promise.all(this.#tasks);
    this.#resolveFinished();
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    const done = () => this.#tasks.delete(task);
    task.then(done, done);
  }

  async #acceptLoop(): Promise<void> {
    while (this.#listening) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        if (!this.#listening) return;
        // Out of descriptors or a connection reset before accept: try again shortly.
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      if (this.#tunnels.size >= this.#maxConnections) {
        // A flood must not hold descriptors either: past as many refusals again, no 503.
        if (this.#refused.size >= this.#maxConnections) closeQuietly(conn);
        else this.#track(this.#refuse(conn));
        continue;
      }
      const tunnel = new Tunnel(conn);
      this.#tunnels.add(tunnel);
      this.#track(this.#run(tunnel));
    }
  }

  /** Sends the 503, then reads what the client sent so that closing does not reset it. */
  async #refuse(conn: Deno.Conn): Promise<void> {
    this.#refused.add(conn);
    const timer = setTimeout(() => closeQuietly(conn), REFUSE_LINGER_MS);
    try {
      await writeAll(conn, BUSY_RESPONSE);
      await conn.closeWrite();
      while ((await conn.read(DISCARD)) !== null) {
        // Dropped.
      }
    } catch {
      // Reset by the client, or closed by the timer.
    } finally {
      clearTimeout(timer);
      closeQuietly(conn);
      this.#refused.delete(conn);
    }
  }

  async #run(tunnel: Tunnel): Promise<void> {
    let port = -1;
    try {
      tunnel.client.setNoDelay(true);
      const outcome = await serveHttp1(
        tunnel.out,
        (request, completed) => this.#dispatch(tunnel, request, completed),
        {
          bytesArrived: () => tunnel.bytesArrived(),
          ending: () => tunnel.endingSince > 0,
          closing: () => tunnel.endingSince ||= Date.now(),
          destroyed: tunnel.destroyed,
        },
      );
      if (outcome.kind === "done") return;
      tunnel.forwarding = true;
      if (outcome.webSocketHead !== undefined) {
        tunnel.webSocket = new WebSocketWatch(this.#maxWebSocketMessageBytes);
      }
      this.#forwarded++;
      if (tunnel.endingSince) return;
      const upstream = await Deno.connect({ hostname: "127.0.0.1", port: this.#inner.addr.port });
      tunnel.upstream = upstream;
      if (tunnel.closed) return;
      upstream.setNoDelay(true);
      port = upstream.localAddr.port;
      this.#byPort.set(port, tunnel);
      const pump = (copy: Promise<void>) => copy.catch(() => tunnel.destroy());
      await Promise.all([
        pump(tunnel.pumpIn(upstream, outcome.bytes, outcome.webSocketHead)),
        pump(tunnel.pumpOut(upstream)),
      ]);
    } catch {
      // The internal server is gone (closing).
    } finally {
      tunnel.destroy();
      this.#tunnels.delete(tunnel);
      if (this.#byPort.get(port) === tunnel) this.#byPort.delete(port);
    }
  }

  #closeExpired(): void {
    const now = Date.now();
    for (const tunnel of this.#tunnels) {
      if (tunnel.expired(now, this.#limits)) tunnel.destroy();
    }
  }

  #handle = (
    request: ServedRequest,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ): Response | Promise<Response> => {
    const tunnel = this.#byPort.get(info.remoteAddr.port);
    if (tunnel === undefined || info.remoteAddr.hostname !== "127.0.0.1") {
      return Response.json({
        error: {
          message: "Connect through the server's public address",
          type: "invalid_request_error",
          param: null,
          code: "not_through_guard",
        },
      }, { status: 403 });
    }
    return this.#dispatch(tunnel, request, info.completed);
  };

  /** Hands a request on one of its connections to the handler, counting it in flight. */
  async #dispatch(
    tunnel: Tunnel,
    request: ServedRequest,
    completed: Promise<void>,
  ): Promise<Response> {
    const webSocket = tunnel.webSocket;
    if (isWebSocketUpgrade(request) && webSocket?.awaitingHandshake !== true) {
      // Its frames could not be told apart from the bytes before them: see websocket_watch.ts.
      // Nothing more is read from the client; the server's side closes after this answer.
      tunnel.end();
      const message = "Open a WebSocket on a connection of its own, or after plain requests " +
        "only: this connection carried a request read another way (HTTP/1.0, Expect, a header " +
        "outside ASCII)";
      return Response.json(
        errorBody(new HttpError(400, message, { code: "websocket_connection_reused" })),
        { status: 400 },
      );
    }
    tunnel.requestStarted();
    // The request ends when its response is sent and the handler has returned: `completed`
    // settles inside Deno.upgradeWebSocket(), before the 101 tells us the socket is upgraded.
    let pending = 2;
    const ended = () => {
      if (--pending > 0 || !tunnel.requestEnded()) return;
      if (this.#draining && !tunnel.upgraded) tunnel.end();
    };
    completed.then(ended, ended);
    try {
      const response = await this.#handler(request, {
        remoteAddr: tunnel.client.remoteAddr,
        completed,
      });
      if (response.status === 101) tunnel.upgraded = true;
      webSocket?.decide(response.status === 101);
      return response;
    } finally {
      webSocket?.decide(false);
      ended();
    }
  }
}
