/**
 * The fields the OpenAI endpoints (`/v1/chat/completions`, `/v1/completions`) and Shimmy's native
 * ones (`/api/generate`, `/ws/generate`, `/apply-template`) read. Any other field is a 400 that names it, so a
 * request never loses a setting it believes it made (`functions`, `audio`, a llama-server sampler
 * Shimmy does not have…). A few OpenAI fields that only steer billing, routing, caching or
 * telemetry are accepted with no effect, and some fields are accepted only with the value that
 * asks for nothing (`store: false`, `echo: false`…).
 *
 * @module
 */

import { badRequest } from "./http_error.ts";
import { Fields, refuseUnknownFields } from "./request_body.ts";

/** What `generationFields` and the shared generation path read on every endpoint. */
const GENERATION = [
  "model",
  "stream",
  "stream_options",
  "n",
  "max_tokens",
  "max_completion_tokens",
  "n_predict",
  "temperature",
  "top_p",
  "top_k",
  "min_p",
  "presence_penalty",
  "frequency_penalty",
  "repeat_penalty",
  "repeat_last_n",
  "typical_p",
  "min_keep",
  "mirostat",
  "mirostat_tau",
  "mirostat_eta",
  "top_n_sigma",
  "xtc_probability",
  "xtc_threshold",
  "dynatemp_range",
  "dynatemp_exponent",
  "dry_multiplier",
  "dry_base",
  "dry_allowed_length",
  "dry_penalty_last_n",
  "dry_sequence_breakers",
  "seed",
  "logit_bias",
  "grammar",
  "response_format",
  "json_schema",
  "stop",
  "ignore_eos",
  "truncate",
  "lora",
  "cache_prompt",
  "samplers",
];

/**
 * OpenAI fields with no effect on a local server: the prefix cache is always on, there is one
 * tier, and nothing is logged per user. `store` and `metadata` label stored completions, which
 * Shimmy does not keep (`store: true` is refused below).
 */
const OPENAI_HINTS = [
  "user",
  "safety_identifier",
  "prompt_cache_key",
  "prompt_cache_retention",
  "service_tier",
  "store",
  "metadata",
];

const CHAT_FIELDS = new Set([
  ...GENERATION,
  ...OPENAI_HINTS,
  "messages",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "reasoning_format",
  "reasoning_effort",
  "thinking_budget_tokens",
  "reasoning_budget_tokens",
  "reasoning_budget_message",
  "reasoning_control",
  "chat_template_kwargs",
  "add_generation_prompt",
  "continue_final_message",
  "echo",
  "logprobs",
  "top_logprobs",
  "modalities",
]);

const COMPLETION_FIELDS = new Set([
  ...GENERATION,
  ...OPENAI_HINTS,
  "prompt",
  "logprobs",
  "echo",
  "suffix",
  "best_of",
]);

const NATIVE_FIELDS = new Set([...GENERATION, "prompt", "messages", "system", "raw"]);

/** llama-server's own fields of `/completion` and `/infill`. */
const LLAMA_SERVER_FIELDS = [
  "prompt",
  "return_tokens",
  "response_fields",
  "n_indent",
  "t_max_predict_ms",
  "t_max_prompt_ms",
  "id_slot",
  "n_cmpl",
  "n_probs",
  "post_sampling_probs",
];

const LLAMA_COMPLETION_FIELDS = new Set([...GENERATION, ...LLAMA_SERVER_FIELDS]);

const INFILL_FIELDS = new Set([
  ...LLAMA_COMPLETION_FIELDS,
  "input_prefix",
  "input_suffix",
  "input_extra",
]);

/** Why Shimmy does not take some OpenAI fields, and what to send instead. */
const ADVICE: Record<string, string> = {
  functions: 'OpenAI\'s deprecated function calling; use "tools" and "tool_choice"',
  function_call: 'OpenAI\'s deprecated function calling; use "tools" and "tool_choice"',
  audio: "Shimmy generates text only",
  web_search_options: "Shimmy has no web search",
};

/**
 * Checks a `/v1/chat/completions` or `/v1/completions` body before anything else is read.
 *
 * @param body The parsed body.
 * @param kind `chat` or `text` (`/v1/completions`).
 * @throws {HttpError} 400 naming a field the endpoint does not read, or one sent with a value
 *   Shimmy cannot honour (`store: true`, audio `modalities`, `echo: true` on completions, `best_of`
 *   above `n`).
 * @example
 * ```ts
 * checkOpenAiFields({ messages: [], functions: [] }, "chat"); // throws: "functions" …
 * ```
 */
