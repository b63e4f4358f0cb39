import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { fixtureModel } from "../fixtures/models.ts";
import { postJson, startServer } from "./harness.ts";

async function expectError(response: Response, status: number, code?: string) {
  equal(response.status, status);
  equal(response.headers.get("content-type"), "application/json");
  const body = await response.json();
  deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  ok(body.error.message.length > 0, "the message is never empty");
  if (code) equal(body.error.code, code);
  return body.error;
}

Deno.test("malformed JSON and wrong field types are 400 with the field named", async () => {
  await using server = await startServer();
  const url = `${server.url}/v1/chat/completions`;
  await expectError(await postJson(url, "{nope"), 400);
  await expectError(await postJson(url, "[1,2]"), 400);
  const cases: [Record<string, unknown>, string][] = [
    [{ messages: "hi" }, "messages"],
    [{ messages: [{ role: "user", content: "x" }], max_tokens: "5" }, "max_tokens"],
    [{ messages: [{ role: "user", content: "x" }], temperature: -1 }, "temperature"],
    [{ messages: [{ role: "user", content: "x" }], stop: [1] }, "stop"],
    [{ messages: [{ role: "user", content: "x" }], n: 0 }, "n"],
    [{ messages: [{ role: "user", content: "x" }], logit_bias: { "999999": 1 } }, "logit_bias"],
    [{ messages: [{ role: "user", content: [{ type: "image_url" }] }] }, "messages"],
    [{ messages: [{ role: "user", content: "x" }], stream: "yes" }, "stream"],
    // A field hidden behind another spelling of it is checked too.
    [
      { messages: [{ role: "user", content: "x" }], max_completion_tokens: 2, max_tokens: "x" },
      "max_tokens",
    ],
    [{ messages: [{ role: "user", content: "x" }], max_tokens: 2, n_predict: "x" }, "n_predict"],
    [{ messages: [{ role: "user", content: "x" }], logit_bias: { "": 1 } }, "logit_bias"],
    [{ messages: [{ role: "user", content: "x" }], logit_bias: { " 0x1F ": 1 } }, "logit_bias"],
    [
      { messages: [{ role: "user", content: "x" }], reasoning_effort: "banana" },
      "reasoning_effort",
    ],
  ];
  for (const [body, param] of cases) {
    const error = await expectError(await postJson(url, body), 400);
    equal(error.param, param, JSON.stringify(body));
  }
  await expectError(await postJson(`${server.url}/api/generate`, { max_tokens: 3 }), 400);
});

Deno.test("the routes that only render or count a chat request check its other fields as a chat completion does", async () => {
  await using server = await startServer();
  const messages = [{ role: "user", content: "x" }];
  const cases: [Record<string, unknown>, string][] = [
    [{ messages, tool_choice: "banana" }, "tool_choice"],
    [{ messages, temperature: -1 }, "temperature"],
    [{ messages, logit_bias: { "999999": 1 } }, "logit_bias"],
    [{ messages, response_format: { type: "nope" } }, "response_format"],
  ];
  for (const path of ["/v1/chat/completions/input_tokens", "/apply-template"]) {
    for (const [body, param] of cases) {
      const error = await expectError(await postJson(`${server.url}${path}`, body), 400);
      equal(error.param, param, `${path} ${JSON.stringify(body)}`);
    }
    const fine = await postJson(`${server.url}${path}`, { messages, temperature: 0.5 });
    equal(fine.status, 200, path);
    await fine.body?.cancel();
  }
});

Deno.test("array-form content (as Zed and Cursor send) is accepted", async () => {
  await using server = await startServer();
  const response = await postJson(`${server.url}/v1/chat/completions`, {
    messages: [{
      role: "user",
      content: [{ type: "text", text: "hel" }, { type: "text", text: "lo" }],
    }],
    max_tokens: 2,
  });
  equal(response.status, 200);
});

Deno.test("unknown model and unknown route are 404; wrong method is 405", async () => {
  await using server = await startServer();
  const error = await expectError(
    await postJson(`${server.url}/v1/completions`, { model: "nope", prompt: "x" }),
    404,
    "model_not_found",
  );
  equal(error.param, "model");
  match(error.message, /Available: tiny-f32/);
  await expectError(await fetch(`${server.url}/v2/nothing`), 404);
  const wrong = await fetch(`${server.url}/v1/completions`);
  await expectError(wrong, 405);
});

Deno.test("a body over the limit is 413", async () => {
  await using server = await startServer();
  const huge = JSON.stringify({ prompt: "x".repeat(9 * 1024 * 1024) });
  await expectError(await postJson(`${server.url}/v1/completions`, huge), 413, "body_too_large");
});

Deno.test("a prompt beyond the context is 400 context_length_exceeded, not a crash", async () => {
  await using server = await startServer({ load: { ctxSize: 64 } });
  await expectError(
    await postJson(`${server.url}/v1/completions`, { prompt: "word ".repeat(100), max_tokens: 4 }),
    400,
    "context_length_exceeded",
  );
  const ok2 = await postJson(`${server.url}/v1/completions`, { prompt: "hi", max_tokens: 4 });
  equal(ok2.status, 200, "the server keeps serving");
  await ok2.body?.cancel();
});

Deno.test("a max_tokens larger than what is left of the context generates to its end with length", async () => {
  await using server = await startServer({ load: { ctxSize: 64 } });
  const response = await postJson(`${server.url}/v1/completions`, {
    prompt: "hi",
    max_tokens: 5000,
    ignore_eos: true,
  });
  equal(response.status, 200);
  const body = await response.json();
  equal(body.choices[0].finish_reason, "length");
  equal(body.usage.prompt_tokens + body.usage.completion_tokens, 64);
});

