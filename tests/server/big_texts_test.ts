/**
 * Texts of megabytes: their tokenization takes turns (one at a time, so the streams beside them
 * keep their cores and memory stays bounded), their token lists are written a share at a time,
 * and a prompt that cannot fit is refused before it is tokenized.
 */

import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { bigTextTurns } from "../../src/ffi/tokenize_turns.ts";
import { longestLoopStall, postJson, startServer, waitFor } from "./harness.ts";

Deno.test("Big /tokenize texts take turns, a client gone from the line leaves it, short texts never wait", async () => {
  await using server = await startServer();
  const text = "alpha beta gamma ".repeat(120_000); // 2 MB: about a second each
  const big = (signal?: AbortSignal) =>
    postJson(`${server.url}/tokenize`, { content: text, parse_special: false }, {}, signal)
      .then(async (res) => {
        equal(res.status, 200);
        return (await res.json()).tokens.length as number;
      });
  const first = big();
  const second = big();
  const leaving = new AbortController();
  const third = big(leaving.signal);
  ok(await waitFor(() => bigTextTurns.waiting === 2, 10_000), "two big texts wait their turn");
  const short = await (await postJson(`${server.url}/tokenize`, { content: "alpha" })).json();
  ok(short.tokens.length > 0);
  ok(bigTextTurns.waiting > 0, "the short text was answered while big ones waited");
  leaving.abort();
  await rejects(third);
  ok(await waitFor(() => bigTextTurns.waiting <= 1), "the text whose client left is out of line");
  const counts = await Promise.all([first, second]);
  equal(counts[0], counts[1]);
  ok((counts[0] as number) >= 360_000, `${counts[0]} tokens`);
  equal(bigTextTurns.waiting, 0);
});

Deno.test("A /tokenize answer of 300,000 tokens, written a share at a time, holds every token", async () => {
  await using server = await startServer();
  const text = "alpha, beta! ".repeat(60_000);
  const ids = await (await postJson(`${server.url}/tokenize`, { content: text })).json();
  const model = server.ctx.registry.loaded().get("tiny-f32")?.model;
  ok(model, "loaded by the request");
  const expected = [...model.tokenize(text, { addSpecial: false })];
  ok(expected.length > 8192 * 3, `${expected.length} tokens, several shares`);
  deepEqual(ids, { tokens: expected });
  const pieces = await (await postJson(`${server.url}/tokenize`, {
    content: text,
    with_pieces: true,
  })).json();
  deepEqual(pieces.tokens.map((t: { id: number }) => t.id), expected);
  // The vocabulary (SentencePiece) puts a space before the text.
  equal(pieces.tokens.map((t: { piece: string }) => t.piece).join(""), ` ${text}`);
});

Deno.test("A prompt or input whose length shows it cannot fit is refused before it is tokenized", async () => {
  await using server = await startServer({ fixtures: ["tiny-f32", "tiny-bert", "tiny-rerank"] });
  const text = "alpha beta gamma ".repeat(400_000); // 6.8 MB
  const completion = await postJson(`${server.url}/v1/completions`, {
    prompt: text,
    max_tokens: 1,
    model: "tiny-f32",
  });
  equal(completion.status, 400);
  const error = (await completion.json()).error;
  equal(error.code, "context_length_exceeded");
  // "at least": counted from its length, not tokenized (a tokenized prompt has an exact count).
  match(error.message, /The prompt is at least \d+ tokens, more than the context of \d+ tokens/);
  const chat = await postJson(`${server.url}/v1/chat/completions`, {
    messages: [{ role: "user", content: text }],
    model: "tiny-f32",
  });
  equal(chat.status, 400);
  match((await chat.json()).error.message, /The prompt is at least \d+ tokens/);
  const embedding = await postJson(`${server.url}/v1/embeddings`, {
    input: text,
    model: "tiny-bert",
  });
  equal(embedding.status, 400);
  match((await embedding.json()).error.message, /Input 0 has at least \d+ tokens/);
  // A reranker's document likewise, and without holding the event loop (it had, for seconds).
  let reranked: Response | undefined;
  const stall = await longestLoopStall(
    postJson(`${server.url}/v1/rerank`, { model: "tiny-rerank", query: "q", documents: [text] })
      .then((res) => reranked = res),
  );
  equal(reranked?.status, 400);
  match((await reranked!.json()).error.message, /document 0 has at least \d+ tokens/);
  ok(stall < 500, `the loop waited at most ${Math.round(stall)} ms`);
  // With "truncate" the prompt is tokenized and its oldest tokens dropped, as before.
  const truncated = await postJson(`${server.url}/v1/completions`, {
    prompt: "alpha beta gamma ".repeat(20_000),
    max_tokens: 1,
    model: "tiny-f32",
    truncate: true,
  });
  equal(truncated.status, 200);
});
