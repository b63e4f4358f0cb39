/**
 * A Responses API request (`POST /v1/responses`) read into what the chat path takes: the
 * conversation (a stored response's items, then `input`) becomes OpenAI chat messages
 * (`function_call` items join the assistant turn as `tool_calls`, `function_call_output` items
 * become `tool` messages), and `instructions` the system message; the settings become the
 * fields of a chat completion request (`max_output_tokens` → `max_tokens`, flat function tools →
 * `{"type":"function","function":…}`, `text.format` → `response_format`, `reasoning.effort` →
 * `reasoning_effort`), so one generation path serves both APIs. Every field is checked: what
 * Shimmy cannot honour (other tool types, images, background mode…) is a 400 naming it.
 *
 * @module
 */

import type { TemplateMessage } from "../engine/templates.ts";
import { badRequest, HttpError } from "./http_error.ts";
import { Fields, REASONING_EFFORTS, refuseUnknownFields } from "./request_body.ts";
import { itemsSize, type ResponseStore } from "./response_store.ts";
import { chatMessagesOf, inputItems, type Item } from "./responses_items.ts";
import { isObject } from "../util/objects.ts";
import { mebibytes } from "../util/bytes.ts";

/** What a Responses request asks, read and checked. */
export interface ResponsesRequest {
  /** The same request as chat completion fields (`model`, sampling, limits, tools…). */
  chat: Record<string, unknown>;
  /** The messages to render: `instructions`, the continued conversation, then `input`. */
  messages: TemplateMessage[];
  /** The conversation before this request (from `previous_response_id`), as items. */
  history: Item[];
  /** This request's input, as items (a string input is one user message). */
  input: Item[];
  /** Keep the response for `GET` and `previous_response_id` (`store`, default true). */
  store: boolean;
  /** Answer with server-sent events. */
  stream: boolean;
  /** Generate whether or not a client waits (`background: true`; see `responses_background.ts`). */
  background: boolean;
  /**
   * `reasoning.summary` was asked: reasoning items carry their text as a summary too (Shimmy
   * does not summarize; the model's reasoning is shown whole).
   */
  summarize: boolean;
  /** The settings the response object repeats (`instructions`, `tools`, `text`…). */
  echo: Record<string, unknown>;
}

/** The fields this endpoint reads; any other is a 400, never silently ignored. */
const KNOWN_FIELDS = new Set([
  "model",
  "input",
  "instructions",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "max_output_tokens",
  "temperature",
  "top_p",
  "text",
  "reasoning",
  "metadata",
  "store",
  "previous_response_id",
  "stream",
  "stream_options",
  "truncation",
  "include",
  "top_logprobs",
  "background",
  // Hints that change nothing here: the prefix cache is always on, there is one tier.
  "user",
  "safety_identifier",
  "prompt_cache_key",
  "prompt_cache_retention",
  "service_tier",
  // llama-server's sampling extensions, read as on /v1/chat/completions.
  "seed",
  "top_k",
  "min_p",
  "stop",
]);

/** OpenAI's rule for function names. */
const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** `reasoning.summary` values: each gets the model's reasoning text whole as its summary. */
const SUMMARIES = ["auto", "concise", "detailed"];

function given(value: unknown): boolean {
  return value !== undefined && value !== null;
}

/**
 * Reads and checks a Responses request.
 *
 * @param body The JSON body.
 * @param store The stored responses (for `previous_response_id` and `item_reference`).
 * @returns The request, ready for the chat path.
 * @throws {HttpError} 400 naming the field Shimmy cannot honour; 404 for an unknown
 *   `previous_response_id`.
 * @example
 * ```ts
 * const request = readResponsesRequest({ model: "m", input: "Hi" }, new ResponseStore());
 * request.messages; // [{ role: "user", content: "Hi" }]
 * ```
 */
