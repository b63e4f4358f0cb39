import { deepEqual, equal, ok } from "node:assert/strict";

import {
  ClientFrameReader,
  closeFrame,
  ServerFrameTracker,
  textFrame,
} from "../../src/server/websocket_frames.ts";
import { WebSocketWatch } from "../../src/server/websocket_watch.ts";
import { startServer, waitFor } from "./harness.ts";

const MiB = 1024 * 1024;
const MASK = [1, 2, 3, 4];

/** A client frame's header: masked, with the given opcode, final bit and declared length. */
function clientHeader(opcode: number, length: number, fin = true): Uint8Array {
  const first = (fin ? 0x80 : 0) | opcode;
  if (length < 126) return new Uint8Array([first, 0x80 | length, ...MASK]);
  if (length < 65536) {
    return new Uint8Array([first, 0x80 | 126, length >> 8, length & 255, ...MASK]);
  }
  const bytes = new Uint8Array(14);
  bytes[0] = first;
  bytes[1] = 0x80 | 127;
  new DataView(bytes.buffer).setBigUint64(2, BigInt(length));
  bytes.set(MASK, 10);
  return bytes;
}

/** A whole masked client frame carrying `content`. */
function clientFrame(opcode: number, content: string | Uint8Array, fin = true): Uint8Array {
  const payload = typeof content === "string" ? new TextEncoder().encode(content) : content;
  const header = clientHeader(opcode, payload.length, fin);
  const frame = new Uint8Array(header.length + payload.length);
  frame.set(header);
  payload.forEach((byte, i) => frame[header.length + i] = byte ^ (MASK[i % 4] as number));
  return frame;
}

