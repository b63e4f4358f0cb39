import { deepEqual, equal, match, ok } from "node:assert/strict";
import OpenAI from "openai";
import { join } from "node:path";
import { liveHandles } from "../../src/ffi/handle.ts";
import { float32Base64 } from "../../src/server/embeddings.ts";
import { writeBertModel } from "../fixtures/bert_model.ts";
import { assertNearlyEqual } from "../helpers.ts";
import { postJson, startServer, waitFor } from "./harness.ts";

const MODEL = "tiny-f32";
const RERANKER = "tiny-rerank";

function norm(vector: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < vector.length; i++) sum += (vector[i] as number) ** 2;
  return Math.sqrt(sum);
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += (a[i] as number) * (b[i] as number);
  return dot / (norm(a) * norm(b));
}

function decodeBase64(text: string): number[] {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  return Array.from({ length: bytes.length / 4 }, (_, i) => view.getFloat32(i * 4, true));
}

async function errorOf(response: Response): Promise<{ status: number; message: string }> {
  const body = await response.json();
  return { status: response.status, message: body.error?.message ?? "" };
}

Deno.test("the openai SDK gets unit-length embeddings of the model's size, as floats and as base64", async () => {
  await using server = await startServer({ load: { pooling: "mean" } });
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const input = ["hello world", "the dog and the cat"];

  const floats = await client.embeddings.create({ model: MODEL, input, encoding_format: "float" });
  equal(floats.object, "list");
  equal(floats.model, MODEL);
  equal(floats.data.length, 2);
  floats.data.forEach((item, i) => {
    equal(item.object, "embedding");
    equal(item.index, i);
    equal(item.embedding.length, 64);
    ok(Math.abs(norm(item.embedding) - 1) < 1e-5, "normalized to unit length");
  });
  ok(cosine(floats.data[0]!.embedding, floats.data[1]!.embedding) < 0.9999, "inputs differ");
  ok(floats.usage.prompt_tokens > 2);
  equal(floats.usage.total_tokens, floats.usage.prompt_tokens);

  // The SDK asks for base64 by default and decodes it itself.
  const decodedBySdk = await client.embeddings.create({ model: MODEL, input });
  // Asked for explicitly, the base64 text reaches the caller.
  const raw = await client.embeddings.create({ model: MODEL, input, encoding_format: "base64" });
  for (const i of [0, 1]) {
    const expected = floats.data[i]!.embedding;
    deepEqual(Array.from(decodedBySdk.data[i]!.embedding), expected);
    const text = raw.data[i]!.embedding as unknown as string;
    equal(typeof text, "string");
    deepEqual(decodeBase64(text), expected);
    equal(text, float32Base64(Float32Array.from(expected)));
  }
});

Deno.test("/v1/embeddings takes token ids and token-id arrays as the same inputs as their texts", async () => {
  await using server = await startServer({ load: { pooling: "mean" } });
  using lease = await server.ctx.registry.acquire(MODEL);
  const tokens = Array.from(lease.model.model.tokenize("hello world"));
  const text = await (await postJson(`${server.url}/v1/embeddings`, { input: "hello world" }))
    .json();
  const ids = await (await postJson(`${server.url}/embeddings`, { input: tokens })).json();
  const nested = await (await postJson(`${server.url}/v1/embeddings`, {
    input: [tokens, tokens.slice(0, 2)],
  })).json();
  deepEqual(ids.data[0].embedding, text.data[0].embedding);
  // Beside another input in one decode (see assertNearlyEqual).
  assertNearlyEqual(nested.data[0].embedding, text.data[0].embedding);
  equal(nested.data.length, 2);
  equal(ids.usage.prompt_tokens, tokens.length);
});

Deno.test("a batch of inputs is embedded in fewer decodes than inputs, each as if alone", async () => {
  await using server = await startServer({ load: { pooling: "mean" } });
  const texts = Array.from({ length: 10 }, (_, i) => `hello world number ${i} ${"dog ".repeat(i)}`);
  const alone = [];
  for (const text of texts.slice(0, 3)) {
    const body = await (await postJson(`${server.url}/v1/embeddings`, { input: text })).json();
    alone.push(body.data[0].embedding as number[]);
  }
  using lease = await server.ctx.registry.acquire(MODEL);
  const embedder = await lease.model.embedder();
  const before = embedder.decodeCount;
  const response = await postJson(`${server.url}/v1/embeddings`, { input: texts });
  equal(response.status, 200);
  const batched = (await response.json()).data.map((d: { embedding: number[] }) => d.embedding);
  const decodes = embedder.decodeCount - before;
  equal(batched.length, 10);
  ok(decodes >= 1 && decodes < texts.length, `${decodes} decodes for ${texts.length} inputs`);
  equal(decodes, 1, "ten short inputs fit one decode");
  alone.forEach((vector, i) => ok(cosine(vector, batched[i]) > 0.99999, `input ${i}`));
});

