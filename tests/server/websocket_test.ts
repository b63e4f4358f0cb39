import { equal, ok } from "node:assert/strict";

import { closeReason } from "../../src/server/websocket_frames.ts";
import { startServer } from "./harness.ts";

interface WsRun {
  frames: string[];
  closeCode: number;
}

function runSocket(url: string, first: string, onFrame?: (ws: WebSocket, n: number) => void) {
  return new Promise<WsRun>((resolve, reject) => {
    const ws = new WebSocket(url.replace("http", "ws") + "/ws/generate");
    const frames: string[] = [];
    ws.onopen = () => ws.send(first);
    ws.onmessage = (event) => {
      frames.push(String(event.data));
      onFrame?.(ws, frames.length);
    };
    ws.onclose = (event) => resolve({ frames, closeCode: event.code });
    ws.onerror = () => {};
    setTimeout(() => reject(new Error("WebSocket test timed out")), 20_000);
  });
}

Deno.test("WebSocket: one frame per piece, then a done frame with usage", async () => {
  await using server = await startServer();
  const run = await runSocket(
    server.url,
    JSON.stringify({ prompt: "x", max_tokens: 40, grammar: 'root ::= "ab\\ncd"' }),
  );
  const final = JSON.parse(run.frames[run.frames.length - 1] as string);
  equal(final.done, true);
  equal(final.stopped, false);
  equal(final.finish_reason, "stop");
  ok(final.usage.completion_tokens > 0);
  equal(run.frames.slice(0, -1).join(""), "ab\ncd");
  equal(run.closeCode, 1000);
});

Deno.test("WebSocket: a {stop:true} frame cancels within a step and frees the slot", async () => {
  await using server = await startServer();
  const run = await runSocket(
    server.url,
    JSON.stringify({ prompt: "tell me everything", max_tokens: 400, ignore_eos: true }),
    (ws, n) => {
      if (n === 3) ws.send(JSON.stringify({ stop: true }));
    },
  );
  const final = JSON.parse(run.frames[run.frames.length - 1] as string);
  equal(final.done, true);
  equal(final.stopped, true);
  ok(final.usage.completion_tokens < 400);
  equal(server.ctx.registry.loaded().get("tiny-f32")?.scheduler.stats().busySlots, 0);
});

Deno.test("WebSocket: bad JSON gets an error frame and close 1003; a bad request closes 1008", async () => {
  await using server = await startServer();
  const bad = await runSocket(server.url, "{not json");
  equal(bad.closeCode, 1003);
  equal(JSON.parse(bad.frames[0] as string).error.type, "invalid_request_error");
  const unknown = await runSocket(server.url, JSON.stringify({ model: "nope", prompt: "x" }));
  equal(unknown.closeCode, 1008);
  equal(JSON.parse(unknown.frames[0] as string).error.code, "model_not_found");
});