export function readResponsesRequest(
  body: Record<string, unknown>,
  store: ResponseStore,
): ResponsesRequest {
  refuseUnknownFields(body, KNOWN_FIELDS, "/v1/responses");
  const fields = new Fields(body);
  refuseUnsupported(fields);
  const maxOutput = fields.number("max_output_tokens", { min: 1, integer: true });
  const temperature = fields.number("temperature", { min: 0, max: 2 });
  const topP = fields.number("top_p", { min: 0, max: 1 });
  const instructions = fields.string("instructions");
  const previous = fields.string("previous_response_id");
  const tools = functionTools(fields.raw("tools"));
  const choice = fields.raw("tool_choice") ?? "auto";
  const parallel = fields.boolean("parallel_tool_calls") ?? true;
  const text = fields.object("text") ?? {};
  const extra = Object.keys(text).find((key) => key !== "format" && key !== "verbosity");
  if (extra !== undefined) throw badRequest(`"text.${extra}" is not supported`, "text");
  const format = text.format ?? { type: "text" };
  const reasoning = reasoningSettings(fields.object("reasoning"));
  const effort = reasoning.effort;
  const truncation = fields.string("truncation") ?? "disabled";
  if (truncation !== "auto" && truncation !== "disabled") {
    throw badRequest('"truncation" must be "auto" or "disabled"', "truncation");
  }

  const history = previous === undefined ? [] : previousItems(store, previous);
  const input = inputItems(fields.raw("input"), store);
  checkConversationSize(history, input);
  const messages = chatMessagesOf([...history, ...input], instructions);
  if (!messages.some((m) => m.role !== "system")) {
    throw badRequest('"input" is required: send a string or an array of input items', "input");
  }
  const chat: Record<string, unknown> = {
    model: body.model,
    stream: body.stream,
    max_tokens: maxOutput,
    temperature,
    top_p: topP,
    seed: body.seed,
    top_k: body.top_k,
    min_p: body.min_p,
    stop: body.stop,
    tools: tools.map(({ type, description, ...fn }) => ({
      type,
      function: { ...fn, ...(description !== null ? { description } : {}) },
    })),
    tool_choice: chatToolChoice(choice),
    parallel_tool_calls: parallel,
    response_format: responseFormat(format, text.verbosity),
    reasoning_effort: effort,
    truncate: truncation === "auto",
  };
  return {
    chat,
    messages,
    history,
    input,
    store: fields.boolean("store") ?? true,
    stream: fields.boolean("stream") ?? false,
    background: fields.boolean("background") ?? false,
    summarize: reasoning.summary !== undefined,
    echo: {
      instructions: instructions ?? null,
      max_output_tokens: maxOutput ?? null,
      metadata: metadata(fields.raw("metadata")),
      parallel_tool_calls: parallel,
      previous_response_id: previous ?? null,
      reasoning: { effort: effort ?? null, summary: reasoning.summary ?? null },
      temperature: temperature ?? null,
      text: { format },
      tool_choice: choice,
      tools,
      top_p: topP ?? null,
      truncation,
    },
  };
}

/**
 * Most JSON text (UTF-16 units) the conversation of one request may hold, its continued items
 * and input together: 4 million tokens or so, far more than any context. Each request hands its
 * whole conversation to the template's worker; a chain of 8 MB reasoning items (which the
 * template then dropped) had grown each request's work to seconds of the event loop.
 */
export const MAX_CONVERSATION_CHARS = 16 * 1024 * 1024;

/** Refuses a conversation longer than {@link MAX_CONVERSATION_CHARS}, before any work on it. */
function checkConversationSize(history: Item[], input: Item[]): void {
  const continued = itemsSize(history);
  const size = continued + itemsSize(input);
  if (size <= MAX_CONVERSATION_CHARS) return;
  throw new HttpError(
    400,
    `This conversation is ${mebibytes(size)} MiB of items, more than the ` +
      `${mebibytes(MAX_CONVERSATION_CHARS)} MiB one request may carry (far more than a context ` +
      "holds); start a new conversation, or send fewer or smaller items",
    {
      param: continued > MAX_CONVERSATION_CHARS ? "previous_response_id" : "input",
      code: "context_length_exceeded",
    },
  );
}

