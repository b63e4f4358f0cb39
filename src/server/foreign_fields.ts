/**
 * The fields SillyTavern's text-completion requests carry for other backends. SillyTavern builds
 * one body for every backend it talks to (llama.cpp, text-generation-webui, KoboldCpp, TabbyAPI,
 * vLLM…) and sends it whole to `/completion` (its llama.cpp mode) or `/v1/completions` (its
 * generic one): the same setting under several backends' names, and samplers llama.cpp does not
 * have, at values that turn them off. llama-server ignores what it does not know; Shimmy refuses
 * unknown fields, so these are folded here before the usual checks, and nothing is ignored:
 *
 * - another backend's name for one of llama-server's fields (`max_new_tokens`, `rep_pen`,
 *   `stopping_strings`…) sets that field, and a request that gives both with different values is
 *   a 400;
 * - a sampler or option Shimmy does not have is accepted at the value that turns it off (`top_a:
 *   0`, `tfs: 1`, `negative_prompt: ""`…) and is a 400 naming it at any other;
 * - SillyTavern's own routing fields (`api_type`, `api_server`) and the context size it has
 *   already cut the prompt to (`truncation_length`, `num_ctx`) are dropped;
 * - `logit_bias` as llama-server also takes it, an array of `[token, bias]` pairs (`false` bans the
 *   token), becomes OpenAI's object; an empty `grammar` is no grammar, as in llama-server; on
 *   llama-server's own routes `logprobs` is its other name for `n_probs`.
 *
 * @module
 */

import { badRequest } from "./http_error.ts";
import { isObject } from "../util/objects.ts";

/** Other backends' names for llama-server's fields, and the field each sets. */
const ALIASES: Readonly<Record<string, string>> = {
  max_new_tokens: "max_tokens",
  num_predict: "max_tokens",
  typical: "typical_p",
  repetition_penalty: "repeat_penalty",
  rep_pen: "repeat_penalty",
  rep_pen_range: "repeat_last_n",
  repetition_penalty_range: "repeat_last_n",
  mirostat_mode: "mirostat",
  nsigma: "top_n_sigma",
  stopping_strings: "stop",
  ban_eos_token: "ignore_eos",
  sampler_seed: "seed",
};

/** Fields that say how many tokens to generate, under the names Shimmy reads. */
const LENGTH_FIELDS = ["max_tokens", "n_predict", "max_completion_tokens"];

/** Samplers and options Shimmy lacks: the test for the value that asks nothing, and why not. */
const OFF_VALUES: Readonly<Record<string, [(value: unknown) => boolean, string]>> = {
  top_a: [(v) => v === 0, "Top-A is not one of llama.cpp's samplers; set it to 0"],
  tfs: [(v) => v === 1, "tail-free sampling left llama.cpp; set it to 1"],
  skew: [(v) => v === 0, "skew is not one of llama.cpp's samplers; set it to 0"],
  smoothing_factor: [(v) => v === 0, "quadratic sampling is not in llama.cpp; set it to 0"],
  smoothing_curve: [(v) => v === 1, "quadratic sampling is not in llama.cpp; set it to 1"],
  min_tokens: [(v) => v === 0, "a minimum length is not supported; set it to 0"],
  max_tokens_second: [(v) => v === 0, "generation is not slowed down; set it to 0"],
  guidance_scale: [(v) => v === 1, "classifier-free guidance is not supported; set it to 1"],
  negative_prompt: [(v) => v === "", "classifier-free guidance is not supported; leave it empty"],
  rep_pen_slope: [(v) => v === 1, "a sloped repetition penalty is not supported; set it to 1"],
  adaptive_target: [
    (v) => typeof v === "number" && v < 0,
    "the adaptive-p sampler is not supported; set it below 0",
  ],
  adaptive_decay: [(v) => typeof v === "number", "it must be a number"],
  banned_strings: [
    (v) => Array.isArray(v) && v.length === 0,
    'banned strings are not supported; use "stop" or "logit_bias"',
  ],
  add_bos_token: [(v) => v === true, "BOS is added as the model's vocabulary says"],
  skip_special_tokens: [(v) => v === true, "special tokens are never part of the text"],
  include_reasoning: [(v) => v === true, "a completion's text is all the model wrote"],
};

/** SillyTavern's routing, and the context size it already cut the prompt to. */
const DROPPED = ["api_type", "api_server", "truncation_length", "num_ctx"];

/**
 * Folds other backends' fields into the ones Shimmy reads (see the module's description).
 *
 * @param body The parsed body; not changed.
 * @param route `native` for llama-server's `/completion` and `/infill`, `openai` for
 *   `/v1/completions` (where `logprobs` is OpenAI's own field).
 * @returns The body to check and read instead.
 * @throws {HttpError} 400 naming a field that asks for what Shimmy cannot do, or an alias that
 *   contradicts the field it stands for.
 * @example
 * ```ts
 * foldForeignFields({ prompt: "Hi", max_new_tokens: 8, top_a: 0, api_type: "llamacpp" }, "native");
 * // { prompt: "Hi", max_tokens: 8 }
 * ```
 */
