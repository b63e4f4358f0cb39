/**
 * WebSocket frames (RFC 6455) as the connection guard sees them on their way to `Deno.serve`:
 * their headers are followed, not their payloads, so that a message over the size limit is
 * refused from the header that declares it, before any of its payload is buffered (Deno holds a
 * whole message, up to 64 MiB, before the handler sees it), and a frame that breaks the protocol
 * gets a close frame that says so (Deno drops the connection without one). The guard also follows
 * the server's frames, to write its own close frame only between two of them.
 *
 * @module
 */

/** What the client's frames have shown so far. */
export type ClientFrameVerdict =
  | { kind: "ok" }
  /** A message (all its fragments) declares more payload than the limit. */
  | { kind: "too_large"; declared: number }
  /** A frame no server may take: the close code is 1002. */
  | { kind: "protocol_error"; reason: string }
  /** A text message that is not UTF-8: the close code is 1007. */
  | { kind: "invalid_text" };

/** Close codes of RFC 6455 the guard sends. */
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_INVALID_DATA = 1007;
export const CLOSE_MESSAGE_TOO_BIG = 1009;

const OK: ClientFrameVerdict = { kind: "ok" };
const FIN = 0x80;
const RSV = 0x70;
const OPCODE = 0x0f;
const MASKED = 0x80;
const CONTINUATION = 0x0;
const TEXT = 0x1;
const BINARY = 0x2;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;
/** The longest header: 2 bytes, 8 of extended length, 4 of mask. */
const MAX_HEADER = 14;

/** A frame's header, read whole. */
interface FrameHeader {
  fin: boolean;
  reserved: number;
  opcode: number;
  masked: boolean;
  /** The masking key, for a masked frame. */
  mask: Uint8Array | undefined;
  payload: number;
}

/** Called with each piece of a frame's payload: `offset` bytes of it came before. */
type PayloadSink = (piece: Uint8Array, offset: number, frameDone: boolean) => boolean;

/**
 * Follows a byte stream frame by frame: it buffers at most one header and counts down the
 * payload of the frame it is in.
 */
class FrameCursor {
  readonly #header = new Uint8Array(MAX_HEADER);
  #headerBytes = 0;
  #payloadLeft = 0;
  #payloadSeen = 0;

  /** Whether the bytes so far end exactly between two frames. */
  get atBoundary(): boolean {
    return this.#headerBytes === 0 && this.#payloadLeft === 0;
  }

