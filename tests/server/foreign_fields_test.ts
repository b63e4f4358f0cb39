/**
 * SillyTavern's text-completion bodies, which carry other backends' fields beside llama-server's,
 * through real HTTP: its llama.cpp mode (`/completion`, streamed or not) and its generic mode
 * (`/v1/completions`) are answered; the other backends' names for llama-server's fields take
 * effect; their samplers are accepted only where they are off; `logit_bias` as an array of pairs
 * bans tokens; contradictions are 400s naming the field.
 */

import { deepEqual, equal, notEqual, throws } from "node:assert/strict";
import { foldForeignFields } from "../../src/server/foreign_fields.ts";
import { HttpError } from "../../src/server/http_error.ts";
import { postJson, readSse, startServer, type TestServer } from "./harness.ts";

/** What SillyTavern's llama.cpp mode sends with its default settings (its createTextGenGenerationData). */
const SILLYTAVERN = {
  prompt: "Once upon a time",
  model: "tiny-f32",
  max_new_tokens: 12,
  max_tokens: 12,
  temperature: 0.7,
  top_p: 1,
  typical_p: 1,
  typical: 1,
  min_p: 0,
  repetition_penalty: 1,
  frequency_penalty: 0,
  presence_penalty: 0,
  top_k: 0,
  skew: 0,
  min_tokens: 0,
  add_bos_token: true,
  smoothing_factor: 0,
  smoothing_curve: 1,
  dry_allowed_length: 2,
  dry_multiplier: 0,
  dry_base: 1.75,
  dry_sequence_breakers: ["\n", ":", '"', "*"],
  dry_penalty_last_n: 0,
  max_tokens_second: 0,
  samplers: [
    "penalties",
    "dry",
    "top_n_sigma",
    "top_k",
    "typ_p",
    "top_p",
    "min_p",
    "xtc",
    "temperature",
    "adaptive_p",
  ],
  stopping_strings: ["\nUser:"],
  stop: ["\nUser:"],
  truncation_length: 4096,
  ban_eos_token: false,
  skip_special_tokens: true,
  include_reasoning: true,
  top_a: 0,
  tfs: 1,
  mirostat_mode: 0,
  mirostat_tau: 5,
  mirostat_eta: 0.1,
  custom_token_bans: "",
  banned_strings: [],
  api_type: "llamacpp",
  api_server: "http://127.0.0.1:8080",
  xtc_threshold: 0.1,
  xtc_probability: 0,
  nsigma: 0,
  top_n_sigma: 0,
  min_keep: 0,
  adaptive_target: -0.01,
  adaptive_decay: 0.9,
  rep_pen: 1,
  rep_pen_range: 0,
  repetition_penalty_range: 0,
  guidance_scale: 1,
  negative_prompt: "",
  repeat_penalty: 1,
  repeat_last_n: 0,
  n_predict: 12,
  num_predict: 12,
  num_ctx: 4096,
  mirostat: 0,
  ignore_eos: false,
  rep_pen_slope: 1,
  n: 1,
  logit_bias: [],
  grammar: "",
  cache_prompt: true,
  stream: false,
  seed: 7,
  sampler_seed: 7,
};

async function post(server: TestServer, route: string, body: Record<string, unknown>) {
  const response = await postJson(`${server.url}${route}`, body);
  return { status: response.status, json: await response.json() };
}

Deno.test("SillyTavern's llama.cpp and generic bodies are answered, and its names for llama-server's fields act", async () => {
  await using server = await startServer();
  const native = await post(server, "/completion", SILLYTAVERN);
  equal(native.status, 200, JSON.stringify(native.json));
  equal(native.json.tokens_predicted, 12);
  const plain = await post(server, "/completion", {
    prompt: SILLYTAVERN.prompt,
    n_predict: 12,
    temperature: 0.7,
    top_k: 0,
    top_p: 1,
    min_p: 0,
    seed: 7,
    stop: ["\nUser:"],
  });
  equal(native.json.content, plain.json.content, "the same settings, the same text");

  const streamed = await postJson(`${server.url}/completion`, { ...SILLYTAVERN, stream: true });
  equal(streamed.status, 200);
  const { events } = await readSse(streamed);
  equal(events.map((e) => JSON.parse(e).content ?? "").join(""), native.json.content);

  const generic = await post(server, "/v1/completions", SILLYTAVERN);
  equal(generic.status, 200, JSON.stringify(generic.json));
  equal(generic.json.choices[0].text, native.json.content);

  // Other backends' names alone set llama-server's fields.
  const aliases = await post(server, "/completion", {
    prompt: "Once upon a time",
    max_new_tokens: 5,
    temperature: 0,
    rep_pen: 1.3,
    rep_pen_range: 64,
  });
  equal(aliases.json.tokens_predicted, 5);
  equal(aliases.json.generation_settings.repeat_penalty, 1.3);
  equal(aliases.json.generation_settings.repeat_last_n, 64);

  // llama-server's [[token, false]] bans a token: the greedy first token is not sampled.
  const greedy = await post(server, "/completion", {
    prompt: "Hi",
    n_predict: 1,
    temperature: 0,
    return_tokens: true,
  });
  const first = greedy.json.tokens[0];
  const banned = await post(server, "/completion", {
    prompt: "Hi",
    n_predict: 1,
    temperature: 0,
    logit_bias: [[first, false]],
    custom_token_bans: String(first),
  });
  equal(banned.status, 200, JSON.stringify(banned.json));
  notEqual(banned.json.content, greedy.json.content);
});

