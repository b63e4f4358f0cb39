import { equal, ok } from "node:assert/strict";
import { postJson, startServer, type TestServer, waitFor } from "./harness.ts";

/** A request that generates for many seconds on tiny-f32 unless it is cancelled. */
const LONG = { prompt: "go", max_tokens: 8000, ignore_eos: true };

function busySlots(server: TestServer): number {
  return server.ctx.registry.loaded().get("tiny-f32")?.scheduler.stats().busySlots ?? -1;
}

Deno.test("a client that disconnects mid-stream frees its slot; other requests are unaffected", async () => {
  await using server = await startServer({ load: { ctxSize: 8192 } });
  const abort = new AbortController();
  const response = await postJson(
    `${server.url}/v1/completions`,
    { ...LONG, stream: true },
    {},
    abort.signal,
  );
  const other = postJson(`${server.url}/v1/completions`, { prompt: "hi", max_tokens: 16 });
  const reader = response.body!.getReader();
  await reader.read();
  await reader.read();
  abort.abort();
  await reader.cancel().catch(() => {});
  const result = await (await other).json();
  equal(result.usage.completion_tokens, 16);
  ok(await waitFor(() => busySlots(server) === 0, 2000), "the slot is free");
});

Deno.test("a client that disconnects while waiting for a JSON answer frees its slot at once", async () => {
  await using server = await startServer({ load: { ctxSize: 8192 } });
  const abort = new AbortController();
  const pending = postJson(`${server.url}/api/generate`, LONG, {}, abort.signal)
    .catch(() => undefined);
  ok(await waitFor(() => busySlots(server) === 1), "the generation started");
  await new Promise((r) => setTimeout(r, 200));
  const hungUpAt = performance.now();
  abort.abort();
  await pending;
  ok(await waitFor(() => busySlots(server) === 0, 2000), "the slot is freed within 2 s");
  const freedAfter = performance.now() - hungUpAt;
  const tokens = server.ctx.metrics.render({ models: [] }).match(
    /^shimmy_generated_tokens_total (\d+)/m,
  );
  ok(Number(tokens?.[1] ?? 0) < 8000, `the generation stopped early (${tokens?.[1]} tokens)`);
  ok(freedAfter < 2000, `freed after ${Math.round(freedAfter)} ms`);
});

Deno.test("a client that hangs up while its model loads starts no generation", async () => {
  await using server = await startServer({ load: { ctxSize: 8192 } });
  const port = Number(new URL(server.url).port);
  const body = JSON.stringify(LONG);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    new TextEncoder().encode(
      `POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: ` +
        `application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    ),
  );
  conn.close(); // before the first request's model has loaded
  await waitFor(() => server.ctx.registry.loaded().has("tiny-f32"), 10_000);
  await new Promise((resolve) => setTimeout(resolve, 300));
  equal(busySlots(server), 0, "the gone client's generation runs");
});

Deno.test("a long prompt alone goes in steps of about a second: its client's hang-up frees the model within one", async () => {
  await using server = await startServer({ fixtures: ["bench-125m"], load: { parallel: 1 } });
  const url = `${server.url}/v1/completions`;
  const long = (word: string) => ({
    model: "bench-125m",
    prompt: `${word} `.repeat(1800),
    max_tokens: 1,
  });
  await (await postJson(url, { model: "bench-125m", prompt: "hi", max_tokens: 1 })).body?.cancel();
  let started = performance.now();
  await (await postJson(url, long("apple"))).body?.cancel(); // timed alone, and costs learnt
  const whole = performance.now() - started;
  const abort = new AbortController();
  const pending = postJson(url, long("river"), {}, abort.signal).catch(() => undefined);
  await new Promise((r) => setTimeout(r, whole * 0.2));
  abort.abort();
  await pending;
  started = performance.now();
  const next = await postJson(url, { model: "bench-125m", prompt: "hello", max_tokens: 1 });
  equal(next.status, 200);
  await next.body?.cancel();
  const waited = performance.now() - started;
  ok(
    waited < whole * 0.6,
    `the next request took ${Math.round(waited)} ms; the whole prompt takes ${Math.round(whole)}`,
  );
});