export function foldForeignFields(
  body: Record<string, unknown>,
  route: "native" | "openai",
): Record<string, unknown> {
  const folded: Record<string, unknown> = { ...body };
  for (const name of DROPPED) delete folded[name];
  for (const [name, [off, why]] of Object.entries(OFF_VALUES)) {
    const value = folded[name];
    if (value === undefined || value === null) continue;
    if (!off(value)) throw badRequest(`"${name}" is not supported here: ${why}`, name);
    delete folded[name];
  }
  foldCustomTokenBans(folded);
  foldDynamicTemperature(folded);
  const aliases = route === "native" ? { ...ALIASES, logprobs: "n_probs" } : ALIASES;
  for (const [alias, field] of Object.entries(aliases)) {
    const value = folded[alias];
    delete folded[alias];
    if (value === undefined || value === null) continue;
    const same = field === "max_tokens" ? LENGTH_FIELDS : [field];
    const other = same.find((name) => folded[name] !== undefined && folded[name] !== null);
    if (other === undefined) folded[field] = value;
    else if (!sameValue(folded[other], value)) {
      throw badRequest(`"${alias}" and "${other}" disagree; send one of them`, alias);
    }
  }
  if (folded.grammar === "") delete folded.grammar;
  if (Array.isArray(folded.logit_bias)) folded.logit_bias = biasObject(folded.logit_bias);
  return folded;
}

/**
 * `custom_token_bans` (ids, as a comma-separated string or an array): SillyTavern also puts them in
 * `logit_bias` for llama.cpp; accepted where every one is banned there.
 */
function foldCustomTokenBans(folded: Record<string, unknown>): void {
  const value = folded.custom_token_bans;
  delete folded.custom_token_bans;
  if (value === undefined || value === null || value === "") return;
  const ids = typeof value === "string" ? value.split(",").map((s) => s.trim()) : value;
  if (!Array.isArray(ids) || !ids.every((id) => typeof id === "number" || typeof id === "string")) {
    throw badRequest('"custom_token_bans" must be token ids', "custom_token_bans");
  }
  const bias = folded.logit_bias;
  const banned = (id: number | string) =>
    Array.isArray(bias)
      ? bias.some((pair) =>
        Array.isArray(pair) && typeof pair[0] === "number" && String(pair[0]) === String(id) &&
        isBan(pair[1])
      )
      : isObject(bias) && isBan(bias[String(id)]);
  if (!ids.every(banned)) {
    throw badRequest(
      '"custom_token_bans" is not supported here: ban tokens in "logit_bias" ([id, false])',
      "custom_token_bans",
    );
  }
}

/** Whether two field values are the same: equal scalars, or arrays of equal scalars. */
function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((item, i) => isScalar(item) && item === b[i]);
  }
  return isScalar(a) && a === b;
}

function isScalar(value: unknown): boolean {
  return value === null || ["string", "number", "boolean"].includes(typeof value);
}

function isBan(bias: unknown): boolean {
  return bias === false || (typeof bias === "number" && bias <= -100);
}

/**
 * text-generation-webui's dynamic temperature (`dynamic_temperature`, `dynatemp_low`,
 * `dynatemp_high`): accepted where it says what `temperature` and `dynatemp_range` say
 * (SillyTavern sends both), so nothing contradicts the fields that are read.
 */
function foldDynamicTemperature(folded: Record<string, unknown>): void {
  const { dynamic_temperature: on, dynatemp_low: low, dynatemp_high: high } = folded;
  delete folded.dynamic_temperature;
  delete folded.dynatemp_low;
  delete folded.dynatemp_high;
  if (on === undefined && low === undefined && high === undefined) return;
  const { temperature, dynatemp_range: range = 0 } = folded;
  const near = (value: unknown, target: number) =>
    value === undefined || (typeof value === "number" && Math.abs(value - target) < 1e-6);
  const agrees = typeof temperature === "number" && typeof range === "number" &&
    (on === undefined || on === (range > 0)) &&
    near(low, temperature - range) && near(high, temperature + range);
  if (!agrees) {
    throw badRequest(
      '"dynatemp_low" and "dynatemp_high" must be "temperature" ∓ "dynatemp_range"; ' +
        'send "dynatemp_range" alone',
      "dynatemp_low",
    );
  }
}

/** llama-server's `[[token, bias], …]` form of `logit_bias` as OpenAI's object (false bans). */
function biasObject(pairs: unknown[]): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  for (const pair of pairs) {
    if (!Array.isArray(pair) || pair.length !== 2 || !Number.isInteger(pair[0])) {
      throw badRequest(
        '"logit_bias" must be an object of token ids, or an array of [token id, bias] pairs',
        "logit_bias",
      );
    }
    object[String(pair[0])] = pair[1] === false ? -100 : pair[1];
  }
  return object;
}
