/**
 * The fields Ollama's generating endpoints share, mapped onto the engine's request fields:
 * `options` (sampling and limits), `format` (`"json"` or a JSON schema), `keep_alive` and
 * `think`. The result is an OpenAI-equivalent {@link Fields} object for `startGeneration`,
 * plus what the Ollama adapter applies itself (`num_ctx`, `keep_alive`). Options Shimmy cannot
 * honour per request are a 400 that names them and says what to do instead.
 *
 * @module
 */

import { chatLogprobsRequest } from "../logprobs_wire.ts";
import { parseDuration } from "../../models/registry.ts";
import { badRequest } from "../http_error.ts";
import { Fields, type TemplateFields } from "../request_body.ts";

/** Ollama `options` and the engine field each becomes. */
const SAMPLING_OPTIONS: Record<string, string> = {
  temperature: "temperature",
  top_k: "top_k",
  top_p: "top_p",
  min_p: "min_p",
  typical_p: "typical_p",
  seed: "seed",
  stop: "stop",
  repeat_penalty: "repeat_penalty",
  repeat_last_n: "repeat_last_n",
  presence_penalty: "presence_penalty",
  frequency_penalty: "frequency_penalty",
  mirostat: "mirostat",
  mirostat_tau: "mirostat_tau",
  mirostat_eta: "mirostat_eta",
};

/**
 * Load-time options of Ollama, fixed for a Shimmy server when it starts: the flag to use
 * instead, or why it has no equivalent.
 */
const SERVER_OPTIONS: Record<string, string> = {
  num_gpu: "start the server with --n-gpu-layers",
  main_gpu: "start the server with --main-gpu",
  num_thread: "start the server with --threads",
  num_batch: "start the server with --batch-size",
  use_mmap: "start the server with --no-mmap to read the weights into memory",
  use_mlock: "Shimmy does not lock model memory",
  low_vram: "start the server with a smaller --n-gpu-layers",
  f16_kv: "Shimmy's KV cache is always f16",
  vocab_only: "Shimmy loads whole models",
  logits_all: "ask for log-probabilities on /v1/chat/completions",
  embedding_only: "use /api/embed",
  numa: "Shimmy has no NUMA setting",
  num_keep: "Shimmy does not shift the context; a prompt that does not fit is refused",
  penalize_newline: "newlines are penalized like any other token",
};

/** Sampler options Shimmy lacks, accepted only at the value that turns them off. */
const OFF_VALUES: Record<string, number> = { tfs_z: 1 };

/** An Ollama generating request, ready for `startGeneration`. */
export interface OllamaFields {
  /** OpenAI-equivalent fields: `model`, `max_tokens`, `stop`, sampling, `response_format`. */
  fields: Fields;
  /** `stream` (Ollama's default is true). */
  stream: boolean;
  /** `options.num_ctx`: the request's context window, in tokens. */
  numCtx?: number;
  /** `keep_alive` in milliseconds (negative: never unload; 0: unload after the reply). */
  keepAliveMs?: number;
  /** What `think` asks of the template. */
  template: TemplateFields;
  /** `logprobs` with `top_logprobs`: alternatives to report per token (undefined: none). */
  logprobs?: number;
}

/**
 * Reads `model`, `stream`, `options`, `format`, `keep_alive`, `think`, `logprobs` and
 * `top_logprobs`.
 *
 * @param body The parsed JSON body.
 * @param model The resolved model name.
 * @returns The engine fields and what the adapter applies itself.
 * @throws {HttpError} 400 naming an option that is malformed or cannot be honoured.
 * @example
 * ```ts
 * const { fields } = ollamaFields({ options: { num_predict: 8 } }, "tiny:latest");
 * fields.number("max_tokens"); // 8
 * ```
 */
export function ollamaFields(body: Record<string, unknown>, model: string): OllamaFields {
  const fields = new Fields(body);
  const options = readOptions(fields.object("options") ?? {});
  const keepAliveMs = keepAliveOf(fields.raw("keep_alive"));
  const logprobs = chatLogprobsRequest(fields);
  return {
    fields: new Fields({
      model,
      ...options.engine,
      ...formatOf(fields.raw("format")),
    }),
    stream: fields.boolean("stream") ?? true,
    ...(options.numCtx !== undefined ? { numCtx: options.numCtx } : {}),
    ...(keepAliveMs !== undefined ? { keepAliveMs } : {}),
    template: thinkOf(fields.raw("think")),
    ...(logprobs !== undefined ? { logprobs } : {}),
  };
}