Deno.test('"truncate": true drops the oldest prompt tokens instead of refusing', async () => {
  await using server = await startServer({ load: { ctxSize: 64 } });
  const long = "word ".repeat(100) + "the end";
  const response = await postJson(`${server.url}/v1/completions`, {
    prompt: long,
    max_tokens: 8,
    truncate: true,
  });
  equal(response.status, 200);
  const body = await response.json();
  equal(body.usage.prompt_tokens, 64 - 8, "the prompt fills the context left by max_tokens");
  equal(body.usage.completion_tokens, 8);
});

Deno.test("a full queue answers 503 with Retry-After", async () => {
  await using server = await startServer({ load: { parallel: 1, maxQueue: 1, ctxSize: 8192 } });
  const long = { prompt: "go", max_tokens: 8000, ignore_eos: true };
  const abort = new AbortController();
  const running = [1, 2].map(() =>
    postJson(`${server.url}/api/generate`, long, {}, abort.signal).catch(() => undefined)
  );
  // One request in the slot and one in the queue. The queue alone is not enough: the first
  // request waits there for a moment before its slot takes it, and a request sent then could
  // overtake the second and be queued in its place.
  const state = () => {
    const stats = server.ctx.registry.loaded().get("tiny-f32")?.scheduler.stats();
    return `${stats?.busySlots} busy, ${stats?.queued} queued`;
  };
  for (let i = 0; i < 1000 && state() !== "1 busy, 1 queued"; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  equal(state(), "1 busy, 1 queued", "one request runs and one waits");
  const response = await postJson(`${server.url}/api/generate`, long);
  await expectError(response, 503, "queue_full");
  equal(response.headers.get("retry-after"), "1");
  abort.abort();
  await Promise.all(running);
});

Deno.test("a model that fails to load is 502 with a body that says why, and unloads nothing for it", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "broken.gguf");
  const good = await Deno.readFile(await fixtureModel("tiny-f32"));
  await Deno.writeFile(path, good.subarray(0, 5000));
  try {
    await using server = await startServer({
      extraEntries: [{ name: "broken", path, source: "test", sizeBytes: 5000 }],
      load: { maxModels: 1 },
    });
    const fine = await postJson(`${server.url}/v1/completions`, { prompt: "x", max_tokens: 2 });
    equal(fine.status, 200);
    await fine.body?.cancel();
    const error = await expectError(
      await postJson(`${server.url}/v1/completions`, { model: "broken", prompt: "x" }),
      502,
      "model_load_failed",
    );
    match(error.message, /Cannot load model .*broken.gguf: .*the file is incomplete/);
    // The only place was the working model's; a file that cannot load did not take it.
    equal(server.ctx.registry.state("tiny-f32"), "loaded");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("with an API key every route but /health needs the bearer token", async () => {
  await using server = await startServer({ settings: { apiKey: "s3cret" } });
  equal((await fetch(`${server.url}/health`)).status, 200);
  await expectError(await fetch(`${server.url}/v1/models`), 401, "invalid_api_key");
  await expectError(
    await fetch(`${server.url}/v1/models`, { headers: { authorization: "Bearer wrong" } }),
    401,
  );
  const ok2 = await fetch(`${server.url}/v1/models`, {
    headers: { authorization: "Bearer s3cret" },
  });
  equal(ok2.status, 200);
  await ok2.body?.cancel();
});

Deno.test("Browser origins: loopback and --cors origins are served with CORS headers, others get 403", async () => {
  await using server = await startServer({
    settings: { policy: { boundHost: "127.0.0.1", origins: ["https://app.example"] } },
  });
  const plain = await fetch(`${server.url}/health`);
  equal(plain.headers.get("access-control-allow-origin"), null);
  await plain.body?.cancel();
  for (const origin of ["https://app.example", "http://localhost:3000", server.url]) {
    const res = await fetch(`${server.url}/health`, { headers: { origin } });
    equal(res.status, 200, origin);
    equal(res.headers.get("access-control-allow-origin"), origin);
    await res.body?.cancel();
  }
  const preflight = await fetch(`${server.url}/v1/chat/completions`, {
    method: "OPTIONS",
    headers: { origin: "https://app.example", "access-control-request-method": "POST" },
  });
  equal(preflight.status, 204);
  equal(preflight.headers.get("access-control-allow-headers"), "authorization, content-type");
  await preflight.body?.cancel();
  // The SDKs send their own headers; the browser asks for them in the preflight.
  const asked = "authorization, content-type, x-stainless-os, anthropic-version, x-api-key";
  const sdkPreflight = await fetch(`${server.url}/v1/messages`, {
    method: "OPTIONS",
    headers: {
      origin: "https://app.example",
      "access-control-request-method": "POST",
      "access-control-request-headers": asked,
    },
  });
  equal(sdkPreflight.status, 204);
  equal(sdkPreflight.headers.get("access-control-allow-headers"), asked);
  await sdkPreflight.body?.cancel();
  const malformed = await fetch(`${server.url}/v1/models`, {
    method: "OPTIONS",
    headers: {
      origin: "https://app.example",
      "access-control-request-method": "GET",
      "access-control-request-headers": "x-ok; <script>",
    },
  });
  equal(malformed.headers.get("access-control-allow-headers"), "authorization, content-type");
  await malformed.body?.cancel();
  for (const method of ["GET", "OPTIONS"]) {
    const evil = await fetch(`${server.url}/v1/models`, {
      method,
      headers: { origin: "http://evil.example" },
    });
    equal(evil.status, 403, method);
    equal((await evil.json()).error.code, "origin_not_allowed");
  }
});
