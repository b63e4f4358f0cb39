/**
 * Inputs of hundreds of thousands of tokens get an answer, not a 500: spreading their tokens into
 * one `push()` call once failed past about 125,000 ("Maximum call stack size exceeded") in
 * `/tokenize`, `/v1/rerank` and `/infill` (the last is checked in infill_test.ts).
 */

import { equal, match } from "node:assert/strict";
import { postJson, startServer } from "./harness.ts";

const LONG = "a ".repeat(300_000);

Deno.test("/tokenize and /v1/rerank answer inputs of 300,000 tokens (both once failed with a 500)", async () => {
  await using server = await startServer({ fixtures: ["tiny-f32", "tiny-rerank"] });
  const tokenized = await postJson(`${server.url}/tokenize`, { content: LONG });
  equal(tokenized.status, 200);
  equal((await tokenized.json()).tokens.length >= 300_000, true);
  const reranked = await postJson(`${server.url}/v1/rerank`, {
    model: "tiny-rerank",
    query: "q",
    documents: [LONG],
  });
  equal(reranked.status, 400);
  match((await reranked.json()).error.message, /more than the embedding context/);
});

Deno.test("a run of 50,000 letters is tokenized with DeepSeek-Coder's vocabulary (it crashed the server)", async () => {
  await using server = await startServer({ fixtures: ["deepseek-coder"] });
  const tokenized = await postJson(`${server.url}/tokenize`, { content: "a".repeat(50_000) });
  equal(tokenized.status, 200);
  equal((await tokenized.json()).tokens.length > 1000, true);
  const completed = await postJson(`${server.url}/v1/completions`, {
    prompt: `Minified: ${"x".repeat(20_000)}`,
    max_tokens: 1,
  });
  // An answer (or the context's 400), with the server alive to give it.
  equal([200, 400].includes(completed.status), true, await completed.text());
});
