import { equal, ok } from "node:assert/strict";
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