/** Known fields whose other values Shimmy cannot honour. */
function refuseUnsupported(fields: Fields): void {
  if (fields.boolean("background") && fields.boolean("store") === false) {
    throw badRequest(
      '"background": true needs the response stored (store: true, the default): it is fetched ' +
        "and cancelled by its id",
      "background",
    );
  }
  if ((fields.number("top_logprobs", { min: 0, integer: true }) ?? 0) > 0) {
    throw badRequest('"top_logprobs" is not supported on /v1/responses', "top_logprobs");
  }
  const include = fields.raw("include") ?? [];
  if (!Array.isArray(include)) throw badRequest('"include" must be an array', "include");
  for (const value of include) {
    // Reasoning comes back as readable `content`, which serves the same purpose.
    if (value !== "reasoning.encrypted_content") {
      throw badRequest(
        `"include": ${JSON.stringify(value)} is not supported; only ` +
          '"reasoning.encrypted_content" is accepted (reasoning items carry their text)',
        "include",
      );
    }
  }
  const streamOptions = fields.object("stream_options");
  if (streamOptions !== undefined) {
    // Events carry no obfuscation padding: turning it off is what there is.
    const { include_obfuscation: obfuscation, ...others } = streamOptions;
    const other = Object.keys(others)[0];
    if (other !== undefined || (obfuscation !== undefined && obfuscation !== false)) {
      throw badRequest(
        '"stream_options" supports only "include_obfuscation": false (events carry no ' +
          `obfuscation padding); ${other !== undefined ? `"${other}" is unknown` : "true is not"}`,
        "stream_options",
      );
    }
    if (fields.boolean("stream") !== true) {
      throw badRequest(
        '"stream_options" is only for streamed responses ("stream": true)',
        "stream_options",
      );
    }
  }
}

/** The function tools, each `{type, name, description, parameters, strict}` as echoed. */
function functionTools(value: unknown): Item[] {
  if (!given(value)) return [];
  if (!Array.isArray(value)) throw badRequest('"tools" must be an array', "tools");
  return value.map((tool, i) => {
    if (!isObject(tool) || tool.type !== "function") {
      const type = isObject(tool) ? JSON.stringify(tool.type) : "not an object";
      throw badRequest(
        `tools[${i}] is ${type}: only function tools ({"type":"function","name",…}) are ` +
          "supported; built-in tools such as web_search need OpenAI's servers",
        "tools",
      );
    }
    const { name, description, parameters, strict } = tool;
    if (typeof name !== "string" || !FUNCTION_NAME.test(name)) {
      throw badRequest(`tools[${i}].name must be 1-64 letters, digits, "_" or "-"`, "tools");
    }
    if (given(description) && typeof description !== "string") {
      throw badRequest(`tools[${i}].description must be a string`, "tools");
    }
    if (given(parameters) && !isObject(parameters)) {
      throw badRequest(`tools[${i}].parameters must be a JSON schema object`, "tools");
    }
    if (given(strict) && typeof strict !== "boolean") {
      throw badRequest(`tools[${i}].strict must be a boolean`, "tools");
    }
    // The grammar holds arguments to the schema whatever `strict` says (OpenAI's default).
    return {
      type: "function",
      name,
      description: description ?? null,
      parameters: parameters ?? { type: "object", properties: {} },
      strict: strict ?? true,
    };
  });
}

/** `tool_choice` in chat's shape; the chat path checks the names against the tools. */
function chatToolChoice(choice: unknown): unknown {
  if (choice === "auto" || choice === "none" || choice === "required") return choice;
  if (isObject(choice) && choice.type === "function" && typeof choice.name === "string") {
    return { type: "function", function: { name: choice.name } };
  }
  throw badRequest(
    '"tool_choice" must be "auto", "none", "required" or {"type": "function", "name": …}; ' +
      "allowed_tools and built-in tool choices are not supported",
    "tool_choice",
  );
}

