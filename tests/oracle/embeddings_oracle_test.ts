/**
 * Oracle test: Shimmy's `/v1/embeddings`, `/embedding` and `/v1/rerank` answer as llama.cpp's own server
 * built from the same source. The same generated model is served by both, with the same
 * pooling (`llama-server --embeddings --pooling mean`, the pooling of a BERT encoder's GGUF, or
 * `--reranking` for the reranker fixture); single and batched inputs must give embeddings with a cosine similarity of at least
 * 0.9999, rerank scores within 1e-4 one document at a time (1e-3 and the same order for many at
 * once), and the same token counts (so the rerank prompt is built alike). Both refuse a model
 * whose pooling is none.
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import { fixtureModel } from "../fixtures/models.ts";
import { referenceDir, skipBecause } from "../helpers.ts";
import { postJson, startServer } from "../server/harness.ts";
import { type ReferenceServer, startReferenceServer } from "./reference_server.ts";

const reference = referenceDir();
const MIN_COSINE = 0.9999;

const ignore = reference === undefined &&
  skipBecause(
    "embeddings oracle",
    "reference tools not built: run scripts/build-libllama.sh --reference-tools --out lib/reference",
  );

const TEXTS = [
  "hello world",
  "the dog and the cat sat on the mat",
  "yes",
  "Once upon a time there was a little dog who lived near a river. ".repeat(6),
  "What is the answer to this question? Please help me think.",
];

/** Starts llama-server from the reference build on a model. */
function startReference(model: string, flags: string[]): Promise<ReferenceServer> {
  return startReferenceServer(reference as string, model, flags);
}

function cosine(a: number[], b: number[]): number {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += (a[i] as number) * (b[i] as number);
    na += (a[i] as number) ** 2;
    nb += (b[i] as number) ** 2;
  }
  return dot / Math.sqrt(na * nb);
}

interface EmbeddingList {
  data: { index: number; embedding: number[] }[];
  usage: { prompt_tokens: number };
}

async function embed(url: string, input: string | string[]): Promise<EmbeddingList> {
  const response = await postJson(`${url}/v1/embeddings`, { input, encoding_format: "float" });
  equal(response.status, 200, `${url}: ${response.status}`);
  return await response.json();
}

/** Embeds {@link TEXTS} one by one and all at once on both servers; returns every cosine. */
async function compareEmbeddings(ours: string, theirs: string): Promise<number[]> {
  const cosines: number[] = [];
  for (const text of TEXTS) {
    const [a, b] = [await embed(ours, text), await embed(theirs, text)];
    equal(a.usage.prompt_tokens, b.usage.prompt_tokens, text);
    equal(a.data[0]?.embedding.length, b.data[0]?.embedding.length);
    cosines.push(cosine(a.data[0]!.embedding, b.data[0]!.embedding));
  }
  const [a, b] = [await embed(ours, TEXTS), await embed(theirs, TEXTS)];
  equal(a.usage.prompt_tokens, b.usage.prompt_tokens);
  equal(a.data.length, TEXTS.length);
  for (const [i, item] of a.data.entries()) {
    equal(item.index, i);
    const match = b.data.find((d) => d.index === i);
    cosines.push(cosine(item.embedding, match!.embedding));
  }
  console.log(`lowest cosine similarity: ${Math.min(...cosines).toFixed(7)}`);
  return cosines;
}

Deno.test({
  name: "Shimmy's mean-pooled embeddings match llama-server's for single and batched inputs",
  ignore,
  async fn() {
    const model = await fixtureModel("tiny-f32");
    await using theirs = await startReference(model, ["--embeddings", "--pooling", "mean"]);
    await using ours = await startServer({ fixtures: ["tiny-f32"], load: { pooling: "mean" } });
    const cosines = await compareEmbeddings(ours.url, theirs.url);
    ok(cosines.every((c) => c >= MIN_COSINE), cosines.join(", "));
  },
});

