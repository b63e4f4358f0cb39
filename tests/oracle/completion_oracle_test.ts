/**
 * Oracle test: Shimmy's `POST /completion` answers as llama.cpp's own server built from the same
 * source, on the same model with greedy sampling: the same fields, text, token ids and counts,
 * whether it ends at the length limit, at a stop word or at the end token, from a text prompt or
 * token ids, streamed (event by event) or not. (Six greedy tokens: the two servers' numerics
 * agree for longer on this model.)
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import { fixtureModel } from "../fixtures/models.ts";
import { referenceDir, skipBecause } from "../helpers.ts";
import { postJson, startServer } from "../server/harness.ts";
import { startReferenceServer } from "./reference_server.ts";
import { type Answer, answerOf, comparable, eventsOf } from "./llama_answers.ts";

const reference = referenceDir();

const ignore = reference === undefined &&
  skipBecause(
    "completion oracle",
    "reference tools not built: run scripts/build-libllama.sh --reference-tools --out lib/reference",
  );

const complete = (url: string, body: Answer) => answerOf(url, "/completion", body);
const events = (url: string, body: Answer) => eventsOf(url, "/completion", body);

const END_TOKEN = 151643; // qwen2's <|endoftext|>

const BODIES: Answer[] = [
  { prompt: "Once upon a time", n_predict: 6, temperature: 0, return_tokens: true },
  { prompt: "Once upon a time", n_predict: 8, temperature: 0, stop: ["_uuid"] },
  { prompt: [9707, 1879], n_predict: 3, temperature: 0, logit_bias: { [END_TOKEN]: 100 } },
];

Deno.test({
  name: "/completion answers as llama-server does, streamed or not",
  ignore,
  fn: async () => {
    const model = await fixtureModel("qwen2");
    await using shimmy = await startServer({ fixtures: ["qwen2"] });
    await using server = await startReferenceServer(reference as string, model, []);
    const stopTypes: unknown[] = [];
    for (const body of BODIES) {
      const ours = await complete(shimmy.url, body);
      const theirs = await complete(server.url, body);
      deepEqual(comparable(ours), comparable(theirs), JSON.stringify(body));
      deepEqual(Object.keys(ours).sort(), Object.keys(theirs).sort());
      const settings = ours.generation_settings as Answer;
      const known = Object.keys(theirs.generation_settings as Answer);
      deepEqual(Object.keys(settings).filter((key) => !known.includes(key)), []);
      equal(settings.temperature, 0);
      stopTypes.push(ours.stop_type);
      const ourEvents = await events(shimmy.url, body);
      // The one difference, by design: the end token gets no event of its own here.
      const theirEvents = (await events(server.url, body)).filter((event) =>
        !(event.stop === false && JSON.stringify(event.tokens) === `[${END_TOKEN}]`)
      );
      deepEqual(
        ourEvents.map(comparable),
        theirEvents.map(comparable),
        `streamed ${JSON.stringify(body)}`,
      );
    }
    deepEqual(stopTypes, ["limit", "word", "eos"], "each way to end was taken");
  },
});

/** Probabilities agree to this much: the two servers' logits differ in the last digits. */
const LOGPROB_TOLERANCE = 0.05;

/** The probabilities' ids, texts and bytes, which must be equal, and their log-probabilities. */
function splitProbabilities(entries: Answer[]) {
  const exact = entries.map(({ logprob: _, top_logprobs, ...rest }) => ({
    ...rest,
    top: (top_logprobs as Answer[]).map(({ logprob: _, ...alt }) => alt),
  }));
  const logprobs = entries.flatMap((entry) => [
    entry.logprob as number,
    ...(entry.top_logprobs as Answer[]).map((alt) => alt.logprob as number),
  ]);
  return { exact, logprobs };
}

function sameProbabilities(ours: Answer[], theirs: Answer[], what: string) {
  const a = splitProbabilities(ours);
  const b = splitProbabilities(theirs);
  deepEqual(a.exact, b.exact, what);
  a.logprobs.forEach((logprob, i) =>
    ok(Math.abs(logprob - (b.logprobs[i] as number)) < LOGPROB_TOLERANCE, `${what}: ${logprob}`)
  );
}

Deno.test({
  name: "/completion's n_probs gives llama-server's completion_probabilities, streamed or not",
  ignore,
  fn: async () => {
    const model = await fixtureModel("qwen2");
    await using shimmy = await startServer({ fixtures: ["qwen2"] });
    await using server = await startReferenceServer(reference as string, model, []);
    const body = { prompt: "Once upon a time", n_predict: 5, temperature: 0, n_probs: 3 };
    const ours = await complete(shimmy.url, body);
    const theirs = await complete(server.url, body);
    const probabilities = ours.completion_probabilities as Answer[];
    equal(probabilities.length, 5);
    equal((probabilities[0]?.top_logprobs as Answer[]).length, 3);
    sameProbabilities(probabilities, theirs.completion_probabilities as Answer[], "JSON");
    const streamed = (events: Answer[]) =>
      events.flatMap((event) => (event.completion_probabilities ?? []) as Answer[]);
    const ourEvents = await events(shimmy.url, body);
    sameProbabilities(streamed(ourEvents), streamed(await events(server.url, body)), "streamed");
    equal(ourEvents.at(-1)?.completion_probabilities, undefined);
  },
});

Deno.test("/completion refuses what it does not read, and several prompts", async () => {
  await using shimmy = await startServer();
  for (
    const [body, param] of [
      [{ prompt: "hi", n_keep: 2 }, "n_keep"],
      [{ prompt: ["a", "b"] }, "prompt"],
      [{}, "prompt"],
    ] as const
  ) {
    const response = await postJson(`${shimmy.url}/completion`, body);
    const json = await response.json();
    equal(response.status, 400, JSON.stringify(body));
    equal(json.error.param, param);
  }
  const answer = await complete(shimmy.url, { prompt: "hi", n_predict: 2 });
  ok(answer.stop);
  match(String(answer.stop_type), /^(limit|eos)$/);
  equal(answer.truncated, false);
  // A prompt longer than the context, cut to fit where `truncate` asks for it.
  const long = { prompt: "one two three ".repeat(2000), n_predict: 2 };
  const refused = await postJson(`${shimmy.url}/completion`, long);
  equal(refused.status, 400);
  await refused.body?.cancel();
  const cut = await complete(shimmy.url, { ...long, truncate: true });
  equal(cut.truncated, true);
  ok((cut.tokens_evaluated as number) < 6000, `${cut.tokens_evaluated} prompt tokens`);
});