/** `options` as engine fields; `num_predict` -1 and -2 (unbounded, fill the context) as none. */
function readOptions(
  options: Record<string, unknown>,
): { engine: Record<string, unknown>; numCtx?: number } {
  const engine: Record<string, unknown> = {};
  let numCtx: number | undefined;
  for (const [name, value] of Object.entries(options)) {
    if (value === null || value === undefined) continue;
    const field = SAMPLING_OPTIONS[name];
    if (field !== undefined) {
      engine[field] = value;
    } else if (name === "num_predict") {
      if (typeof value !== "number" || !Number.isInteger(value) || value < -2) {
        throw optionError(name, "must be an integer: tokens to generate, -1 for no limit");
      }
      if (value >= 0) engine.max_tokens = value;
    } else if (name === "num_ctx") {
      if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
        throw optionError(name, "must be a positive integer");
      }
      numCtx = value;
    } else if (name in OFF_VALUES) {
      if (value !== OFF_VALUES[name]) {
        throw optionError(name, `is not supported; leave it out or set it to ${OFF_VALUES[name]}`);
      }
    } else if (name in SERVER_OPTIONS) {
      throw optionError(name, `cannot be set per request: ${SERVER_OPTIONS[name]}`);
    } else {
      throw optionError(name, "is not an option Shimmy knows; remove it");
    }
  }
  if (engine.repeat_last_n === -1) {
    throw optionError("repeat_last_n", "of -1 (the whole context) is not supported; give tokens");
  }
  if (engine.repeat_last_n !== undefined) {
    const n = engine.repeat_last_n;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0) {
      throw optionError("repeat_last_n", "must be an integer of 0 or more");
    }
  }
  return { engine, ...(numCtx !== undefined ? { numCtx } : {}) };
}

function optionError(name: string, message: string) {
  return badRequest(`"options.${name}" ${message}`, "options");
}

/** `format`: `"json"` for any JSON object, a schema object for that schema, `""` for none. */
function formatOf(value: unknown): Record<string, unknown> {
  if (value === undefined || value === null || value === "") return {};
  if (value === "json") return { response_format: { type: "json_object" } };
  if (typeof value === "object" && !Array.isArray(value)) {
    return {
      response_format: { type: "json_schema", json_schema: { name: "output", schema: value } },
    };
  }
  throw badRequest('"format" must be "json" or a JSON schema object', "format");
}

/**
 * `keep_alive`: seconds as a number, or a duration (`"5m"`, `"1h"`, `"30s"`, `"0"`); negative
 * keeps the model loaded until the server stops.
 */
function keepAliveOf(value: unknown): number | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value === "number" && Number.isFinite(value)) {
    return value < 0 ? -1 : foreverPastCentury(value * 1000);
  }
  if (typeof value === "string") {
    if (/^-\d/.test(value.trim())) return -1;
    try {
      return foreverPastCentury(parseDuration(value));
    } catch {
      // reported below
    }
  }
  throw badRequest(
    '"keep_alive" must be seconds or a duration such as "5m", "1h" or "0" (negative: forever)',
    "keep_alive",
  );
}

/** A keep-alive of more than a century, in ms, is forever (-1): no date or timer holds 1e16 ms. */
function foreverPastCentury(ms: number): number {
  return ms > CENTURY_MS ? -1 : ms;
}

/** A hundred years in ms. */
const CENTURY_MS = 100 * 365.25 * 24 * 3600 * 1000;

/**
 * `think`: true or false turns the template's thinking on or off; a level also sets effort. As
 * in Ollama, asking a model whose template does not think is a 400.
 */
function thinkOf(value: unknown): TemplateFields {
  if (value === undefined || value === null) return {};
  if (value === false) return { kwargs: { enable_thinking: false } };
  if (value === true) return { kwargs: { enable_thinking: true }, asksThinking: "think" };
  if (value === "high" || value === "medium" || value === "low") {
    return { kwargs: { enable_thinking: true }, reasoningEffort: value, asksThinking: "think" };
  }
  throw badRequest('"think" must be true, false, "high", "medium" or "low"', "think");
}