Deno.test("other backends' samplers set to act, and names that disagree, are 400s naming the field", async () => {
  await using server = await startServer();
  const refused: [Record<string, unknown>, string][] = [
    [{ top_a: 0.2 }, "top_a"],
    [{ tfs: 0.9 }, "tfs"],
    [{ smoothing_factor: 0.3 }, "smoothing_factor"],
    [{ negative_prompt: "dull" }, "negative_prompt"],
    [{ guidance_scale: 1.5 }, "guidance_scale"],
    [{ banned_strings: ["dragon"] }, "banned_strings"],
    [{ adaptive_target: 0.5 }, "adaptive_target"],
    [{ add_bos_token: false }, "add_bos_token"],
    [{ rep_pen: 1.2 }, "rep_pen"], // against SillyTavern's repeat_penalty 1
    [{ max_new_tokens: 3 }, "max_new_tokens"], // against its n_predict 12
    [{ custom_token_bans: "5,6" }, "custom_token_bans"], // not in logit_bias
    [{ dynatemp_low: 0.5, dynatemp_high: 0.9 }, "dynatemp_low"], // temperature is 0.7, range 0
    [{ logit_bias: [[1, 2, 3]] }, "logit_bias"],
  ];
  for (const [change, param] of refused) {
    for (const route of ["/completion", "/v1/completions"]) {
      const answer = await post(server, route, { ...SILLYTAVERN, ...change });
      equal(answer.status, 400, `${route} ${JSON.stringify(change)}`);
      equal(answer.json.error.param, param, JSON.stringify(answer.json));
    }
  }
});

Deno.test("foldForeignFields refuses deeply nested values with a 400, never a stack overflow", () => {
  let deep: unknown = 1;
  for (let i = 0; i < 20_000; i++) deep = [deep];
  const bodies: Record<string, unknown>[] = [
    { temperature: 1, dynatemp_low: deep },
    { temperature: deep, dynatemp_high: 1 },
    { stop: ["a"], stopping_strings: deep },
    { stop: deep, stopping_strings: ["a"] },
    { custom_token_bans: [deep] },
    { custom_token_bans: "1", logit_bias: [[deep, false]] },
    { logit_bias: [[deep, 1]] },
  ];
  for (const body of bodies) {
    throws(() => foldForeignFields(body, "native"), (error: Error) => {
      return error instanceof HttpError && error.status === 400;
    }, Object.keys(body).join(" "));
  }
});

Deno.test("foldForeignFields folds aliases, drops what asks nothing, and keeps the rest", () => {
  deepEqual(
    foldForeignFields({
      prompt: "x",
      max_new_tokens: 8,
      num_predict: 8,
      top_a: 0,
      api_type: "llamacpp",
      logprobs: 3,
      grammar: "",
      logit_bias: [[5, false], [6, 2]],
    }, "native"),
    { prompt: "x", max_tokens: 8, n_probs: 3, logit_bias: { 5: -100, 6: 2 } },
  );
  deepEqual(foldForeignFields({ prompt: "x", logprobs: 3 }, "openai"), {
    prompt: "x",
    logprobs: 3,
  });
  deepEqual(
    foldForeignFields({
      temperature: 1,
      dynatemp_range: 0.5,
      dynatemp_low: 0.5,
      dynatemp_high: 1.5,
    }, "openai"),
    { temperature: 1, dynatemp_range: 0.5 },
  );
});
