import { equal, match, ok } from "node:assert/strict";
import { postJson, startServer, type TestServer } from "./harness.ts";
import { whileTicking } from "../helpers.ts";

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
  const response = await postJson(`${server.url}${route}`, {
    max_tokens: 2,
    stream: false,
    ...body,
  });
  const json = await response.json();
  equal(response.status, 200, `${route} ${JSON.stringify(body)}: ${JSON.stringify(json)}`);
  equal(json.usage.completion_tokens, 2);
}

Deno.test("a field an endpoint does not read is a 400 naming it, not silently ignored", async () => {
  await using server = await startServer();
  const chat = "/v1/chat/completions";
  const text = "/v1/completions";
  // A sampler Shimmy does not have (tail-free, gone from llama.cpp too), and chat-only fields on
  // other endpoints.
  await expectRefused(
    server,
    chat,
    { messages: MESSAGES, tfs_z: 0.9 },
    "tfs_z",
    /Unknown field "tfs_z": \/v1\/chat\/completions does not support it/,
  );
  await expectRefused(server, text, { prompt: "hi", tools: [] }, "tools", /Unknown field "tools"/);
  // Within stream_options too: a typo would otherwise leave the stream without its usage.
  await expectRefused(
    server,
    chat,
    { messages: MESSAGES, stream: true, stream_options: { include_usge: true } },
    "stream_options",
    /Unknown field "stream_options.include_usge"/,
  );
  await expectRefused(
    server,
    chat,
    { messages: MESSAGES, stream_options: { include_usage: true } },
    "stream_options",
    /only for streamed answers/,
  );
  await expectRefused(
    server,
    text,
    { prompt: "hi", n_probs: 2 },
    "n_probs",
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
    { messages: MESSAGES, tfs_z: 0.9 },
    "tfs_z",
    /Unknown field "tfs_z": \/apply-template/,
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
    { prompt: [1, 2], suffix: "end" },
    "suffix",
    /"suffix" needs text prompts/,
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
    tfs_z: null,
  });
  await expectAnswered(server, "/api/generate", { prompt: "hi", top_k: 40, tfs_z: null });
  // Of the right type, though nothing reads them, as OpenAI checks them.
  const chat = "/v1/chat/completions";
  await expectRefused(server, chat, { messages: MESSAGES, user: 5 }, "user", /must be a string/);
  await expectRefused(
    server,
    chat,
    { messages: MESSAGES, metadata: { a: 1 } },
    "metadata",
    /strings/,
  );
});

Deno.test("llama-server's further samplers are read on every generating route, and checked", async () => {
  await using server = await startServer();
  const textOf = async (route: string, body: Record<string, unknown>) => {
    const response = await postJson(`${server.url}${route}`, {
      max_tokens: 12,
      stream: false,
      ...body,
    });
    const json = await response.json();
    equal(response.status, 200, JSON.stringify(json));
    return route === "/api/generate" ? json.response : json.choices[0].text;
  };
  const open = { temperature: 1.5, top_k: 0, top_p: 1, min_p: 0, seed: 5 };
  // Mirostat 2.0 aiming at no surprise keeps only the best token: the greedy text.
  const mirostat = { ...open, mirostat: 2, mirostat_tau: 0, mirostat_eta: 0.1 };
  for (const route of ["/v1/completions", "/api/generate"]) {
    const greedy = await textOf(route, { prompt: "hi", temperature: 0 });
    equal(await textOf(route, { prompt: "hi", ...mirostat }), greedy, route);
    const plain = await textOf(route, { prompt: "hi", ...open });
    equal(plain === greedy, false, `${route}: the open draw alone is not greedy`);
  }
  // top_p 0 leaves the best token only, the greedy text; min_keep keeps more for the draw.
  const narrow = { prompt: "hi", ...open, top_p: 0 };
  const greedy = await textOf("/v1/completions", { prompt: "hi", temperature: 0 });
  equal(await textOf("/v1/completions", narrow), greedy);
  const kept = await textOf("/v1/completions", { ...narrow, min_keep: 50 });
  equal(kept === greedy, false, "min_keep 50 leaves the draw 50 tokens");
  await expectAnswered(server, "/v1/chat/completions", {
    messages: MESSAGES,
    top_n_sigma: 1.5,
    xtc_probability: 0.5,
    xtc_threshold: 0.1,
    dynatemp_range: 0.3,
    dynatemp_exponent: 1.2,
    dry_multiplier: 0.8,
    dry_base: 1.75,
    dry_allowed_length: 2,
    dry_penalty_last_n: 64,
    dry_sequence_breakers: ["\n", ":"],
  });
  const chat = "/v1/chat/completions";
  const refused: [Record<string, unknown>, string, RegExp][] = [
    [{ mirostat: 3 }, "mirostat", /"mirostat" must be at most 2/],
    [{ min_keep: -1 }, "min_keep", /at least 0/],
    [{ min_keep: 2.5 }, "min_keep", /an integer/],
    [{ mirostat_tau: -1 }, "mirostat_tau", /at least 0/],
    [{ xtc_probability: 1.5 }, "xtc_probability", /at most 1/],
    [{ dry_base: 0.5 }, "dry_base", /at least 1/],
    [{ dry_allowed_length: 1.5 }, "dry_allowed_length", /an integer/],
    [{ dry_sequence_breakers: "\n" }, "dry_sequence_breakers", /must be an array/],
    [{ dry_sequence_breakers: [""] }, "dry_sequence_breakers", /non-empty strings/],
  ];
  for (const [field, param, message] of refused) {
    await expectRefused(server, chat, { messages: MESSAGES, ...field }, param, message);
  }
});

Deno.test("a request with new DRY breakers has them matched against the vocabulary off the event loop", async () => {
  // llama.cpp matches each breaker against the whole vocabulary: 32 long ones took 0.6-2 s on
  // qwen2's 152k tokens, and every stream and /health waited for the first request that sent them.
  await using server = await startServer({ fixtures: ["qwen2"] });
  const breakers = Array.from({ length: 32 }, (_, i) => `${i}`.padEnd(64, "abcdefgh"));
  const warm = await postJson(`${server.url}/v1/completions`, { prompt: "hi", max_tokens: 1 });
  equal(warm.status, 200, "the model is loaded first");
  await warm.body?.cancel();
  const { longestGap } = await whileTicking(async () => {
    const response = await postJson(`${server.url}/v1/completions`, {
      prompt: "hi",
      max_tokens: 2,
      dry_multiplier: 0.8,
      dry_sequence_breakers: breakers,
    });
    equal(response.status, 200, await response.clone().text());
    await response.body?.cancel();
  }, 5);
  ok(longestGap < 250, `the event loop stood still for ${longestGap.toFixed(0)} ms`);
});