Deno.test("WebSocket frames: a message over the limit is refused from its header, across fragments and split reads", () => {
  const reader = new ClientFrameReader(1000);
  deepEqual(reader.feed(clientFrame(1, "x".repeat(600), false)), { kind: "ok" });
  deepEqual(reader.feed(clientFrame(9, "ping")), { kind: "ok" }); // control frames between
  const header = clientHeader(0, 500);
  deepEqual(reader.feed(header.subarray(0, 3)), { kind: "ok" });
  deepEqual(reader.feed(header.subarray(3)), { kind: "too_large", declared: 1100 });
  // A 64-bit length beyond 2^53 still reads as larger than any limit.
  const huge = clientHeader(2, 2 * MiB);
  huge.set([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 2);
  equal(new ClientFrameReader(8 * MiB).feed(huge).kind, "too_large");
  // Many messages within the limit pass, each counted alone.
  const many = new ClientFrameReader(1000);
  for (let i = 0; i < 5; i++) deepEqual(many.feed(clientFrame(1, "y".repeat(900))), { kind: "ok" });
});

Deno.test("WebSocket frames: protocol errors are named", () => {
  const reasons = (bytes: Uint8Array) => {
    const verdict = new ClientFrameReader(MiB).feed(bytes);
    return verdict.kind === "protocol_error" ? verdict.reason : verdict.kind;
  };
  ok(/masked/.test(reasons(new Uint8Array([0x81, 0x02, 0x68, 0x69]))));
  ok(/Reserved bits/.test(reasons(new Uint8Array([0xc1, 0x80, ...MASK]))));
  ok(/Opcode 3/.test(reasons(clientFrame(3, ""))));
  ok(/Opcode 11/.test(reasons(new Uint8Array([0x8b, 0x80])))); // judged from two bytes
  ok(/start with a code/.test(reasons(clientFrame(8, new Uint8Array([3])))));
  ok(/1005 is not a close code/.test(reasons(clientFrame(8, new Uint8Array([0x03, 0xed])))));
  equal(reasons(clientFrame(8, new Uint8Array([0x03, 0xe8, 0x6f, 0x6b]))), "ok");
  equal(reasons(clientFrame(8, new Uint8Array([0x03, 0xe8, 0xff]))), "invalid_text");
  ok(/control frame/.test(reasons(clientFrame(9, "x", false))));
  ok(/control frame/.test(reasons(clientHeader(8, 200))));
  ok(/continuation/.test(reasons(clientFrame(0, "x"))));
  ok(
    /new message/.test(
      reasons(new Uint8Array([...clientFrame(1, "a", false), ...clientFrame(1, "b")])),
    ),
  );
});

Deno.test("WebSocket frames: text messages must be UTF-8, also across fragments and reads", () => {
  const euro = new TextEncoder().encode("€"); // 3 bytes
  const fine = new ClientFrameReader(MiB);
  const split = [
    clientFrame(1, new Uint8Array([0x61, euro[0] as number]), false),
    clientFrame(10, new Uint8Array([0xff])), // a pong's payload is not text
    clientFrame(0, euro.subarray(1)),
  ];
  for (const frame of split) {
    deepEqual(fine.feed(frame.subarray(0, 7)), { kind: "ok" });
    deepEqual(fine.feed(frame.subarray(7)), { kind: "ok" });
  }
  deepEqual(fine.feed(clientFrame(2, new Uint8Array([0xff, 0xfe]))), { kind: "ok" }, "binary");
  deepEqual(fine.feed(clientFrame(1, "")), { kind: "ok" });
  const invalid = (frames: Uint8Array[]) => {
    const reader = new ClientFrameReader(MiB);
    return frames.map((frame) => reader.feed(frame).kind).at(-1);
  };
  equal(invalid([clientFrame(1, new Uint8Array([0x68, 0xc3, 0x28]))]), "invalid_text");
  equal(invalid([clientFrame(1, euro.subarray(0, 2))]), "invalid_text", "cut off at the end");
  equal(
    invalid([clientFrame(1, euro.subarray(0, 2), false), clientFrame(0, new Uint8Array())]),
    "invalid_text",
    "cut off by an empty final fragment",
  );
});

Deno.test("WebSocket frames: the server's frames encode their lengths, and the tracker finds their ends", () => {
  for (const size of [0, 125, 126, 65535, 65536]) {
    const frame = textFrame("z".repeat(size));
    const tracker = new ServerFrameTracker();
    tracker.feed(frame.subarray(0, frame.length - 1));
    equal(tracker.atBoundary, false);
    tracker.feed(frame.subarray(frame.length - 1));
    ok(tracker.atBoundary, `a frame of ${size}`);
  }
  const close = closeFrame(1009, "模".repeat(60));
  equal(close[0], 0x88);
  equal(close[1], 2 + 123); // 41 characters of 3 bytes: the reason is cut between characters
  equal((close[2] as number) * 256 + (close[3] as number), 1009);
});

Deno.test("WebSocket watch: client frames pass only after a 101; a refusal waits for the server's frame to end", async () => {
  const watch = new WebSocketWatch(100);
  ok(watch.awaitingHandshake);
  watch.decide(true);
  equal(await watch.decided, true);
  watch.followServer(new TextEncoder().encode("HTTP/1.1 101 Switching Protocols\r\nA: b\r\n"));
  watch.followServer(new TextEncoder().encode("\r\n"));
  const text = textFrame("0123456789");
  watch.followServer(text.subarray(0, 5));
  ok(watch.passClient(clientFrame(1, "hello")));
  equal(watch.passClient(clientHeader(1, 101)), false);
  ok(watch.refused);
  equal(watch.refusalFrames(), undefined, "the server is inside a frame");
  watch.followServer(text.subarray(5));
  const refusal = new TextDecoder().decode(watch.refusalFrames());
  ok(refusal.includes('"code":"frame_too_large"'), refusal);
  equal(watch.passClient(clientFrame(1, "more")), false);

  // Nothing follows the server's close frame: a refusal after it only closes the connection.
  const closed = new WebSocketWatch(100);
  closed.decide(true);
  closed.followServer(new TextEncoder().encode("HTTP/1.1 101 Switching Protocols\r\n\r\n"));
  closed.followServer(closeFrame(1000, "done"));
  equal(closed.passClient(new Uint8Array([0x81, 0x02, 0x68, 0x69])), false);
  equal(closed.refusalFrames(), undefined);
  // A declared length past 2^53 is shown as a bound, not a rounded number.
  const huge = new WebSocketWatch(100);
  huge.decide(true);
  huge.followServer(new TextEncoder().encode("HTTP/1.1 101 Switching Protocols\r\n\r\n"));
  const header = clientHeader(2, 2 * MiB);
  header.set([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 2);
  huge.passClient(header);
  ok(new TextDecoder().decode(huge.refusalFrames()).includes("more than 9007199254740991"));

  const refusedHandshake = new WebSocketWatch(100);
  refusedHandshake.decide(false);
  refusedHandshake.decide(true); // only the first call counts
  equal(await refusedHandshake.decided, false);
  ok(refusedHandshake.passClient(clientHeader(1, 10_000)), "plain HTTP after a refused upgrade");
});

interface ServerFrame {
  opcode: number;
  payload: Uint8Array;
}

/** The server's frames in `bytes` (unmasked; lengths under 64 KiB), whole ones only. */
function serverFrames(bytes: Uint8Array): ServerFrame[] {
  const frames: ServerFrame[] = [];
  let at = 0;
  while (at + 2 <= bytes.length) {
    let length = (bytes[at + 1] as number) & 0x7f;
    let skip = 2;
    if (length === 126) {
      length = (bytes[at + 2] as number) * 256 + (bytes[at + 3] as number);
      skip = 4;
    }
    if (at + skip + length > bytes.length) break;
    frames.push({
      opcode: (bytes[at] as number) & 0x0f,
      payload: bytes.subarray(at + skip, at + skip + length),
    });
    at += skip + length;
  }
  return frames;
}

/**
 * A raw WebSocket client: `before` and the handshake, then `frames` (a number is a pause of that
 * many ms), after the handshake's answer or, `pipelined`, in the same write; reads until the
 * server's close frame or the end of the connection.
 */
async function rawSession(
  url: string,
  frames: (Uint8Array | number)[],
  { before = "", pipelined = false } = {},
) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(url).port) });
  const started = performance.now();
  const timer = setTimeout(() => conn.close(), 10_000);
  const received: number[] = [];
  const text = () => new TextDecoder().decode(new Uint8Array(received));
  const head = () => {
    const at = text().lastIndexOf("HTTP/1.1 ");
    const end = text().indexOf("\r\n\r\n", at);
    return at < 0 || end < 0 ? undefined : { upgraded: text().startsWith("HTTP/1.1 101", at), end };
  };
  const framesSoFar = () => {
    const found = head();
    if (found === undefined || !found.upgraded) return [];
    return serverFrames(new Uint8Array(received).subarray(found.end + 4));
  };
  const buffer = new Uint8Array(65536);
  const readMore = async () => {
    const n = await conn.read(buffer).catch(() => null);
    if (n !== null) received.push(...buffer.subarray(0, n));
    return n !== null;
  };
  try {
    const handshake = new TextEncoder().encode(
      before +
        "GET /ws/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n" +
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        "Sec-WebSocket-Version: 13\r\n\r\n",
    );
    const together = pipelined ? frames.filter((f) => typeof f !== "number") as Uint8Array[] : [];
    await conn.write(new Uint8Array([...handshake, ...together.flatMap((f) => [...f])]));
    while (head() === undefined && await readMore()) {
      // The handshake's answer.
    }
    for (const frame of pipelined ? [] : frames) {
      if (typeof frame === "number") await new Promise((r) => setTimeout(r, frame));
      else await conn.write(frame);
    }
    while (!framesSoFar().some((frame) => frame.opcode === 8) && await readMore()) {
      // Up to the close frame.
    }
    return { text: text(), frames: framesSoFar(), ms: performance.now() - started };
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer.
    }
  }
}

