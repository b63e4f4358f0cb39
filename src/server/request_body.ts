/**
 * Reading and validating JSON request bodies: a size limit (413), JSON syntax (400), and typed
 * field accessors that name the field at fault, and the refusal of fields an endpoint does not
 * read ({@link refuseUnknownFields}).
 *
 * @module
 */

import { jsonExcess, MAX_JSON_DEPTH, MAX_JSON_VALUES } from "../util/json_depth.ts";
import { I32_MAX } from "../util/limits.ts";
import type { ContinuedPart } from "../engine/template_continuation.ts";
import type { TemplateMessage } from "../engine/templates.ts";
import type { SamplingParams } from "../engine/sampling.ts";
import { StructuredOutputError } from "../engine/structured/errors.ts";
import { structuredOutputGrammar } from "../engine/structured/response_format.ts";
import { badRequest, HttpError } from "./http_error.ts";
import { concatBytes } from "../util/bytes.ts";
import { samplerOrder } from "./sampler_order_field.ts";
import { IncomingRequest, type ServedRequest } from "./served_request.ts";

/** OpenAI's `reasoning_effort` values (chat, and the Responses API's `reasoning.effort`). */
export const REASONING_EFFORTS: readonly string[] = [
  "none",
  "minimal",
  "low",
  "medium",
  "high",
  "xhigh",
  "max",
];

/** Largest accepted request body. */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;

/** Default time a request body may take to arrive. */
export const BODY_TIMEOUT_MS = 30_000;

/** Limits for {@link readJsonBody}. */
export interface BodyLimits {
  /** Most bytes accepted. Default {@link MAX_BODY_BYTES}. */
  maxBytes?: number;
  /** Most milliseconds the whole body may take. Default {@link BODY_TIMEOUT_MS}. */
  timeoutMs?: number;
}

/**
 * Reads a request body as a JSON object, within a size and a time limit.
 *
 * @param request The request.
 * @param limits Size and time limits.
 * @returns The parsed object.
 * @throws {HttpError} 413 when too large, 408 when too slow, 400 when not a JSON object.
 * @example
 * ```ts
 * const body = await readJsonBody(request, { timeoutMs: 10_000 });
 * ```
 */
export async function readJsonBody(
  request: ServedRequest,
  limits: BodyLimits = {},
): Promise<Record<string, unknown>> {
  return parseJsonObject(await readBodyText(request, limits));
}

/**
 * Reads a request body that is a JSON array (llama-server's `POST /lora-adapters`), within the
 * server's body time limit and the default size limit.
 *
 * @param request The request.
 * @param settings The server's settings.
 * @returns The parsed array.
 * @throws {HttpError} 413 when too large, 408 when too slow, 400 when not a JSON array.
 */
export async function readRequestJsonArray(
  request: ServedRequest,
  settings: { bodyTimeoutMs?: number },
): Promise<unknown[]> {
  const text = await readBodyText(request, { timeoutMs: settings.bodyTimeoutMs });
  const value = parseJsonText(text);
  if (!Array.isArray(value)) throw badRequest("Request body must be a JSON array");
  return value;
}

/** A body's text, within the size and time limits, as UTF-8. */
async function readBodyText(request: ServedRequest, limits: BodyLimits): Promise<string> {
  const encoding = request.headers.get("content-encoding")?.trim().toLowerCase();
  if (encoding && encoding !== "identity") {
    // Read as it is, a compressed body would be refused as text that is not UTF-8.
    throw new HttpError(
      415,
      `Content-Encoding "${encoding}" is not supported: send the body uncompressed`,
      { code: "unsupported_media_type" },
    );
  }
  const limit = limits.maxBytes ?? MAX_BODY_BYTES;
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) throw bodyTooLarge(limit);
  const bytes = await readBytes(request, limit, limits.timeoutMs ?? BODY_TIMEOUT_MS);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw badRequest("Request body is not valid UTF-8");
  }
}

/**
 * Reads a request body as a JSON object within the server's body time limit (`--body-timeout`)
 * and the default size limit: what every JSON endpoint does first.
 *
 * @param request The request.
 * @param settings The server's settings.
 * @returns The parsed object.
 * @throws {HttpError} 413 when too large, 408 when too slow, 400 when not a JSON object.
 * @example
 * ```ts
 * const body = await readRequestJson(request, ctx.settings);
 * ```
 */
