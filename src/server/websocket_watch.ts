/**
 * The connection guard's watch over a connection whose first request for `Deno.serve` asks for a
 * WebSocket. The client sends nothing more until the server answers (RFC 6455, 4.1), so the guard
 * holds what follows the request's head until the handler has answered; after a 101 every client
 * byte is a frame, and the frames are followed from their first (`websocket_frames.ts`). A message
 * declaring more than the limit, or a frame that breaks the protocol, stops the forwarding at its
 * header, and a text message that is not UTF-8 where it stops being so: the server's side is
 * closed (its handler sees the socket close) and the client gets an error frame and a close frame
 * (1009, 1002 or 1007), once the server's own frames end whole.
 *
 * @module
 */

import {
  ClientFrameReader,
  CLOSE_INVALID_DATA,
  CLOSE_MESSAGE_TOO_BIG,
  CLOSE_PROTOCOL_ERROR,
  closeFrame,
  ServerFrameTracker,
  textFrame,
} from "./websocket_frames.ts";
import { concatBytes } from "../util/bytes.ts";
import { errorBody, HttpError } from "./http_error.ts";

/** The blank line that ends a response head. */
const HEAD_END = [13, 10, 13, 10];

/** One connection's WebSocket handshake and frames, as the guard forwards them. */
export class WebSocketWatch {
  readonly #limit: number;
  readonly #decided: Promise<boolean>;
  #decide!: (upgraded: boolean) => void;
  #pending = true;
  #client: ClientFrameReader | undefined;
  readonly #server = new ServerFrameTracker();
  /** Bytes of the response head's blank line matched so far; 4 once the frames begin. */
  #headEndMatched = 0;
  #refusal: Uint8Array | undefined;
  /** Called once the server's answer to the handshake has gone through. */
  #afterHandshake: (() => void)[] = [];

  /** @param limit The most payload bytes one client message may carry. */
  constructor(limit: number) {
    this.#limit = limit;
    this.#decided = new Promise((resolve) => this.#decide = resolve);
  }

  /** Resolves once the handshake is settled: whether the server answered 101. */
  get decided(): Promise<boolean> {
    return this.#decided;
  }

  /** Whether the handler has yet to answer the request that asked for the WebSocket. */
  get awaitingHandshake(): boolean {
    return this.#pending;
  }

  /** Whether the client's frames were refused (the server's side is being closed). */
  get refused(): boolean {
    return this.#refusal !== undefined;
  }

  /**
   * Settles the handshake; only the first call counts.
   *
   * @param upgraded Whether the server answered 101.
   */
  decide(upgraded: boolean): void {
    if (!this.#pending) return;
    this.#pending = false;
    if (upgraded) this.#client = new ClientFrameReader(this.#limit);
    this.#decide(upgraded);
  }

  /**
   * Follows client bytes that come after the handshake.
   *
   * @returns Whether they may go on to the server; false once the frames are refused.
   */
  passClient(bytes: Uint8Array): boolean {
    if (this.#refusal !== undefined) return false;
    const verdict = this.#client?.feed(bytes);
    if (verdict === undefined || verdict.kind === "ok") return true;
    const [closeCode, code, message] = verdict.kind === "too_large"
      ? [
        CLOSE_MESSAGE_TOO_BIG,
        "frame_too_large",
        `WebSocket messages may be at most ${this.#limit} bytes; this one declares ${
          bytesOf(verdict.declared)
        }`,
      ]
      : verdict.kind === "invalid_text"
      ? [CLOSE_INVALID_DATA, "websocket_invalid_utf8", "A text message is not valid UTF-8"]
      : [CLOSE_PROTOCOL_ERROR, "websocket_protocol_error", verdict.reason];
    const error = errorBody(new HttpError(400, message, { code }));
    this.#refusal = concatBytes([textFrame(JSON.stringify(error)), closeFrame(closeCode, message)]);
    return false;
  }

  /**
   * Runs `then` once the server's answer to the handshake has gone through (at once if it has):
   * a client that sent a refused frame with its handshake still gets the 101 before the refusal.
   */
  afterHandshake(then: () => void): void {
    if (this.#headEndMatched === HEAD_END.length) then();
    else this.#afterHandshake.push(then);
  }

  /** Follows the server's bytes as they go to the client. */
  followServer(bytes: Uint8Array): void {
    let at = 0;
    while (this.#headEndMatched < HEAD_END.length && at < bytes.length) {
      const byte = bytes[at++];
      if (byte === HEAD_END[this.#headEndMatched]) this.#headEndMatched++;
      else this.#headEndMatched = byte === HEAD_END[0] ? 1 : 0;
      if (this.#headEndMatched === HEAD_END.length) {
        for (const then of this.#afterHandshake.splice(0)) then();
      }
    }
    if (at < bytes.length) this.#server.feed(bytes.subarray(at));
  }

  /** Whether the server has sent its close frame (the client is to answer with its own). */
  get serverClosed(): boolean {
    return this.#server.closed;
  }

  /**
   * The frames that tell the client why its frames were refused: none when nothing was refused,
   * when the server's bytes so far end inside a frame, or when the server has sent its close
   * frame (nothing may follow it); the client then sees the connection close.
   */
  refusalFrames(): Uint8Array | undefined {
    if (this.#refusal === undefined || this.#headEndMatched < HEAD_END.length) return undefined;
    return this.#server.atBoundary && !this.#server.closed ? this.#refusal : undefined;
  }
}

/** A byte count as a message shows it: exact up to 2^53, beyond that a bound. */
function bytesOf(count: number): string {
  return Number.isSafeInteger(count) ? String(count) : `more than ${Number.MAX_SAFE_INTEGER}`;
}