Deno.test({
  name: "llama-server's own /embedding (content, embd_normalize) answers as llama-server does",
  ignore,
  async fn() {
    const model = await fixtureModel("tiny-f32");
    await using theirs = await startReference(model, ["--embeddings", "--pooling", "mean"]);
    await using ours = await startServer({ fixtures: ["tiny-f32"], load: { pooling: "mean" } });
    type Rows = { index: number; embedding: number[][] }[];
    const legacy = async (url: string, body: Record<string, unknown>): Promise<Rows> => {
      const response = await postJson(`${url}/embedding`, body);
      equal(response.status, 200, `${url}: ${JSON.stringify(body)}`);
      return await response.json();
    };
    for (
      const body of [
        { content: TEXTS[1] },
        { content: TEXTS.slice(0, 3) },
        { content: TEXTS[3], embd_normalize: -1 },
      ]
    ) {
      const [a, b] = [await legacy(ours.url, body), await legacy(theirs.url, body)];
      deepEqual(a.map((r) => [r.index, r.embedding.length]), b.map((r) => [r.index, 1]));
      for (const [i, row] of a.entries()) {
        const [x, y] = [row.embedding[0]!, b[i]!.embedding[0]!];
        ok(cosine(x, y) >= MIN_COSINE, JSON.stringify(body).slice(0, 60));
        // The same length too: unit length, or the model's own without normalizing.
        ok(Math.abs(Math.hypot(...x) / Math.hypot(...y) - 1) < 1e-3, JSON.stringify(body));
      }
    }
    const refused = await postJson(`${ours.url}/embedding`, { content: "a", embd_normalize: 1 });
    equal(refused.status, 400);
    await refused.body?.cancel();
  },
});

Deno.test({
  name: "a BERT encoder pooled as its GGUF says (cls) embeds as in llama-server",
  ignore,
  async fn() {
    const model = await fixtureModel("tiny-bert");
    await using theirs = await startReference(model, ["--embeddings"]);
    await using ours = await startServer({ fixtures: ["tiny-bert"] });
    const cosines = await compareEmbeddings(ours.url, theirs.url);
    ok(cosines.every((c) => c >= MIN_COSINE), cosines.join(", "));
  },
});

Deno.test({
  name: "Shimmy's rerank scores and order match llama-server --reranking on a qwen3 reranker",
  ignore,
  async fn() {
    const model = await fixtureModel("tiny-rerank");
    await using theirs = await startReference(model, ["--reranking"]);
    await using ours = await startServer({ fixtures: ["tiny-rerank"] });
    const rank = async (url: string, documents: string[]) => {
      const response = await postJson(`${url}/v1/rerank`, { query: "hello world", documents });
      equal(response.status, 200);
      return await response.json() as {
        results: { index: number; relevance_score: number }[];
        usage: { prompt_tokens: number };
      };
    };
    // One document at a time: the same prompt tokens, the same score.
    for (const text of TEXTS) {
      const [a, b] = [await rank(ours.url, [text]), await rank(theirs.url, [text])];
      equal(a.usage.prompt_tokens, b.usage.prompt_tokens, "same prompt tokens");
      const [x, y] = [a.results[0]!.relevance_score, b.results[0]!.relevance_score];
      ok(Math.abs(x - y) < 1e-4, `${x} vs ${y}: ${text}`);
    }
    // All at once: Shimmy scores them in one decode, and a decode of 64 tokens or more takes
    // another ggml kernel path (activations rounded through f16), so scores move in the 4th
    // decimal; the order stays.
    const [a, b] = [await rank(ours.url, TEXTS), await rank(theirs.url, TEXTS)];
    equal(a.usage.prompt_tokens, b.usage.prompt_tokens);
    deepEqual(a.results.map((r) => r.index), b.results.map((r) => r.index));
    for (const [i, r] of a.results.entries()) {
      const theirScore = b.results[i]?.relevance_score ?? NaN;
      ok(Math.abs(r.relevance_score - theirScore) < 1e-3, `${r.relevance_score} vs ${theirScore}`);
    }
  },
});

Deno.test({
  name: "Shimmy and llama-server both refuse /v1/embeddings for a model whose pooling is none",
  ignore,
  async fn() {
    const model = await fixtureModel("tiny-f32");
    await using theirs = await startReference(model, ["--embeddings"]);
    await using ours = await startServer({ fixtures: ["tiny-f32"] });
    for (const url of [theirs.url, ours.url]) {
      const response = await postJson(`${url}/v1/embeddings`, { input: "hello" });
      equal(response.status, 400, url);
      ok(/pooling/i.test((await response.json()).error.message));
    }
  },
});