export function readRequestJson(
  request: ServedRequest,
  settings: { bodyTimeoutMs?: number },
): Promise<Record<string, unknown>> {
  return readJsonBody(request, { timeoutMs: settings.bodyTimeoutMs });
}

function bodyTooLarge(limit: number): HttpError {
  return new HttpError(413, `Request body is larger than ${limit} bytes`, {
    code: "body_too_large",
    headers: { connection: "close" },
  });
}

async function readBytes(request: ServedRequest, limit: number, timeoutMs: number) {
  const whole = request instanceof IncomingRequest ? request.takeWholeBody() : undefined;
  if (whole) {
    if (whole.length > limit) throw bodyTooLarge(limit);
    return whole;
  }
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  // The time limit cancels the read in flight (a race per read kept a reaction per piece alive:
  // a body sent a byte at a time had grown the heap by hundreds of megabytes).
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, timeoutMs);
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (timedOut) {
        throw new HttpError(408, `The request body did not arrive within ${timeoutMs / 1000} s`, {
          code: "request_timeout",
          headers: { connection: "close" },
        });
      }
      if (done) break;
      size += value.length;
      if (size > limit) throw bodyTooLarge(limit);
      chunks.push(value);
    }
  } catch (error) {
    reader.cancel().catch(() => {});
    if (error instanceof HttpError) throw error;
    // The connection ended mid-body, or its chunked framing broke.
    throw new HttpError(
      400,
      `The request body ended before it was whole: ${(error as Error)?.message ?? error}`,
      {
        code: "incomplete_body",
        headers: { connection: "close" },
      },
    );
  } finally {
    clearTimeout(timer);
  }
  return concatBytes(chunks);
}

/**
 * Parses text as a JSON object.
 *
 * @param text The text.
 * @returns The object.
 * @throws {HttpError} 400 for invalid JSON or a non-object.
 */
