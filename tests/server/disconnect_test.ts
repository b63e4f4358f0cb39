import { equal } from "node:assert/strict";
import { postJson, startServer } from "./harness.ts";

async function waitIdle(server: Awaited<ReturnType<typeof startServer>>): Promise<number> {
  const scheduler = server.ctx.registry.loaded().get("tiny-f32")?.scheduler;
  for (let i = 0; i < 100 && scheduler?.stats().busySlots; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return scheduler?.stats().busySlots ?? -1;
}

Deno.test("a client that disconnects mid-stream frees its slot; other requests are unaffected", async () => {
  await using server = await startServer();
  const abort = new AbortController();
  const response = await fetch(`${server.url}/v1/completions`, {
    method: "POST",
    body: JSON.stringify({ prompt: "go", max_tokens: 2000, ignore_eos: true, stream: true }),
    signal: abort.signal,
  });
  const other = postJson(`${server.url}/v1/completions`, { prompt: "hi", max_tokens: 16 });
  const reader = response.body!.getReader();
  await reader.read();
  await reader.read();
  abort.abort();
  await reader.cancel().catch(() => {});
  const result = await (await other).json();
  equal(result.usage.completion_tokens, 16);
  equal(await waitIdle(server), 0);
});

Deno.test("a client that disconnects while waiting for a JSON answer frees its slot", async () => {
  await using server = await startServer();
  const abort = new AbortController();
  const pending = fetch(`${server.url}/api/generate`, {
    method: "POST",
    body: JSON.stringify({ prompt: "go", max_tokens: 3000, ignore_eos: true }),
    signal: abort.signal,
  }).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 100));
  abort.abort();
  await pending;
  equal(await waitIdle(server), 0);
});