/** `text.format` as chat's `response_format` (the structured-output grammar path). */
function responseFormat(format: unknown, verbosity: unknown): unknown {
  if (given(verbosity) && verbosity !== "medium") {
    throw badRequest('"text.verbosity" other than "medium" is not supported', "text");
  }
  if (!isObject(format)) throw badRequest('"text.format" must be an object', "text");
  switch (format.type) {
    case "text":
      return undefined;
    case "json_object":
      return { type: "json_object" };
    case "json_schema": {
      const { name, schema, strict, description } = format;
      if (typeof name !== "string") {
        throw badRequest('"text.format.name" must be a string', "text");
      }
      if (!isObject(schema)) {
        throw badRequest('"text.format.schema" must be a JSON schema object', "text");
      }
      return { type: "json_schema", json_schema: { name, schema, strict, description } };
    }
    default:
      throw badRequest(
        `Unsupported text.format type ${JSON.stringify(format.type)}; use "text", ` +
          '"json_object" or "json_schema"',
        "text",
      );
  }
}

/**
 * `reasoning`: `effort`, and `summary` (or its older name `generate_summary`), whose every kind
 * gets the reasoning text itself: no other setting exists.
 */
function reasoningSettings(
  reasoning: Record<string, unknown> | undefined,
): { effort?: string; summary?: string } {
  if (reasoning === undefined) return {};
  for (const [key, value] of Object.entries(reasoning)) {
    if (["effort", "summary", "generate_summary"].includes(key) || !given(value)) continue;
    throw badRequest(
      `"reasoning.${key}" is not supported; only reasoning.effort and reasoning.summary are read`,
      "reasoning",
    );
  }
  const effort = reasoning.effort;
  // They reach the template as chat's `reasoning_effort` does.
  if (given(effort) && (typeof effort !== "string" || !REASONING_EFFORTS.includes(effort))) {
    throw badRequest(
      `"reasoning.effort" must be one of ${REASONING_EFFORTS.join(", ")}`,
      "reasoning",
    );
  }
  const summary = given(reasoning.summary) ? reasoning.summary : reasoning.generate_summary;
  if (given(summary) && (typeof summary !== "string" || !SUMMARIES.includes(summary))) {
    throw badRequest(`"reasoning.summary" must be one of ${SUMMARIES.join(", ")}`, "reasoning");
  }
  return {
    ...(given(effort) ? { effort: effort as string } : {}),
    ...(given(summary) ? { summary: summary as string } : {}),
  };
}

/** OpenAI's metadata: at most 16 string values, keys up to 64 and values up to 512 long. */
function metadata(value: unknown): Record<string, string> {
  if (!given(value)) return {};
  const entries = isObject(value) ? Object.entries(value) : undefined;
  if (
    !entries || entries.length > 16 ||
    entries.some(([k, v]) => k.length > 64 || typeof v !== "string" || v.length > 512)
  ) {
    throw badRequest(
      '"metadata" must be an object of at most 16 strings (keys up to 64 characters, values ' +
        "up to 512)",
      "metadata",
    );
  }
  return value as Record<string, string>;
}

function previousItems(store: ResponseStore, id: string): Item[] {
  const stored = store.get(id);
  if (!stored) {
    throw new HttpError(
      404,
      `Previous response with id "${id}" not found: it was not stored (store: false), was ` +
        "deleted, or expired",
      { param: "previous_response_id", code: "previous_response_not_found" },
    );
  }
  if (stored.run && !stored.run.done) {
    throw badRequest(
      `Previous response "${id}" is still in progress (background): wait until it ends, or ` +
        "cancel it",
      "previous_response_id",
    );
  }
  return stored.items;
}