export function parseJsonObject(text: string): Record<string, unknown> {
  const value = parseJsonText(text);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw badRequest("Request body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

/**
 * A body's JSON value; a 400 for text that is not JSON, nests deeper or holds more strings,
 * arrays and objects than any request needs (refused before the parse, which they would slow).
 */
function parseJsonText(text: string): unknown {
  const excess = jsonExcess(text, MAX_JSON_DEPTH, MAX_JSON_VALUES);
  if (excess === "depth") {
    throw badRequest(
      `Request body nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep; flatten it`,
    );
  }
  if (excess === "values") {
    throw badRequest(
      `Request body holds more than ${MAX_JSON_VALUES} strings, arrays and objects (numbers do ` +
        "not count); split it into smaller requests",
    );
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw badRequest(`Request body is not valid JSON: ${(error as Error).message}`);
  }
}

/**
 * Refuses the fields an endpoint does not read: a field Shimmy cannot honour is a 400 naming it,
 * never silently ignored. A field sent as `null` asks for nothing and passes.
 *
 * @param body The parsed body.
 * @param allowed The fields the endpoint reads.
 * @param route The endpoint, for the message.
 * @throws {HttpError} 400 naming the first unknown field.
 * @example
 * ```ts
 * refuseUnknownFields({ model: "m", mirostat: 2 }, new Set(["model"]), "/api/generate"); // throws
 * ```
 */
export function refuseUnknownFields(
  body: Record<string, unknown>,
  allowed: ReadonlySet<string>,
  route: string,
): void {
  for (const [name, value] of Object.entries(body)) {
    if (value === null || allowed.has(name)) continue;
    throw badRequest(`Unknown field "${name}": ${route} does not support it; remove it`, name);
  }
}

/**
 * Refuses a string field that asks for something: it may only be absent or empty.
 *
 * @param fields The body.
 * @param name The field.
 * @param why What the 400 says after the field's name.
 * @throws {HttpError} 400 when it holds text (or is not a string).
 * @example
 * ```ts
 * refuseUnlessEmpty(new Fields({ suffix: "" }), "suffix", "fill-in-the-middle is not supported");
 * ```
 */
export function refuseUnlessEmpty(fields: Fields, name: string, why: string): void {
  const value = fields.string(name);
  if (value !== undefined && value !== "") throw badRequest(`"${name}": ${why}`, name);
}

/** Typed, validating access to a JSON object's fields. */
export class Fields {
  readonly #body: Record<string, unknown>;

  /** @param body The parsed JSON object. */
  constructor(body: Record<string, unknown>) {
    this.#body = body;
  }

  #present(name: string): unknown {
    const value = this.#body[name];
    return value === null ? undefined : value;
  }

  /** A string field. */
  string(name: string): string | undefined {
    const value = this.#present(name);
    if (value === undefined) return undefined;
    if (typeof value !== "string") throw badRequest(`"${name}" must be a string`, name);
    return value;
  }

  /** A boolean field. */
  boolean(name: string): boolean | undefined {
    const value = this.#present(name);
    if (value === undefined) return undefined;
    if (typeof value !== "boolean") throw badRequest(`"${name}" must be a boolean`, name);
    return value;
  }

  /** A number field within bounds. */
  number(
    name: string,
    bounds: { min?: number; max?: number; integer?: boolean } = {},
  ): number | undefined {
    const value = this.#present(name);
    if (value === undefined) return undefined;
    if (typeof value !== "number" || !Number.isFinite(value)) {
      throw badRequest(`"${name}" must be a number`, name);
    }
    if (bounds.integer && !Number.isInteger(value)) {
      throw badRequest(`"${name}" must be an integer`, name);
    }
    if (bounds.min !== undefined && value < bounds.min) {
      throw badRequest(`"${name}" must be at least ${bounds.min}`, name);
    }
    if (bounds.max !== undefined && value > bounds.max) {
      throw badRequest(`"${name}" must be at most ${bounds.max}`, name);
    }
    return value;
  }

  /** A string or an array of strings (OpenAI `stop`). */
  strings(name: string): string[] | undefined {
    const value = this.#present(name);
    if (value === undefined) return undefined;
    if (typeof value === "string") return [value];
    if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value;
    throw badRequest(`"${name}" must be a string or an array of strings`, name);
  }

  /** An object field. */
  object(name: string): Record<string, unknown> | undefined {
    const value = this.#present(name);
    if (value === undefined) return undefined;
    if (typeof value !== "object" || Array.isArray(value)) {
      throw badRequest(`"${name}" must be an object`, name);
    }
    return value as Record<string, unknown>;
  }

  /** The raw value of a field. */
  raw(name: string): unknown {
    return this.#present(name);
  }
}

/** Generation settings common to every endpoint. */
export interface GenerationFields {
  maxTokens?: number;
  stop: string[];
  sampling: SamplingParams;
  ignoreEos: boolean;
  /** Drop the oldest prompt tokens when the prompt does not fit. */
  truncate: boolean;
  stream: boolean;
  includeUsage: boolean;
  /** The raw `lora` field (resolved against the model's adapters later). */
  lora?: unknown;
  /** `n`: choices to generate from the prompt (only the OpenAI endpoints take more than 1). */
  choices: number;
  /**
   * Log-probabilities per generated token, with this many alternatives; set by the endpoints
   * that report them (each reads its own spelling of the field).
   */
  logprobs?: number;
  /** `n_indent`: end where a later line is indented less (llama-server's code completion). */
  minIndent?: number;
  /** `t_max_predict_ms`: end at the first newline after this long generating. */
  lineTimeLimitMs?: number;
  /** `cache_prompt: false`: evaluate the whole prompt, reusing nothing of a slot's cache. */
  cachePrompt: boolean;
}

/**
 * Reads the sampling and limit fields shared by the OpenAI and native endpoints. It needs no
 * model, so a bad request is a 400 before one is loaded; {@link checkTokenIds} checks
 * `logit_bias`'s token ids against the model's vocabulary once it is.
 *
 * @param fields The body.
 * @returns The settings.
 * @throws {HttpError} 400 naming the bad field.
 */
export function generationFields(fields: Fields): GenerationFields {
  // Every spelling is read, so that one hidden behind another is still checked.
  // llama-server's `n_cmpl` (on /completion and /infill) is `n` under its own name.
  const cmpl = fields.number("n_cmpl", { min: 1, max: MAX_CHOICES, integer: true });
  const n = fields.number("n", { min: 1, max: MAX_CHOICES, integer: true });
  const choices = cmpl ?? n ?? 1;
  // llama.cpp counts tokens in 32 bits; no context holds more.
  const completionTokens = fields.number("max_completion_tokens", {
    min: 0,
    max: I32_MAX,
    integer: true,
  });
  const tokens = fields.number("max_tokens", { min: 0, max: I32_MAX, integer: true });
  const predict = fields.number("n_predict", { min: -1, max: I32_MAX, integer: true });
  const maxTokens = completionTokens ?? tokens ?? positiveOrUndefined(predict);
  const streamOptions = fields.object("stream_options");
  const includeUsage = streamOptions?.include_usage;
  if (includeUsage !== undefined && typeof includeUsage !== "boolean") {
    throw badRequest('"stream_options.include_usage" must be a boolean', "stream_options");
  }
  if (streamOptions !== undefined) {
    const unknown = Object.keys(streamOptions).find((key) => key !== "include_usage");
    if (unknown !== undefined) {
      throw badRequest(
        `Unknown field "stream_options.${unknown}": only "include_usage" is supported`,
        "stream_options",
      );
    }
    if (fields.boolean("stream") !== true) {
      throw badRequest(
        '"stream_options" is only for streamed answers ("stream": true)',
        "stream_options",
      );
    }
  }
  const sampling: SamplingParams = {};
  const set = <K extends keyof SamplingParams>(key: K, value: SamplingParams[K] | undefined) => {
    if (value !== undefined) sampling[key] = value;
  };
  set("temperature", fields.number("temperature", { min: 0, max: 100 }));
  set("topP", fields.number("top_p", { min: 0, max: 1 }));
  set("topK", fields.number("top_k", { min: 0, max: I32_MAX, integer: true }));
  set("minP", fields.number("min_p", { min: 0, max: 1 }));
  set("presencePenalty", fields.number("presence_penalty", { min: -2, max: 2 }));
  set("frequencyPenalty", fields.number("frequency_penalty", { min: -2, max: 2 }));
  set("repeatPenalty", fields.number("repeat_penalty", { min: 0 }));
  set("repeatLastN", fields.number("repeat_last_n", { min: 0, max: I32_MAX, integer: true }));
  set("typicalP", fields.number("typical_p", { min: 0, max: 1 }));
  set("minKeep", fields.number("min_keep", { min: 0, max: I32_MAX, integer: true }));
  set("seed", fields.number("seed", { min: -(2 ** 63), max: 2 ** 64 - 1, integer: true }));
  set(
    "mirostat",
    fields.number("mirostat", { min: 0, max: 2, integer: true }) as 0 | 1 | 2 | undefined,
  );
  set("mirostatTau", fields.number("mirostat_tau", { min: 0 }));
  set("mirostatEta", fields.number("mirostat_eta", { min: 0 }));
  set("topNSigma", fields.number("top_n_sigma"));
  set("xtcProbability", fields.number("xtc_probability", { min: 0, max: 1 }));
  set("xtcThreshold", fields.number("xtc_threshold", { min: 0, max: 1 }));
  set("dynatempRange", fields.number("dynatemp_range", { min: 0 }));
  set("dynatempExponent", fields.number("dynatemp_exponent", { min: 0 }));
  set("dryMultiplier", fields.number("dry_multiplier", { min: 0 }));
  set("dryBase", fields.number("dry_base", { min: 1 }));
  set(
    "dryAllowedLength",
    fields.number("dry_allowed_length", { min: 0, max: I32_MAX, integer: true }),
  );
  set(
    "dryPenaltyLastN",
    fields.number("dry_penalty_last_n", { min: 0, max: I32_MAX, integer: true }),
  );
  set("drySequenceBreakers", sequenceBreakers(fields));
  set("logitBias", logitBias(fields.object("logit_bias")));
  set("grammar", requestGrammar(fields));
  set("samplers", samplerOrder(fields, sampling));
  return {
    ...(maxTokens !== undefined ? { maxTokens } : {}),
    stop: stopStrings(fields),
    sampling,
    ignoreEos: fields.boolean("ignore_eos") ?? false,
    truncate: fields.boolean("truncate") ?? false,
    stream: fields.boolean("stream") ?? false,
    includeUsage: includeUsage === true,
    ...(fields.raw("lora") !== undefined ? { lora: fields.raw("lora") } : {}),
    choices,
    ...lineLimits(fields),
    cachePrompt: fields.boolean("cache_prompt") ?? true,
  };
}

/**
 * The grammar the request asks for: its GBNF `grammar`, or one made from `response_format` or
 * llama-server's top-level `json_schema`.
 */
function requestGrammar(fields: Fields): string | undefined {
  try {
    return structuredOutputGrammar({
      grammar: fields.string("grammar"),
      responseFormat: fields.raw("response_format"),
      jsonSchema: fields.raw("json_schema"),
    });
  } catch (error) {
    if (error instanceof StructuredOutputError) throw badRequest(error.message, error.param);
    throw error;
  }
}

/** Most choices (`n`) one request may ask for; the model's slot count bounds it too. */
const MAX_CHOICES = 128;

/** Most stop strings per request, and most characters in one. */
const MAX_STOP_STRINGS = 16;
const MAX_STOP_LENGTH = 1024;

function stopStrings(fields: Fields): string[] {
  const stop = fields.strings("stop") ?? [];
  if (stop.length > MAX_STOP_STRINGS) {
    throw badRequest(`"stop" may hold at most ${MAX_STOP_STRINGS} strings`, "stop");
  }
  if (stop.some((s) => s.length > MAX_STOP_LENGTH)) {
    throw badRequest(`Each stop string may be at most ${MAX_STOP_LENGTH} characters`, "stop");
  }
  return stop.filter((s) => s !== "");
}

/** Most DRY sequence breakers per request, and most characters in one. */
const MAX_SEQUENCE_BREAKERS = 32;
const MAX_SEQUENCE_BREAKER_LENGTH = 64;

function sequenceBreakers(fields: Fields): string[] | undefined {
  const value = fields.raw("dry_sequence_breakers");
  if (value === undefined) return undefined;
  if (
    !Array.isArray(value) || value.length > MAX_SEQUENCE_BREAKERS ||
    !value.every((s) =>
      typeof s === "string" && s !== "" && s.length <= MAX_SEQUENCE_BREAKER_LENGTH
    )
  ) {
    throw badRequest(
      `"dry_sequence_breakers" must be an array of at most ${MAX_SEQUENCE_BREAKERS} non-empty ` +
        `strings of at most ${MAX_SEQUENCE_BREAKER_LENGTH} characters`,
      "dry_sequence_breakers",
    );
  }
  return value;
}

/** `n_indent` and `t_max_predict_ms` (0 or absent: no limit). */
function lineLimits(fields: Fields): { minIndent?: number; lineTimeLimitMs?: number } {
  const minIndent = fields.number("n_indent", { min: 0, max: I32_MAX, integer: true }) ?? 0;
  const ms = fields.number("t_max_predict_ms", { min: 0, max: I32_MAX, integer: true }) ?? 0;
  return {
    ...(minIndent > 0 ? { minIndent } : {}),
    ...(ms > 0 ? { lineTimeLimitMs: ms } : {}),
  };
}

function positiveOrUndefined(n: number | undefined): number | undefined {
  return n === undefined || n < 0 ? undefined : n;
}

function logitBias(value: Record<string, unknown> | undefined): Map<number, number> | undefined {
  if (value === undefined) return undefined;
  const bias = new Map<number, number>();
  for (const [key, raw] of Object.entries(value)) {
    // Decimal digits only: Number() would read "" as 0 and " 0x1F " as 31.
    const token = /^\d+$/.test(key) ? Number(key) : NaN;
    if (!Number.isSafeInteger(token)) {
      throw badRequest(`logit_bias key "${key}" is not a token id`, "logit_bias");
    }
    if (typeof raw !== "number" || !Number.isFinite(raw) || raw < -100 || raw > 100) {
      throw badRequest(`logit_bias values must be numbers from -100 to 100`, "logit_bias");
    }
    bias.set(token, raw);
  }
  return bias;
}

/**
 * Checks the token ids a request names (`logit_bias`'s keys) against a model's vocabulary.
 *
 * @param fields The request's settings, from {@link generationFields}.
 * @param nVocab The model's vocabulary size.
 * @throws {HttpError} 400 for an id the model does not have.
 */
export function checkTokenIds(fields: GenerationFields, nVocab: number): void {
  for (const token of fields.sampling.logitBias?.keys() ?? []) {
    if (token >= nVocab) {
      throw badRequest(
        `logit_bias key "${token}" is not a token id of this model (it has ${nVocab})`,
        "logit_bias",
      );
    }
  }
}

/**
 * Reads OpenAI chat messages; `content` may be a string, `null`, or an array of
 * `{type:"text", text}` parts (as Zed and Cursor send), which are kept as parts for the
 * template (llama.cpp joins them with `\n` for templates that only take text). `tool_calls`,
 * `tool_call_id`, `name` and `reasoning_content` are passed through (another type than an
 * array for the first and strings for the others is a 400).
 *
 * @param value The `messages` field.
 * @returns The messages.
 * @throws {HttpError} 400 for a malformed message or a non-text part.
 */
export function chatMessages(value: unknown): TemplateMessage[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw badRequest('"messages" must be a non-empty array', "messages");
  }
  return value.map((message, i) => {
    if (typeof message !== "object" || message === null) {
      throw badRequest(`messages[${i}] must be an object`, "messages");
    }
    const { role, content, tool_calls, tool_call_id, name, reasoning_content } = message as Record<
      string,
      unknown
    >;
    if (typeof role !== "string" || role === "") {
      throw badRequest(`messages[${i}].role must be a string`, "messages");
    }
    for (
      const [field, value, kind] of [
        ["tool_calls", tool_calls, "array"],
        ["tool_call_id", tool_call_id, "string"],
        ["name", name, "string"],
        ["reasoning_content", reasoning_content, "string"],
      ] as const
    ) {
      const fits = value === undefined || value === null ||
        (kind === "array" ? Array.isArray(value) : typeof value === "string");
      if (!fits) {
        const expected = kind === "array" ? "an array" : "a string";
        throw badRequest(`messages[${i}].${field} must be ${expected}`, "messages");
      }
    }
    return {
      role,
      // An absent content stays absent: llama.cpp refuses it on all but assistant turns.
      ...("content" in message ? { content: messageContent(content, i) } : {}),
      ...(Array.isArray(tool_calls) ? { tool_calls } : {}),
      ...(typeof tool_call_id === "string" ? { tool_call_id } : {}),
      ...(typeof name === "string" ? { name } : {}),
      ...(typeof reasoning_content === "string" ? { reasoning_content } : {}),
    };
  });
}

