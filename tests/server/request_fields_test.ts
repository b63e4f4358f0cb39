import { equal, match } from "node:assert/strict";
import { postJson, startServer, type TestServer } from "./harness.ts";

const MESSAGES = [{ role: "user", content: "hi" }];

/** Posts a body and checks the 400: its `param` and message. */
async function expectRefused(
  server: TestServer,
  route: string,
  body: Record<string, unknown>,
  param: string,
  message: RegExp,
): Promise<void> {
  const response = await postJson(`${server.url}${route}`, body);
  const json = await response.json();
  equal(response.status, 400, `${route} ${JSON.stringify(body)}: ${JSON.stringify(json)}`);
  equal(json.error.param, param, JSON.stringify(json));
  match(json.error.message, message);
}

/** Posts a body and checks that it generated. */
async function expectAnswered(
  server: TestServer,
  route: string,
  body: Record<string, unknown>,
): Promise<void> {
  const response = await postJson(`${server.url}${route}`, { max_tokens: 2, ...body });
  const json = await response.json();
  equal(response.status, 200, `${route} ${JSON.stringify(body)}: ${JSON.stringify(json)}`);
  equal(json.usage.completion_tokens, 2);
}

Deno.test("a field an endpoint does not read is a 400 naming it, not silently ignored", async () => {
  await using server = await startServer();
  const chat = "/v1/chat/completions";
  const text = "/v1/completions";
  // llama-server samplers Shimmy does not have, and chat-only fields on other endpoints.
  await expectRefused(
    server,
    chat,
    { messages: MESSAGES, mirostat: 2 },
    "mirostat",
    /Unknown field "mirostat": \/v1\/chat\/completions does not support it/,
  );
  await expectRefused(server, text, { prompt: "hi", tools: [] }, "tools", /Unknown field "tools"/);
  await expectRefused(
    server,
    text,
    { prompt: "hi", dry_multiplier: 0.8 },
    "dry_multiplier",
    /Unknown field/,
  );
  await expectRefused(
    server,
    "/api/generate",
    { prompt: "hi", top_logprobs: 2 },
    "top_logprobs",
    /Unknown field "top_logprobs": \/api\/generate/,
  );
  // The other JSON routes read only their own fields too.
  await expectRefused(
    server,
    "/v1/embeddings",
    { input: "hi", truncate: true },
    "truncate",
    /Unknown field "truncate": \/v1\/embeddings/,
  );
  await expectRefused(
    server,
    "/v1/rerank",
    { query: "q", documents: ["d"], rank_fields: ["text"] },
    "rank_fields",
    /Unknown field "rank_fields": \/v1\/rerank/,
  );
  await expectRefused(
    server,
    "/apply-template",
    { messages: MESSAGES, mirostat: 2 },
    "mirostat",
    /Unknown field "mirostat": \/apply-template/,
  );
  await expectRefused(
    server,
    "/api/models/load",
    { model: "tiny-f32", pin: true },
    "pin",
    /Unknown field "pin": \/api\/models\/load/,
  );
  await expectRefused(
    server,
    "/api/lora",
    { model: "tiny-f32", adapters: [], scale: 1 },
    "scale",
    /Unknown field "scale": \/api\/lora/,
  );
  // OpenAI fields whose effect Shimmy cannot give, with what to do instead.
  await expectRefused(
    server,
    chat,
    { messages: MESSAGES, functions: [{ name: "f" }] },
    "functions",
    /deprecated function calling; use "tools"/,
  );
  await expectRefused(
    server,
    chat,
    { messages: MESSAGES, audio: { voice: "alloy", format: "wav" } },
    "audio",
    /text only/,
  );
  await expectRefused(
    server,
    chat,
    { messages: MESSAGES, modalities: ["text", "audio"] },
    "modalities",
    /text only/,
  );
  await expectRefused(
    server,
    chat,
    { messages: MESSAGES, web_search_options: {} },
    "web_search_options",
    /no web search/,
  );
  await expectRefused(
    server,
    chat,
    { messages: MESSAGES, store: true },
    "store",
    /does not keep chat completions/,
  );
  await expectRefused(
    server,
    chat,
    { messages: MESSAGES, prediction: { type: "content", content: "x" } },
    "prediction",
    /Unknown field "prediction"/,
  );
  await expectRefused(
    server,
    text,
    { prompt: "hi", echo: true },
    "echo",
    /"echo": true is not supported/,
  );
  await expectRefused(
    server,
    text,
    { prompt: "hi", suffix: "end" },
    "suffix",
    /"suffix": fill-in-the-middle is not supported/,
  );
  await expectRefused(
    server,
    text,
    { prompt: "hi", best_of: 3 },
    "best_of",
    /"best_of" is not supported/,
  );
});

Deno.test("hints with no effect here, and fields that ask for nothing, are accepted", async () => {
  await using server = await startServer();
  const hints = {
    user: "u-1",
    safety_identifier: "s-1",
    prompt_cache_key: "k",
    prompt_cache_retention: "24h",
    service_tier: "auto",
    store: false,
    metadata: { run: "7" },
  };
  await expectAnswered(server, "/v1/chat/completions", {
    messages: MESSAGES,
    modalities: ["text"],
    ...hints,
  });
  await expectAnswered(server, "/v1/completions", {
    prompt: "hi",
    echo: false,
    suffix: "",
    best_of: 1,
    ...hints,
  });
  // `null` asks for nothing, whatever the field (clients send unset options so).
  await expectAnswered(server, "/v1/chat/completions", {
    messages: MESSAGES,
    functions: null,
    mirostat: null,
  });
  await expectAnswered(server, "/api/generate", { prompt: "hi", top_k: 40, mirostat: null });
});