Deno.test("embedding calls take turns a decode at a time: one input is not held behind thousands", async () => {
  await using server = await startServer({ load: { pooling: "mean" } });
  using lease = await server.ctx.registry.acquire(MODEL);
  const embedder = await lease.model.embedder();
  const inputs = Array.from({ length: 2048 }, (_, i) => `input number ${i} ${"word ".repeat(20)}`);
  const order: string[] = [];
  const big = postJson(`${server.url}/v1/embeddings`, { input: inputs }).then(async (res) => {
    equal(res.status, 200);
    equal((await res.json()).data.length, inputs.length);
    order.push("big");
  });
  const before = embedder.decodeCount;
  ok(await waitFor(() => embedder.decodeCount > before, 10_000), "the big call is decoding");
  const lone = await postJson(`${server.url}/v1/embeddings`, { input: "alone" });
  equal(lone.status, 200);
  await lone.body?.cancel();
  order.push("lone");
  const decodesBeforeLone = embedder.decodeCount - before;
  await big;
  const total = embedder.decodeCount - before;
  deepEqual(order, ["lone", "big"]);
  ok(
    decodesBeforeLone < total / 2,
    `the lone input waited ${decodesBeforeLone} of ${total} decodes`,
  );
});

Deno.test("unloading a model frees its embeddings context and batch", async () => {
  await using server = await startServer({ load: { pooling: "mean" } });
  const before = liveHandles();
  const response = await postJson(`${server.url}/v1/embeddings`, { input: "hello" });
  equal(response.status, 200);
  await response.body?.cancel();
  const lease = await server.ctx.registry.acquire(MODEL);
  const embedder = await lease.model.embedder();
  lease.release();
  equal((liveHandles().Context ?? 0) - (before.Context ?? 0), 2, "generation + embeddings");
  ok(!embedder.closed);
  equal(await server.ctx.registry.unload(MODEL), true);
  ok(embedder.closed, "the embeddings context is closed");
  deepEqual(liveHandles(), before);
});

Deno.test("/v1/embeddings refuses what it cannot embed with a 400 that says why", async () => {
  await using server = await startServer({ load: { pooling: "mean" } });
  const post = (body: unknown) => postJson(`${server.url}/v1/embeddings`, body);
  const cases: [unknown, RegExp][] = [
    [{ input: [] }, /must not be empty/],
    [{ input: "" }, /Input 0 is empty/],
    [{ input: ["a", ""] }, /Input 1 is empty/],
    [{ input: [1, "a"] }, /"input" must be/],
    [{ input: 3 }, /"input" must be/],
    [{ input: Array(2049).fill("a") }, /At most 2048 inputs/],
    [
      { input: ["hello", "dog ".repeat(600)] },
      /Input 1 has \d+ tokens, more than the embedding context of 512/,
    ],
    [{ input: [[1, 2, 999999]] }, /Input 0 holds a token id outside the vocabulary/],
    [{ input: "a", encoding_format: "int8" }, /"encoding_format" must be "float" or "base64"/],
    [{ input: "a", dimensions: 65 }, /embeddings of 64 dimensions: "dimensions" may be at most 64/],
    [{ input: "a", user: 7 }, /"user" must be a string/],
  ];
  for (const [body, pattern] of cases) {
    const { status, message } = await errorOf(await post(body));
    equal(status, 400, JSON.stringify(body).slice(0, 80));
    ok(pattern.test(message), `${message} ~ ${pattern}`);
  }
  const ok200 = await post({ input: "a", dimensions: 64, user: "someone", model: MODEL });
  equal(ok200.status, 200);
  const full = (await ok200.json()).data[0].embedding as number[];
  // Shorter: the first values, scaled back to unit length (OpenAI's and Ollama's `dimensions`).
  const short = (await (await post({ input: "a", dimensions: 16, model: MODEL })).json()).data[0]
    .embedding as number[];
  equal(short.length, 16);
  const norm = Math.hypot(...full.slice(0, 16));
  short.forEach((v, i) => ok(Math.abs(v - (full[i] as number) / norm) < 1e-6, `${i}`));
  ok(Math.abs(Math.hypot(...short) - 1) < 1e-6);
});

Deno.test("/v1/embeddings refuses an answer of more than 2,048 vectors of 1,024 numbers, saying how many inputs fit", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "wide-bert.gguf");
  await writeBertModel(path, { embeddingLength: 1040, blockCount: 1, contextLength: 64 });
  await using server = await startServer({
    fixtures: [],
    extraEntries: [{
      name: "wide-bert",
      path,
      source: "test",
      sizeBytes: Deno.statSync(path).size,
    }],
  });
  const input = Array(2048).fill("a");
  const started = performance.now();
  const { status, message } = await errorOf(
    await postJson(`${server.url}/v1/embeddings`, { model: "wide-bert", input }),
  );
  equal(status, 400);
  match(message, /2048 inputs of 1040 dimensions would hold 2129920 numbers, more than the limit/);
  match(message, /send at most 2016 inputs per request/);
  ok(performance.now() - started < 5000, "refused before embedding");
  // The OpenAI SDK's largest request, 2,048 inputs, fits a 1,024-wide answer.
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const answer = await client.embeddings.create({ model: "wide-bert", input, dimensions: 1024 });
  equal(answer.data.length, 2048);
  equal(answer.data[2047]!.embedding.length, 1024);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a model without a pooling type gets a 400 naming --pooling, as llama-server refuses pooling none", async () => {
  await using server = await startServer();
  const { status, message } = await errorOf(
    await postJson(`${server.url}/v1/embeddings`, { input: "hello" }),
  );
  equal(status, 400);
  ok(/pooling type is none.*--pooling mean/.test(message), message);
});