Deno.test("WebSocket: closing the socket mid-stream frees the slot", async () => {
  await using server = await startServer();
  await runSocket(
    server.url,
    JSON.stringify({ prompt: "go on", max_tokens: 400, ignore_eos: true }),
    (ws, n) => {
      if (n === 2) ws.close();
    },
  );
  const scheduler = server.ctx.registry.loaded().get("tiny-f32")?.scheduler;
  for (let i = 0; i < 50 && scheduler?.stats().busySlots; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  equal(scheduler?.stats().busySlots, 0);
});

Deno.test("WebSocket: an error whose message is long in UTF-8 closes with a reason cut to 123 bytes, and the server lives", async () => {
  await using server = await startServer();
  // A model name of CJK characters: the close reason quoting it had ended the process.
  const cjk = await runSocket(
    server.url,
    JSON.stringify({ model: "模型".repeat(30), prompt: "x" }),
  );
  equal(cjk.closeCode, 1008);
  equal(JSON.parse(cjk.frames[0] as string).error.code, "model_not_found");
  const euros = await runSocket(server.url, "{" + "€".repeat(200));
  equal(euros.closeCode, 1003);
  const fine = await runSocket(server.url, JSON.stringify({ prompt: "x", max_tokens: 2 }));
  equal(JSON.parse(fine.frames.at(-1) as string).done, true);
  equal(closeReason("模".repeat(60)), "模".repeat(41)); // 3 bytes each
  equal(closeReason("a😀".repeat(40)), "a😀".repeat(24) + "a"); // 121 bytes: no half emoji
});

Deno.test("WebSocket: {stop:true} sent with the request, before it starts, ends it as stopped", async () => {
  await using server = await startServer();
  const run = await new Promise<WsRun>((resolve, reject) => {
    const ws = new WebSocket(server.url.replace("http", "ws") + "/ws/generate");
    const frames: string[] = [];
    ws.onopen = () => {
      ws.send(JSON.stringify({ prompt: "tell me everything", max_tokens: 400, ignore_eos: true }));
      ws.send(JSON.stringify({ stop: true }));
    };
    ws.onmessage = (event) => frames.push(String(event.data));
    ws.onclose = (event) => resolve({ frames, closeCode: event.code });
    setTimeout(() => reject(new Error("WebSocket test timed out")), 20_000);
  });
  const final = JSON.parse(run.frames.at(-1) as string);
  equal(final.done, true, run.frames.at(-1));
  equal(final.stopped, true);
  equal(run.closeCode, 1000);
  equal(server.ctx.registry.loaded().get("tiny-f32")?.scheduler.stats().busySlots, 0);
});

Deno.test("WebSocket: a socket that sends no request within the body timeout is closed", async () => {
  await using server = await startServer({ settings: { bodyTimeoutMs: 300 } });
  const started = performance.now();
  const run = await new Promise<WsRun>((resolve, reject) => {
    const ws = new WebSocket(server.url.replace("http", "ws") + "/ws/generate");
    const frames: string[] = [];
    ws.onmessage = (event) => frames.push(String(event.data));
    ws.onclose = (event) => resolve({ frames, closeCode: event.code });
    setTimeout(() => reject(new Error("WebSocket test timed out")), 20_000);
  });
  equal(run.closeCode, 1008);
  equal(JSON.parse(run.frames[0] as string).error.code, "request_timeout");
  ok(performance.now() - started < 5_000);
});

Deno.test("WebSocket: an upgrade without Connection: Upgrade is a 400, not a 500", async () => {
  await using server = await startServer();
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: Number(new URL(server.url).port),
  });
  await conn.write(
    new TextEncoder().encode(
      "GET /ws/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
        "Connection: close\r\n\r\n",
    ),
  );
  const head = new TextDecoder().decode(
    await new Response(conn.readable).arrayBuffer().then((b) => new Uint8Array(b)),
  );
  ok(head.startsWith("HTTP/1.1 400"), head.slice(0, 200));
  ok(head.includes("Not a valid WebSocket upgrade"), head);
});

Deno.test("WebSocket: a request the full queue refuses closes 1013, try again later", async () => {
  await using server = await startServer({ load: { parallel: 1, maxQueue: 1 } });
  const long = JSON.stringify({ prompt: "go on", max_tokens: 2000, ignore_eos: true });
  const open = (onFrame?: () => void) => {
    const ws = new WebSocket(server.url.replace("http", "ws") + "/ws/generate");
    const frames: string[] = [];
    const done = new Promise<WsRun>((resolve) => {
      ws.onmessage = (event) => {
        frames.push(String(event.data));
        onFrame?.();
      };
      ws.onclose = (event) => resolve({ frames, closeCode: event.code });
    });
    const opened = new Promise((resolve) => ws.onopen = resolve);
    return { ws, done, opened };
  };
  // The first generates, the second waits in the queue, and only then the third asks.
  const generating = Promise.withResolvers<void>();
  const first = open(() => generating.resolve());
  await first.opened;
  first.ws.send(long);
  await generating.promise;
  const second = open();
  await second.opened;
  second.ws.send(long);
  const scheduler = server.ctx.registry.loaded().get("tiny-f32")!.scheduler;
  for (let i = 0; i < 200 && scheduler.stats().queued < 1; i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  equal(scheduler.stats().queued, 1);
  const third = open();
  await third.opened;
  third.ws.send(long);
  const refused = await third.done;
  equal(refused.closeCode, 1013, refused.frames.join("\n"));
  equal(JSON.parse(refused.frames[0] as string).error.code, "queue_full");
  first.ws.close();
  second.ws.close();
  await Promise.all([first.done, second.done]);
});