function closeCodeOf(frame: ServerFrame | undefined): number {
  return frame === undefined
    ? 0
    : (frame.payload[0] as number) * 256 + (frame.payload[1] as number);
}

Deno.test("WebSocket guard: a header declaring 60 MiB is refused at once with an error frame and close 1009", async () => {
  await using server = await startServer();
  // Only the header: without the guard's reading, Deno waits for the 60 MiB to arrive.
  const session = await rawSession(server.url, [clientHeader(1, 60 * MiB)]);
  ok(session.text.startsWith("HTTP/1.1 101"), session.text);
  equal(session.frames.length, 2, JSON.stringify(session.frames));
  const error = JSON.parse(new TextDecoder().decode(session.frames[0]?.payload)).error;
  equal(error.code, "frame_too_large");
  ok(error.message.includes(String(60 * MiB)), error.message);
  equal(session.frames[1]?.opcode, 8);
  equal(closeCodeOf(session.frames[1]), 1009);
  ok(session.ms < 5_000, `${session.ms} ms`);
  equal((await fetch(`${server.url}/health`)).status, 200);
});

Deno.test("WebSocket guard: an unmasked or reserved frame gets a close 1002 that names it, text not in UTF-8 a 1007", async () => {
  await using server = await startServer();
  const unmasked = await rawSession(server.url, [new Uint8Array([0x81, 0x02, 0x68, 0x69])]);
  equal(closeCodeOf(unmasked.frames.at(-1)), 1002, JSON.stringify(unmasked.frames));
  ok(new TextDecoder().decode(unmasked.frames[0]?.payload).includes("masked"));
  const reserved = await rawSession(server.url, [clientFrame(5, "")]);
  equal(closeCodeOf(reserved.frames.at(-1)), 1002);
  ok(new TextDecoder().decode(reserved.frames[0]?.payload).includes("Opcode 5"));
  const latin1 = await rawSession(server.url, [clientFrame(1, new Uint8Array([0x7b, 0xe9, 0x7d]))]);
  equal(closeCodeOf(latin1.frames.at(-1)), 1007);
  ok(new TextDecoder().decode(latin1.frames[0]?.payload).includes("websocket_invalid_utf8"));
});