  /**
   * Takes bytes, calling `onStart` with a header's first two bytes as soon as they are in (its
   * bits, opcode and short length), `onHeader` for each header that completes and `onPayload`
   * (if given) with the payload's pieces; stops at the first call that refuses (returns false).
   */
  feed(
    bytes: Uint8Array,
    onHeader: (header: FrameHeader) => boolean,
    onPayload?: PayloadSink,
    onStart?: (first: number, second: number) => boolean,
  ): void {
    let at = 0;
    while (at < bytes.length) {
      if (this.#payloadLeft > 0) {
        const take = Math.min(this.#payloadLeft, bytes.length - at);
        const offset = this.#payloadSeen;
        this.#payloadLeft -= take;
        this.#payloadSeen += take;
        at += take;
        const piece = bytes.subarray(at - take, at);
        if (onPayload && !onPayload(piece, offset, this.#payloadLeft === 0)) return;
        continue;
      }
      this.#header[this.#headerBytes++] = bytes[at++] as number;
      if (this.#headerBytes === 2 && onStart) {
        if (!onStart(this.#header[0] as number, this.#header[1] as number)) return;
      }
      const header = this.#readHeader();
      if (header === undefined) continue;
      this.#headerBytes = 0;
      this.#payloadLeft = header.payload;
      this.#payloadSeen = 0;
      if (!onHeader(header)) return;
      if (header.payload === 0 && onPayload && !onPayload(new Uint8Array(), 0, true)) return;
    }
  }

  /** The header buffered so far, once whole. */
  #readHeader(): FrameHeader | undefined {
    const have = this.#headerBytes;
    if (have < 2) return undefined;
    const first = this.#header[0] as number;
    const second = this.#header[1] as number;
    const shortLength = second & 0x7f;
    const lengthBytes = shortLength === 126 ? 2 : shortLength === 127 ? 8 : 0;
    const masked = (second & MASKED) !== 0;
    if (have < 2 + lengthBytes + (masked ? 4 : 0)) return undefined;
    let payload = shortLength;
    if (lengthBytes > 0) {
      payload = 0;
      // Up to 2^64 - 1: a Number keeps the magnitude, which is all a limit needs.
      for (let i = 0; i < lengthBytes; i++) {
        payload = payload * 256 + (this.#header[2 + i] as number);
      }
    }
    const maskAt = 2 + lengthBytes;
    return {
      fin: (first & FIN) !== 0,
      reserved: first & RSV,
      opcode: first & OPCODE,
      masked,
      mask: masked ? this.#header.slice(maskAt, maskAt + 4) : undefined,
      payload,
    };
  }
}

/**
 * The client's side of a WebSocket: masked frames, no extensions (the server negotiates none),
 * messages of at most `limit` bytes of payload, text messages in UTF-8.
 *
 * @example
 * ```ts
 * const reader = new ClientFrameReader(8 * 1024 * 1024);
 * // A masked text frame header declaring 9 MiB (127: 8 bytes of length follow).
 * const header = new Uint8Array([0x81, 0xff, 0, 0, 0, 0, 0, 0x90, 0, 0, 1, 2, 3, 4]);
 * reader.feed(header); // { kind: "too_large", declared: 9437184 }
 * ```
 */
export class ClientFrameReader {
  readonly #cursor = new FrameCursor();
  readonly #limit: number;
  /** Payload of the message in progress; -1 between messages. */
  #messageBytes = -1;
  #verdict: ClientFrameVerdict = OK;
  /** The frame whose payload is coming. */
  #frame: FrameHeader | undefined;
  /** Decodes the text message in progress, to find bytes that are not UTF-8. */
  #text: TextDecoder | undefined;
  /** The payload of the close frame coming, unmasked. */
  #closing: number[] | undefined;

  /** @param limit The most payload bytes one message may carry. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /**
   * Follows more of the client's bytes.
   *
   * @returns `ok` while the frames are acceptable; else the first problem (and from then on).
   */
  feed(bytes: Uint8Array): ClientFrameVerdict {
    if (this.#verdict.kind !== "ok") return this.#verdict;
    const judged = (verdict: ClientFrameVerdict) => {
      this.#verdict = verdict;
      return verdict.kind === "ok";
    };
    this.#cursor.feed(
      bytes,
      (header) => {
        this.#frame = header;
        return judged(this.#judge(header));
      },
      (piece, offset, frameDone) => judged(this.#readPayload(piece, offset, frameDone)),
      (first, second) => judged(this.#judgeStart(first, second)),
    );
    return this.#verdict;
  }

  /** Checks a piece of a text message's or a close frame's payload. */
  #readPayload(piece: Uint8Array, offset: number, frameDone: boolean): ClientFrameVerdict {
    const frame = this.#frame;
    if (frame === undefined) return OK;
    if (frame.opcode === CLOSE) return this.#readClose(unmasked(piece, frame, offset), frameDone);
    const text = this.#text;
    if (text === undefined || frame.opcode > CLOSE) return OK;
    const plain = unmasked(piece, frame, offset);
    try {
      text.decode(plain, { stream: true });
      if (frameDone && frame.fin) {
        text.decode(); // A sequence cut off at the message's end throws here.
        this.#text = undefined;
      }
    } catch {
      return { kind: "invalid_text" };
    }
    return OK;
  }

  /** Checks a close frame's payload: none, or a valid code and a UTF-8 reason. */
  #readClose(plain: Uint8Array, frameDone: boolean): ClientFrameVerdict {
    const closing = this.#closing ??= [];
    closing.push(...plain);
    if (!frameDone) return OK;
    this.#closing = undefined;
    if (closing.length === 0) return OK; // (one byte was refused from the header)
    const code = (closing[0] as number) * 256 + (closing[1] as number);
    if (!validCloseCode(code)) {
      return protocolError(`${code} is not a close code a client may send`);
    }
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(closing.slice(2)));
    } catch {
      return { kind: "invalid_text" };
    }
    return OK;
  }

  /**
   * Checks what a header's first two bytes tell, before the rest of it is in: the guard has
   * passed them on by then, and Deno closes at once, without a word, on a bad bit or opcode.
   */
  #judgeStart(first: number, second: number): ClientFrameVerdict {
    if ((second & MASKED) === 0) return protocolError("A client's frames must be masked");
    if ((first & RSV) !== 0) {
      return protocolError("Reserved bits are set, and no extension was agreed");
    }
    const opcode = first & OPCODE;
    const fin = (first & FIN) !== 0;
    if (opcode === CLOSE || opcode === PING || opcode === PONG) {
      if (!fin || (second & 0x7f) > 125) {
        return protocolError("A control frame must be whole and at most 125 bytes");
      }
      return OK;
    }
    if (opcode === TEXT || opcode === BINARY) {
      if (this.#messageBytes >= 0) {
        return protocolError("A new message began before the last one's final fragment");
      }
    } else if (opcode === CONTINUATION) {
      if (this.#messageBytes < 0) return protocolError("A continuation frame began no message");
    } else {
      return protocolError(`Opcode ${opcode} is reserved`);
    }
    return OK;
  }

  /** Counts a whole header's payload into its message (its first bytes passed already). */
  #judge(header: FrameHeader): ClientFrameVerdict {
    const { opcode, fin, payload } = header;
    if (opcode === CLOSE && payload === 1) {
      return protocolError("A close frame's payload must start with a code");
    }
    if (opcode >= CLOSE) return OK;
    if (opcode !== CONTINUATION) {
      this.#messageBytes = 0;
      this.#text = opcode === TEXT ? new TextDecoder("utf-8", { fatal: true }) : undefined;
    }
    this.#messageBytes += payload;
    if (this.#messageBytes > this.#limit) {
      return { kind: "too_large", declared: this.#messageBytes };
    }
    if (fin) this.#messageBytes = -1;
    return OK;
  }
}

function protocolError(reason: string): ClientFrameVerdict {
  return { kind: "protocol_error", reason };
}

/** A piece of a masked frame's payload, unmasked; `offset` bytes of the payload came before. */
function unmasked(piece: Uint8Array, frame: FrameHeader, offset: number): Uint8Array {
  const mask = frame.mask as Uint8Array;
  const plain = new Uint8Array(piece.length);
  for (let i = 0; i < piece.length; i++) {
    plain[i] = (piece[i] as number) ^ (mask[(offset + i) & 3] as number);
  }
  return plain;
}

/** Close codes a peer may send (RFC 6455, 7.4): the defined ones, and 3000-4999. */
function validCloseCode(code: number): boolean {
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && ![1004, 1005, 1006].includes(code);
}

/** The server's side of a WebSocket, followed only to know where its frames end. */
export class ServerFrameTracker {
  readonly #cursor = new FrameCursor();
  #closed = false;

  /** Follows more of the server's bytes. */
  feed(bytes: Uint8Array): void {
    this.#cursor.feed(bytes, (header) => {
      if (header.opcode === CLOSE) this.#closed = true;
      return true;
    });
  }

  /** Whether the server has sent its close frame (no frame may follow it). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Whether the server's bytes so far end between two frames. */
  get atBoundary(): boolean {
    return this.#cursor.atBoundary;
  }
}

/**
 * A server's unmasked frame holding all of `payload`.
 *
 * @param opcode The frame's opcode (text 1, close 8).
 * @param payload Its payload.
 * @returns The frame's bytes.
 */
function serverFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const extended = payload.length < 126 ? 0 : payload.length < 65536 ? 2 : 8;
  const frame = new Uint8Array(2 + extended + payload.length);
  frame[0] = FIN | opcode;
  if (extended === 0) frame[1] = payload.length;
  else {
    frame[1] = extended === 2 ? 126 : 127;
    const view = new DataView(frame.buffer);
    if (extended === 2) view.setUint16(2, payload.length);
    else view.setBigUint64(2, BigInt(payload.length));
  }
  frame.set(payload, 2 + extended);
  return frame;
}

/**
 * A server's text frame.
 *
 * @param text The message.
 * @returns The frame's bytes.
 */
export function textFrame(text: string): Uint8Array {
  return serverFrame(TEXT, new TextEncoder().encode(text));
}

/** The most bytes a WebSocket close frame's reason may take (RFC 6455: 125 less the code). */
const MAX_CLOSE_REASON_BYTES = 123;

/**
 * A close reason within {@link MAX_CLOSE_REASON_BYTES} bytes of UTF-8, cut between characters:
 * a longer one makes `WebSocket.close` throw, and a model name in CJK characters had ended the
 * process that way.
 *
 * @param message The error's message.
 * @returns Its beginning, whole characters only.
 */
export function closeReason(message: string): string {
  const encoder = new TextEncoder();
  let reason = "";
  let bytes = 0;
  for (const char of message) {
    bytes += encoder.encode(char).length;
    if (bytes > MAX_CLOSE_REASON_BYTES) break;
    reason += char;
  }
  return reason;
}

/**
 * A server's close frame.
 *
 * @param code The close code.
 * @param message Why: its beginning, as {@link closeReason} cuts it, is the reason.
 * @returns The frame's bytes.
 */
export function closeFrame(code: number, message: string): Uint8Array {
  const text = new TextEncoder().encode(closeReason(message));
  const payload = new Uint8Array(2 + text.length);
  new DataView(payload.buffer).setUint16(0, code);
  payload.set(text, 2);
  return serverFrame(CLOSE, payload);
}