Deno.test("/v1/rerank ranks documents with a reranker, best first, with top_n and return_documents", async () => {
  await using server = await startServer({ fixtures: [RERANKER] });
  const documents = ["the dog", "hello there world", "a", "the cat and the dog", "yes"];
  const all = await (await postJson(`${server.url}/v1/rerank`, {
    model: RERANKER,
    query: "hello world",
    documents,
  })).json();
  equal(all.object, "list");
  equal(all.model, RERANKER);
  equal(all.results.length, documents.length);
  deepEqual(
    all.results.map((r: { index: number }) => r.index).sort(),
    [0, 1, 2, 3, 4],
  );
  const scores = all.results.map((r: { relevance_score: number }) => r.relevance_score);
  deepEqual(scores, [...scores].sort((a, b) => b - a));
  ok(new Set(scores).size > 1, "documents score differently");
  ok(scores.every((s: number) => s > 0 && s < 1), "qwen3's head is a softmax");
  ok(all.usage.prompt_tokens > documents.length);
  equal(all.results[0].document, undefined);

  const top = await (await postJson(`${server.url}/rerank`, {
    query: "hello world",
    documents,
    top_n: 2,
    return_documents: true,
  })).json();
  equal(top.results.length, 2);
  deepEqual(top.results.map((r: { index: number }) => r.index), [
    all.results[0].index,
    all.results[1].index,
  ]);
  equal(top.results[0].document.text, documents[all.results[0].index]);

  // llama-server's spelling, and one decode for all pairs.
  using lease = await server.ctx.registry.acquire(RERANKER);
  const embedder = await lease.model.embedder();
  const before = embedder.decodeCount;
  const again = await (await postJson(`${server.url}/v1/reranking`, {
    query: "hello world",
    documents,
  })).json();
  deepEqual(again.results, all.results);
  equal(embedder.decodeCount - before, 1);

  const refused = await errorOf(
    await postJson(`${server.url}/v1/embeddings`, { model: RERANKER, input: "hello" }),
  );
  equal(refused.status, 400);
  ok(/is a reranker.*\/v1\/rerank/.test(refused.message), refused.message);
});

Deno.test("/v1/rerank refuses a model that is not a reranker, and malformed fields, with a 400", async () => {
  await using server = await startServer({ fixtures: [MODEL, RERANKER] });
  const post = (body: unknown) => postJson(`${server.url}/v1/rerank`, body);
  const notReranker = await errorOf(await post({ model: MODEL, query: "q", documents: ["d"] }));
  equal(notReranker.status, 400);
  ok(/is not a reranker \(its pooling type is none/.test(notReranker.message));
  const cases: [unknown, RegExp][] = [
    [{ model: RERANKER, documents: ["d"] }, /"query" must be a string/],
    [{ model: RERANKER, query: "q", documents: [] }, /"documents" must be a non-empty array/],
    [{ model: RERANKER, query: "q", documents: [1] }, /"documents" must be a non-empty array/],
    [{ model: RERANKER, query: "q", documents: ["d"], top_n: 0 }, /"top_n" must be at least 1/],
    [
      { model: RERANKER, query: "q", documents: ["d", "dog ".repeat(600)] },
      /The query with document 1 has \d+ tokens/,
    ],
  ];
  for (const [body, pattern] of cases) {
    const { status, message } = await errorOf(await post(body));
    equal(status, 400);
    ok(pattern.test(message), `${message} ~ ${pattern}`);
  }
});

Deno.test("an encoder-only BERT model embeds with the pooling its GGUF names, batched in one decode", async () => {
  await using server = await startServer({ fixtures: ["tiny-bert"] });
  const texts = ["hello world", "the dog", "yes", "a cat sat on the mat"];
  const alone: number[][] = [];
  for (const text of texts) {
    const body = await (await postJson(`${server.url}/v1/embeddings`, { input: text })).json();
    alone.push(body.data[0].embedding as number[]);
  }
  using lease = await server.ctx.registry.acquire("tiny-bert");
  const embedder = await lease.model.embedder();
  equal(embedder.pooling, "cls");
  const before = embedder.decodeCount;
  const body = await (await postJson(`${server.url}/v1/embeddings`, { input: texts })).json();
  equal(embedder.decodeCount - before, 1);
  body.data.forEach((d: { embedding: number[] }, i: number) => {
    ok(cosine(d.embedding, alone[i]!) > 0.99999, `input ${i}`);
  });
  // It generates nothing: a 400 that says what the model is for, not a 500.
  const chat = await postJson(`${server.url}/v1/chat/completions`, {
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 2,
  });
  equal(chat.status, 400);
  match((await chat.json()).error.message, /cannot generate text; use \/v1\/embeddings/);
});