Deno.test("WebSocket guard: a bad frame sent with the handshake, or a bad header split over writes, still gets the 101 and a close 1002", async () => {
  await using server = await startServer();
  const unmasked = new Uint8Array([0x81, 0x02, 0x68, 0x69]);
  const pipelined = await rawSession(server.url, [unmasked], { pipelined: true });
  ok(pipelined.text.startsWith("HTTP/1.1 101"), pipelined.text.slice(0, 60));
  equal(closeCodeOf(pipelined.frames.at(-1)), 1002, JSON.stringify(pipelined.frames));
  // The first two bytes (a reserved opcode) are judged before the mask arrives: Deno closed
  // bare on them once they had been passed on.
  const reserved = clientFrame(0x0d, "x");
  const split = await rawSession(server.url, [reserved.subarray(0, 2), 200, reserved.subarray(2)]);
  equal(closeCodeOf(split.frames.at(-1)), 1002, JSON.stringify(split.frames));
  ok(new TextDecoder().decode(split.frames[0]?.payload).includes("Opcode 13"));
  // A close frame whose payload is one byte, or whose reason is not UTF-8.
  const short = await rawSession(server.url, [clientFrame(8, new Uint8Array([3]))]);
  equal(closeCodeOf(short.frames.at(-1)), 1002);
  const latin1 = await rawSession(server.url, [clientFrame(8, new Uint8Array([3, 0xe8, 0xff]))]);
  equal(closeCodeOf(latin1.frames.at(-1)), 1007);
});

Deno.test("WebSocket guard: frames within the limit pass, fragmented too", async () => {
  await using server = await startServer();
  const body = JSON.stringify({ prompt: "x", max_tokens: 3, grammar: 'root ::= "abc"' });
  const session = await rawSession(server.url, [
    clientFrame(1, body.slice(0, 10), false),
    clientFrame(9, "ping"),
    clientFrame(0, body.slice(10)),
  ]);
  const texts = session.frames.filter((f) => f.opcode === 1).map((f) =>
    new TextDecoder().decode(f.payload)
  );
  equal(texts.slice(0, -1).join(""), "abc");
  equal(JSON.parse(texts.at(-1) as string).done, true);
  equal(closeCodeOf(session.frames.at(-1)), 1000);
});

