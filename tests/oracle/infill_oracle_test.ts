/**
 * Oracle test: Shimmy's `POST /infill` answers as llama.cpp's own server built from the same
 * source, with greedy sampling and the same batch, context and answer sizes: the same
 * fill-in-the-middle prompt (shown in `prompt`), token ids, text and counts, streamed or not, with
 * other files as context, and the same cut where `n_indent` ends an answer. On a vocabulary with a
 * BOS token the one difference by design shows: BOS starts Shimmy's prompt, where llama-server
 * puts the other files before it.
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import { fixtureModel } from "../fixtures/models.ts";
import { referenceDir, skipBecause } from "../helpers.ts";
import { startServer } from "../server/harness.ts";
import { startReferenceServer } from "./reference_server.ts";
import { type Answer, answerOf, comparable, eventsOf } from "./llama_answers.ts";

const reference = referenceDir();

const ignore = reference === undefined &&
  skipBecause(
    "infill oracle",
    "reference tools not built: run scripts/build-libllama.sh --reference-tools --out lib/reference",
  );

/** Both servers: batch 256, context 512, and the answer's length llama-server budgets (`-n`). */
const ANSWER = 6;
const REFERENCE_FLAGS = ["-b", "256", "-n", String(ANSWER)];

const infill = (url: string, body: Answer) => answerOf(url, "/infill", body);
const events = (url: string, body: Answer) => eventsOf(url, "/infill", body);

/** Shimmy and llama-server on one fixture, with the same sizes. */
async function startPair(fixture: string, slots = 1) {
  const model = await fixtureModel(fixture);
  const shimmy = await startServer({ fixtures: [fixture], load: { batchSize: 256 } });
  try {
    // llama-server's -c is its slots' contexts together: 512 tokens each, as Shimmy's.
    const sizes = ["-np", String(slots), "-c", String(512 * slots)];
    const server = await startReferenceServer(reference as string, model, [
      ...REFERENCE_FLAGS,
      ...sizes,
    ]);
    return {
      shimmy: shimmy.url,
      server: server.url,
      async [Symbol.asyncDispose]() {
        await server.stop();
        await shimmy.close();
      },
    };
  } catch (error) {
    await shimmy.close();
    throw error;
  }
}

const CODE = {
  input_prefix: "import sys\n\ndef add(a, b):\n    ",
  input_suffix: "\n    return total\n\nprint(add(1, 2))\n",
  prompt: "total =",
  input_extra: [
    { filename: "util.py", text: "def helper():\n    return 42\n" },
    { filename: "main.py", text: "from util import helper\n", time: 1733450000 },
  ],
  n_predict: ANSWER,
  temperature: 0,
  return_tokens: true,
};

/** Forced by a grammar: the third line is indented 2, under `n_indent` 4. */
const INDENTED = {
  input_prefix: "def f():\n",
  input_suffix: "\n",
  grammar: 'root ::= "x = 1\\n    y = 2\\n  z = 3\\n"',
  n_indent: 4,
  n_predict: 24,
  temperature: 0,
};

Deno.test({
  name: "/infill answers as llama-server does: prompt, tokens and text, streamed or not",
  ignore,
  fn: async () => {
    await using pair = await startPair("starcoder-fim");
    const ours = await infill(pair.shimmy, CODE);
    const theirs = await infill(pair.server, CODE);
    deepEqual(comparable(ours), comparable(theirs));
    ok(
      String(ours.prompt).includes("\n\n--- snippet ---\n\nfrom util import helper\n<fim_prefix>"),
    );
    equal((ours.tokens as number[]).length, ANSWER);
    deepEqual(
      (await events(pair.shimmy, CODE)).map(comparable),
      (await events(pair.server, CODE)).map(comparable),
    );
    const cutOurs = await infill(pair.shimmy, INDENTED);
    const cutTheirs = await infill(pair.server, INDENTED);
    equal(cutOurs.content, "x = 1\n    y = 2\n  ");
    equal(cutOurs.content, cutTheirs.content);
    equal(cutOurs.stop_type, "limit");
    equal(cutOurs.stop_type, cutTheirs.stop_type);
  },
});

Deno.test({
  name: "/infill on a vocabulary with BOS: the same prompt, BOS first",
  ignore,
  fn: async () => {
    await using pair = await startPair("deepseek-coder");
    const bos = "<｜begin▁of▁sentence｜>";
    const ours = String((await infill(pair.shimmy, CODE)).prompt);
    const theirs = String((await infill(pair.server, CODE)).prompt);
    ok(ours.startsWith(bos + "\n\n--- snippet ---\n\ndef helper()"), ours);
    equal(ours, bos + theirs.replace(bos, ""));
    const local = { ...CODE, input_extra: [] };
    deepEqual(
      comparable(await infill(pair.shimmy, local)),
      comparable(await infill(pair.server, local)),
    );
  },
});

Deno.test({
  name: "/infill with n_cmpl answers each choice as llama-server does, in an array",
  ignore,
  fn: async () => {
    await using pair = await startPair("starcoder-fim", 2);
    // Two tokens: with two slots the servers' numerics part sooner on this random model.
    const body = { ...CODE, input_extra: [], n_cmpl: 2, n_predict: 2 };
    const ours = await infill(pair.shimmy, body) as unknown as Answer[];
    const theirs = await infill(pair.server, body) as unknown as Answer[];
    ok(Array.isArray(ours) && ours.length === 2, JSON.stringify(ours).slice(0, 200));
    deepEqual(ours.map(comparable), theirs.map(comparable));
    deepEqual(ours.map((answer) => answer.index), [0, 1]);
    const byChoice = (events: Answer[]) =>
      [0, 1].map((index) => events.filter((e) => e.index === index).map(comparable));
    deepEqual(
      byChoice(await events(pair.shimmy, body)),
      byChoice(await events(pair.server, body)),
    );
  },
});
