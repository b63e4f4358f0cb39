/**
 * Oracle test: Shimmy's `/tokenize` and `/detokenize` answer as llama.cpp's own server built from
 * the same source, byte for byte, on a BPE vocabulary with chat special tokens (qwen2) and a
 * SentencePiece one with BOS (llama-spm): plain text, BOS asked for, special tokens written as
 * text and parsed or not, pieces that are half a UTF-8 character, mixed strings and ids.
 */

import { deepEqual, equal, match } from "node:assert/strict";
import { fixtureModel } from "../fixtures/models.ts";
import { referenceDir, skipBecause } from "../helpers.ts";
import { postJson, startServer, type TestServer } from "../server/harness.ts";
import { startReferenceServer } from "./reference_server.ts";

const reference = referenceDir();

const ignore = reference === undefined &&
  skipBecause(
    "tokenize oracle",
    "reference tools not built: run scripts/build-libllama.sh --reference-tools --out lib/reference",
  );

const TEXTS = [
  "hello world",
  " leading space and  two",
  "<|im_start|>user\nHi there<|im_end|>",
  "emoji 🦙 and accents: naïve café, 日本語",
  "",
];

async function answer(url: string, route: string, body: Record<string, unknown>): Promise<unknown> {
  const response = await postJson(`${url}${route}`, body);
  equal(response.status, 200, `${url}${route} ${JSON.stringify(body)}`);
  return await response.json();
}

/** The same requests to both servers must get the same answers. */
async function compare(shimmy: TestServer, referenceUrl: string): Promise<void> {
  const bodies: [string, Record<string, unknown>][] = [];
  for (const content of TEXTS) {
    bodies.push(["/tokenize", { content }]);
    bodies.push(["/tokenize", { content, add_special: true, with_pieces: true }]);
    bodies.push(["/tokenize", { content, parse_special: false }]);
  }
  bodies.push(["/tokenize", { content: ["Hi", 15, " there", 2], add_special: true }]);
  for (const [route, body] of bodies) {
    deepEqual(
      await answer(shimmy.url, route, body),
      await answer(referenceUrl, route, body),
      `${route} ${JSON.stringify(body)}`,
    );
  }
  // Every token's piece, special ones written out, and a run cut inside a UTF-8 character.
  const special = (await answer(referenceUrl, "/tokenize", {
    content: TEXTS[2],
    add_special: true,
  }) as { tokens: number[] }).tokens;
  const emoji = (await answer(referenceUrl, "/tokenize", { content: "🦙🦙" }) as {
    tokens: number[];
  }).tokens;
  for (const tokens of [special, emoji, emoji.slice(0, -1), [], [0, 1, 2, 3]]) {
    deepEqual(
      await answer(shimmy.url, "/detokenize", { tokens }),
      await answer(referenceUrl, "/detokenize", { tokens }),
      `/detokenize ${tokens}`,
    );
  }
}

for (const name of ["qwen2", "llama-spm"]) {
  Deno.test({
    name: `/tokenize and /detokenize answer as llama-server does (${name})`,
    ignore,
    fn: async () => {
      const model = await fixtureModel(name);
      await using shimmy = await startServer({ fixtures: [name] });
      await using server = await startReferenceServer(reference as string, model, []);
      await compare(shimmy, server.url);
    },
  });
}

Deno.test("/tokenize and /detokenize refuse what is not a token id of the model, naming the field", async () => {
  await using shimmy = await startServer();
  const refused: [string, Record<string, unknown>, string][] = [
    ["/detokenize", { tokens: [1, 1e9] }, "tokens"],
    ["/detokenize", { tokens: [-1] }, "tokens"],
    ["/detokenize", { tokens: "1 2" }, "tokens"],
    ["/tokenize", { content: ["a", 1.5] }, "content"],
    ["/tokenize", { content: { text: "a" } }, "content"],
    ["/tokenize", { content: "a", with_piece: true }, "with_piece"],
  ];
  for (const [route, body, param] of refused) {
    const response = await postJson(`${shimmy.url}${route}`, body);
    const json = await response.json();
    equal(response.status, 400, `${route} ${JSON.stringify(body)}`);
    equal(json.error.param, param);
    match(json.error.message, new RegExp(param));
  }
  const health = await fetch(`${shimmy.url}/health`);
  equal(health.status, 200);
  await health.body?.cancel();
});