Deno.test("WebSocket guard: an upgrade after a request read by Deno.serve on the same connection is a 400", async () => {
  await using server = await startServer();
  // A byte outside ASCII in a header: the guard hands the connection to Deno.serve, and where
  // the upgrade's frames would start in the bytes it forwards is not known.
  const json = JSON.stringify({ prompt: "x", max_tokens: 1 });
  const before = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
    `Content-Type: application/json\r\nX-Name: caf\u00e9\r\nContent-Length: ${json.length}\r\n\r\n` +
    json;
  const session = await rawSession(server.url, [], { before });
  ok(session.text.startsWith("HTTP/1.1 200"), session.text.slice(0, 100));
  ok(/HTTP\/1.1 400[^]*websocket_connection_reused/.test(session.text), session.text);
  equal(session.frames.length, 0);
});

Deno.test("WebSocket: a second request while the first generates is an error frame and close 1008", async () => {
  await using server = await startServer();
  const url = server.url.replace("http", "ws") + "/ws/generate";
  const run = await new Promise<{ frames: string[]; code: number }>((resolve, reject) => {
    const ws = new WebSocket(url);
    const frames: string[] = [];
    ws.onopen = () =>
      ws.send(JSON.stringify({ prompt: "go on", max_tokens: 400, ignore_eos: true }));
    ws.onmessage = (event) => {
      frames.push(String(event.data));
      if (frames.length === 2) ws.send(JSON.stringify({ prompt: "another", max_tokens: 4 }));
    };
    ws.onclose = (event) => resolve({ frames, code: event.code });
    setTimeout(() => reject(new Error("timed out")), 20_000);
  });
  equal(run.code, 1008);
  equal(JSON.parse(run.frames.at(-1) as string).error.code, "request_in_progress");
  const scheduler = server.ctx.registry.loaded().get("tiny-f32")?.scheduler;
  for (let i = 0; i < 50 && scheduler?.stats().busySlots; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  equal(scheduler?.stats().busySlots, 0);
});

/**
 * Opens a raw WebSocket to /ws/generate, sends `frames`, reads up to the server's close frame and
 * then never answers it.
 *
 * @returns How long after the close frame the server closed the connection (Infinity if it had
 *   not within 8 s).
 */
async function silentAfterClose(url: string, frames: Uint8Array[]): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(url).port) });
  try {
    await conn.write(new TextEncoder().encode(
      "GET /ws/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n" +
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        "Sec-WebSocket-Version: 13\r\n\r\n",
    ));
    for (const frame of frames) await conn.write(frame);
    const received: number[] = [];
    const buffer = new Uint8Array(65536);
    let closeFrameAt = 0;
    const deadline = performance.now() + 8_000;
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0) return Infinity;
      const n = await Promise.race([
        conn.read(buffer).catch(() => null),
        new Promise<"late">((resolve) => setTimeout(() => resolve("late"), left)),
      ]);
      if (n === "late") return Infinity;
      if (n === null) return performance.now() - closeFrameAt;
      received.push(...buffer.subarray(0, n));
      const text = new TextDecoder().decode(new Uint8Array(received));
      const headEnd = text.indexOf("\r\n\r\n");
      if (closeFrameAt === 0 && headEnd >= 0) {
        const frames = serverFrames(new Uint8Array(received).subarray(headEnd + 4));
        if (frames.some((frame) => frame.opcode === 8)) closeFrameAt = performance.now();
      }
    }
  } finally {
    try {
      conn.close();
    } catch {
      // Closed by the server.
    }
  }
}

Deno.test("WebSocket guard: a client that never answers the server's close frame loses its connection after 2 s", async () => {
  // A done generation, and a socket that never sent its request (the first-frame timeout).
  await using server = await startServer({ settings: { bodyTimeoutMs: 300 } });
  const request = clientFrame(1, JSON.stringify({ prompt: "x", max_tokens: 1 }));
  const [done, silent] = await Promise.all([
    silentAfterClose(server.url, [request]),
    silentAfterClose(server.url, []),
  ]);
  ok(done >= 1_500 && done < 4_000, `closed ${Math.round(done)} ms after the close frame`);
  ok(silent >= 1_500 && silent < 4_000, `closed ${Math.round(silent)} ms after the close frame`);
  ok(await waitFor(() => server.ctx.activity.count === 0), "no session left");
});