export function checkOpenAiFields(body: Record<string, unknown>, kind: "chat" | "text"): void {
  const route = kind === "chat" ? "/v1/chat/completions" : "/v1/completions";
  for (const [name, advice] of Object.entries(ADVICE)) {
    if (body[name] !== undefined && body[name] !== null) {
      throw badRequest(`"${name}" is not supported by ${route}: ${advice}`, name);
    }
  }
  refuseUnknownFields(body, kind === "chat" ? CHAT_FIELDS : COMPLETION_FIELDS, route);
  const fields = new Fields(body);
  if (fields.boolean("store")) {
    throw badRequest(
      '"store": true is not supported: Shimmy does not keep chat completions (the Responses ' +
        "API, /v1/responses, stores its responses)",
      "store",
    );
  }
  const metadata = fields.object("metadata");
  if (metadata !== undefined && !Object.values(metadata).every((v) => typeof v === "string")) {
    throw badRequest('"metadata" values must be strings, as OpenAI checks them', "metadata");
  }
  for (const hint of ["user", "safety_identifier", "prompt_cache_key", "service_tier"]) {
    fields.string(hint); // text only, though nothing reads it
  }
  const modalities = fields.raw("modalities");
  if (
    modalities !== undefined &&
    !(Array.isArray(modalities) && modalities.length === 1 && modalities[0] === "text")
  ) {
    throw badRequest('"modalities" must be ["text"]: Shimmy generates text only', "modalities");
  }
  // On chat completions `echo` is about a continued message (chat_continuation.ts).
  if (kind === "text" && fields.boolean("echo")) {
    throw badRequest('"echo": true is not supported; the prompt is not repeated', "echo");
  }
  const bestOf = fields.number("best_of", { min: 1, integer: true });
  if (bestOf !== undefined && bestOf !== (fields.number("n") ?? 1)) {
    throw badRequest('"best_of" is not supported; leave it out or equal to "n"', "best_of");
  }
}

/**
 * Checks an `/api/generate` body (or `/ws/generate`'s first frame).
 *
 * @param body The parsed body.
 * @throws {HttpError} 400 naming a field the endpoint does not read.
 * @example
 * ```ts
 * checkNativeFields({ prompt: "Hi", tfs_z: 0.9 }); // throws: "tfs_z" …
 * ```
 */
export function checkNativeFields(body: Record<string, unknown>): void {
  refuseUnknownFields(body, NATIVE_FIELDS, "/api/generate");
}

/**
 * Checks a `/completion` or `/infill` body (llama-server's own routes). Two fields are accepted
 * with no effect: `t_max_prompt_ms` (llama-server does not act on it either) and `id_slot` (a
 * request goes to the slot whose cache holds the most of its prompt, which is what pinning a
 * client to a slot gets).
 *
 * @param body The parsed body.
 * @param route Which route: `/infill` also takes the code around the gap.
 * @throws {HttpError} 400 naming a field the endpoint does not read, or one of the wrong type.
 * @example
 * ```ts
 * checkLlamaCompletionFields({ prompt: "Hi", n_probs: 2 }, "/completion"); // throws: "n_probs" …
 * ```
 */
export function checkLlamaCompletionFields(
  body: Record<string, unknown>,
  route: "/completion" | "/infill",
): void {
  refuseUnknownFields(body, route === "/infill" ? INFILL_FIELDS : LLAMA_COMPLETION_FIELDS, route);
  const fields = new Fields(body);
  fields.number("t_max_prompt_ms", { min: 0, integer: true });
  fields.number("id_slot", { min: -1, integer: true });
}

/**
 * Checks an `/apply-template` body: a chat completion's fields (it renders the prompt that body
 * would get; the generation settings do not change the prompt).
 *
 * @param body The parsed body.
 * @throws {HttpError} 400 naming a field `/v1/chat/completions` does not read.
 * @example
 * ```ts
 * checkTemplateFields({ messages: [], max_tokens: 8 }); // fine
 * ```
 */
export function checkTemplateFields(body: Record<string, unknown>): void {
  refuseUnknownFields(body, CHAT_FIELDS, "/apply-template");
}