function messageContent(content: unknown, i: number): TemplateMessage["content"] {
  if (content === undefined || content === null) return null;
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) {
    throw badRequest(`messages[${i}].content must be a string or an array of parts`, "messages");
  }
  return content.map((part, j) => {
    const p = part as Record<string, unknown> | null;
    if (p && p.type === "text" && typeof p.text === "string") return { type: "text", text: p.text };
    throw badRequest(
      `messages[${i}].content[${j}] is not a text part; only {"type":"text","text":…} is supported`,
      "messages",
    );
  });
}

/** What a chat request asks of the template besides its messages. */
export interface TemplateFields {
  /** `chat_template_kwargs`: extra template variables, e.g. `{"enable_thinking": false}`. */
  kwargs?: Record<string, unknown>;
  /** `reasoning_effort` (`none` turns thinking off). */
  reasoningEffort?: string;
  /** `add_generation_prompt` (default true). */
  addGenerationPrompt?: boolean;
  /** Continue the last message, the assistant's (`chat_continuation.ts`), instead of answering it. */
  continueFinal?: ContinuedPart;
  /**
   * The field that asks the model to think where thinking cannot be ignored (Ollama's `think`):
   * a template that does not think makes it a 400.
   */
  asksThinking?: string;
}

/**
 * Reads `chat_template_kwargs`, `reasoning_effort` and `add_generation_prompt`.
 *
 * @param fields The body.
 * @returns The fields that were given.
 * @throws {HttpError} 400 naming the bad field.
 */
export function templateFields(fields: Fields): TemplateFields {
  const kwargs = fields.object("chat_template_kwargs");
  if (
    kwargs !== undefined && "enable_thinking" in kwargs &&
    typeof kwargs.enable_thinking !== "boolean"
  ) {
    throw badRequest(
      '"chat_template_kwargs.enable_thinking" must be a boolean',
      "chat_template_kwargs",
    );
  }
  const reasoningEffort = fields.string("reasoning_effort");
  if (reasoningEffort !== undefined && !REASONING_EFFORTS.includes(reasoningEffort)) {
    throw badRequest(
      `"reasoning_effort" must be one of ${REASONING_EFFORTS.join(", ")}`,
      "reasoning_effort",
    );
  }
  const addGenerationPrompt = fields.boolean("add_generation_prompt");
  return {
    ...(kwargs !== undefined ? { kwargs } : {}),
    ...(reasoningEffort !== undefined ? { reasoningEffort } : {}),
    ...(addGenerationPrompt !== undefined ? { addGenerationPrompt } : {}),
  };
}
