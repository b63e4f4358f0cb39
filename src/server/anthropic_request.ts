/**
 * Anthropic Messages requests mapped onto the engine's one chat path: `system` and `messages`
 * (text, `tool_use`, `tool_result` and `thinking` blocks) become the OpenAI-shaped messages
 * chat templates take, `tools` and `tool_choice` become a {@link ChatOutputRequest}, and
 * `max_tokens`, `stop_sequences` and the sampling fields become the OpenAI-equivalent
 * {@link Fields} that `startGeneration` reads. Whatever Shimmy cannot honour (images, server
 * tools, unknown fields) is a 400 naming it, as Anthropic's own API refuses extra fields.
 *
 * @module
 */

import type { TemplateMessage, TemplatePart } from "../engine/templates.ts";
import type { ChatOutputRequest, ToolChoice } from "../engine/tools/plan.ts";
import type { PromptSource } from "./generation_bridge.ts";
import { continuedPart } from "./chat_continuation.ts";
import { badRequest, HttpError } from "./http_error.ts";
import { Fields, refuseUnknownFields, type TemplateFields } from "./request_body.ts";
import { toolSpecs } from "./tool_calls.ts";
import { isObject } from "../util/objects.ts";

/** The fields `POST /v1/messages` accepts; any other is a 400. */
const MESSAGE_FIELDS = new Set([
  "model",
  "messages",
  "max_tokens",
  "system",
  "stop_sequences",
  "stream",
  "temperature",
  "top_p",
  "top_k",
  "tools",
  "tool_choice",
  "thinking",
  "output_config",
  // Accepted, with no effect on a local server: the prefix cache is always on, and there is
  // one tier, one region and one speed.
  "metadata",
  "cache_control",
  "service_tier",
  "inference_geo",
  "speed",
]);

/** The fields `POST /v1/messages/count_tokens` accepts. */
const COUNT_FIELDS = new Set([
  "model",
  "messages",
  "system",
  "tools",
  "tool_choice",
  "thinking",
  "output_config",
  "cache_control",
  "speed",
]);

/** A chat prompt source (the only kind an Anthropic request makes). */
export type ChatSource = Extract<PromptSource, { kind: "chat" }>;

/** An Anthropic request, ready for `startGeneration`. */
export interface AnthropicRequest {
  /** OpenAI-equivalent fields: `model`, `max_tokens`, `stop`, sampling, `stream`. */
  fields: Fields;
  /** The conversation, tools and output plan request for the template. */
  source: ChatSource;
  /** `stop_sequences`, to tell a stop sequence from the template's own end markers. */
  stopSequences: string[];
  /** Whether thinking text is returned (false for `thinking.display: "omitted"`). */
  showThinking: boolean;
  /** `stream`. */
  stream: boolean;
}

/**
 * Reads a `POST /v1/messages` body (or, with `countOnly`, a `count_tokens` body, which has no
 * `max_tokens` and generates nothing).
 *
 * @param body The parsed JSON body.
 * @param countOnly Read it as a `count_tokens` request.
 * @param prefill Continue a last message from the assistant (Anthropic's prefill; the answer is
 *   what the model adds). Default true; false answers it with a new turn.
 * @returns The engine request.
 * @throws {HttpError} 400 naming the field at fault or the unsupported feature.
 * @example
 * ```ts
 * const request = anthropicRequest(await readJsonBody(req));
 * const started = await startGeneration(ctx, request.fields, request.source, signal);
 * ```
 */
export function anthropicRequest(
  body: Record<string, unknown>,
  countOnly = false,
  prefill = true,
): AnthropicRequest {
  refuseThread(body);
  refuseUnknownFields(
    body,
    countOnly ? COUNT_FIELDS : MESSAGE_FIELDS,
    countOnly ? "/v1/messages/count_tokens" : "/v1/messages",
  );
  const fields = new Fields(body);
  const model = fields.string("model");
  if (model === undefined || model === "") throw badRequest('"model" is required', "model");
  const maxTokens = countOnly ? undefined : fields.number("max_tokens", { min: 1, integer: true });
  if (!countOnly && maxTokens === undefined) {
    throw badRequest('"max_tokens" is required: the most tokens to generate', "max_tokens");
  }
  const stopSequences = stopSequencesOf(fields.raw("stop_sequences"));
  const thinking = thinkingOf(fields.raw("thinking"), maxTokens);
  const config = outputConfigOf(fields.raw("output_config"));
  const output = outputRequest(fields.raw("tools"), fields.raw("tool_choice"));
  const stream = fields.boolean("stream") ?? false;
  const engineFields = new Fields({
    model,
    ...(maxTokens !== undefined ? { max_tokens: maxTokens } : {}),
    stop: stopSequences,
    temperature: fields.number("temperature", { min: 0, max: 1 }),
    top_p: fields.number("top_p", { min: 0, max: 1 }),
    top_k: fields.number("top_k", { min: 0, integer: true }),
    ...(config.schema ? { response_format: jsonSchemaFormat(config.schema) } : {}),
    stream,
  });
  const messages = templateMessages(fields.raw("system"), fields.raw("messages"));
  const continued = prefill && messages.at(-1)?.role === "assistant"
    ? continuedPart(messages)
    : undefined;
  const source: ChatSource = {
    kind: "chat",
    messages,
    // tool_choice "none": the model is not told about the tools, as on the OpenAI route.
    ...(output.request.tools.length > 0 && output.request.choice !== "none"
      ? { tools: output.templateTools }
      : {}),
    template: {
      ...thinking.template,
      ...(config.effort !== undefined ? { reasoningEffort: config.effort } : {}),
      ...(continued ? { continueFinal: continued } : {}),
    },
    output: {
      ...output.request,
      ...(thinking.budget !== undefined
        ? { thinkingBudget: { tokens: thinking.budget, message: "" } }
        : {}),
    },
  };
  return { fields: engineFields, source, stopSequences, showThinking: thinking.show, stream };
}

function stopSequencesOf(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every((s) => typeof s === "string")) {
    throw badRequest('"stop_sequences" must be an array of strings', "stop_sequences");
  }
  return value;
}

/**
 * `thinking`: `enabled` and `adaptive` turn the template's thinking on, `disabled` turns it
 * off; absent leaves the template's default. `enabled`'s `budget_tokens` (checked as Anthropic
 * checks it) is the most tokens the model thinks before its thinking block is closed for it.
 */
function thinkingOf(
  value: unknown,
  maxTokens: number | undefined,
): { template: TemplateFields; show: boolean; budget?: number } {
  if (value === undefined || value === null) return { template: {}, show: true };
  const bad = (message: string) => badRequest(message, "thinking");
  if (!isObject(value)) throw bad('"thinking" must be an object');
  const { type, budget_tokens: budget, display } = value;
  if (
    display !== undefined && display !== null && display !== "summarized" && display !== "omitted"
  ) {
    throw bad('"thinking.display" must be "summarized" or "omitted"');
  }
  const show = display !== "omitted";
  if (type === "disabled") return { template: { kwargs: { enable_thinking: false } }, show };
  if (type === "enabled") {
    if (!Number.isInteger(budget) || (budget as number) < 1024) {
      throw bad('"thinking.budget_tokens" must be an integer of at least 1024');
    }
    if (maxTokens !== undefined && (budget as number) >= maxTokens) {
      throw bad('"thinking.budget_tokens" must be less than "max_tokens"');
    }
    return { template: { kwargs: { enable_thinking: true } }, show, budget: budget as number };
  } else if (type !== "adaptive") {
    throw bad('"thinking.type" must be "enabled", "adaptive" or "disabled"');
  }
  return { template: { kwargs: { enable_thinking: true } }, show };
}

/** Anthropic's effort levels as the template's `reasoning_effort`, which stops at `high`. */
const EFFORTS: Record<string, string> = {
  low: "low",
  medium: "medium",
  high: "high",
  xhigh: "high",
  max: "high",
};

/**
 * `output_config`: `effort` becomes the template's `reasoning_effort`; `format` (a JSON schema)
 * constrains the answer with the same grammar as OpenAI's `response_format`.
 */
function outputConfigOf(value: unknown): { effort?: string; schema?: Record<string, unknown> } {
  if (value === undefined || value === null) return {};
  const bad = (message: string) => badRequest(message, "output_config");
  if (!isObject(value)) throw bad('"output_config" must be an object');
  for (const key of Object.keys(value)) {
    if (key !== "effort" && key !== "format") {
      throw bad(`"output_config.${key}" is not supported; only "effort" and "format" are`);
    }
  }
  const { effort, format } = value;
  if (
    effort !== undefined && effort !== null && !(typeof effort === "string" && effort in EFFORTS)
  ) {
    throw bad('"output_config.effort" must be "low", "medium", "high", "xhigh" or "max"');
  }
  if (format !== undefined && format !== null) {
    if (!isObject(format) || format.type !== "json_schema" || !isObject(format.schema)) {
      throw bad('"output_config.format" must be {"type": "json_schema", "schema": {…}}');
    }
  }
  return {
    ...(typeof effort === "string" ? { effort: EFFORTS[effort] } : {}),
    ...(isObject(format) ? { schema: format.schema as Record<string, unknown> } : {}),
  };
}

/** A JSON schema as OpenAI's `response_format`, which the engine turns into a grammar. */
function jsonSchemaFormat(schema: Record<string, unknown>) {
  return { type: "json_schema", json_schema: { name: "output", schema } };
}

/** `tools` and `tool_choice` as the engine's output request, and the tools for the template. */
function outputRequest(
  tools: unknown,
  choice: unknown,
): { request: ChatOutputRequest; templateTools: unknown[] } {
  if (tools !== undefined && tools !== null && !Array.isArray(tools)) {
    throw badRequest('"tools" must be an array', "tools");
  }
  const templateTools = (tools ?? []).map((tool, i) => {
    if (!isObject(tool)) throw badRequest(`tools[${i}] must be an object`, "tools");
    if (tool.type !== undefined && tool.type !== null && tool.type !== "custom") {
      throw badRequest(
        `tools[${i}] is a "${tool.type}" server tool; only custom tools ({name, description, ` +
          "input_schema}) are supported",
        "tools",
      );
    }
    if (!isObject(tool.input_schema)) {
      throw badRequest(`tools[${i}].input_schema must be a JSON schema object`, "tools");
    }
    return {
      type: "function",
      function: {
        name: tool.name,
        ...(typeof tool.description === "string" ? { description: tool.description } : {}),
        parameters: tool.input_schema,
        ...(tool.strict !== undefined ? { strict: tool.strict } : {}),
      },
    };
  });
  const specs = toolSpecs(templateTools);
  const { choice: toolChoice, parallel } = toolChoiceOf(choice, specs.map((t) => t.name));
  return {
    request: { tools: specs, choice: toolChoice, parallel, reasoningFormat: "auto" },
    templateTools,
  };
}

function toolChoiceOf(value: unknown, names: string[]): { choice: ToolChoice; parallel: boolean } {
  const bad = (message: string) => badRequest(message, "tool_choice");
  if (value === undefined || value === null) {
    return { choice: names.length > 0 ? "auto" : "none", parallel: true };
  }
  if (!isObject(value)) throw bad('"tool_choice" must be an object such as {"type": "auto"}');
  const disable = value.disable_parallel_tool_use;
  if (disable !== undefined && typeof disable !== "boolean") {
    throw bad('"tool_choice.disable_parallel_tool_use" must be a boolean');
  }
  const parallel = disable !== true;
  switch (value.type) {
    case "none":
      return { choice: "none", parallel };
    case "auto":
      return { choice: names.length > 0 ? "auto" : "none", parallel };
    case "any":
      if (names.length === 0) throw bad('"tool_choice" of type "any" needs "tools"');
      return { choice: "required", parallel };
    case "tool": {
      const name = value.name;
      if (typeof name !== "string" || !names.includes(name)) {
        throw bad(`"tool_choice.name" must name one of "tools" (got ${JSON.stringify(name)})`);
      }
      return { choice: { name }, parallel };
    }
    default:
      throw bad('"tool_choice.type" must be "auto", "any", "tool" or "none"');
  }
}

/** `system` as text: a string, or text blocks joined with newlines. */
function systemText(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return steadyStamp(value);
  if (Array.isArray(value)) {
    return value.map((block, i) => steadyStamp(textOf(block, `system[${i}]`, "system")))
      .join("\n");
  }
  throw badRequest('"system" must be a string or an array of text blocks', "system");
}

/**
 * Claude Code starts its system prompt with an `x-anthropic-billing-header:` line whose `cch=`
 * value (five characters) changes with every request; the prompt's tokens then differ from the
 * first, and no request reuses the cache of the one before (Claude Code's prompt is tens of
 * thousands of tokens). That value means nothing to a local model: it is written as `fffff`, as
 * llama-server writes it, so that one request's prompt is the next one's prefix.
 */
function steadyStamp(text: string): string {
  return text.replace(/^(x-anthropic-billing-header:[^\n]*?cch=)[^;\n]{5};/, "$1fffff;");
}

/** The text of a `{type: "text", text}` block; anything else is a 400. */
function textOf(block: unknown, where: string, param: string): string {
  if (isObject(block) && block.type === "text" && typeof block.text === "string") return block.text;
  throw badRequest(
    `${where} must be a text block ({"type": "text", "text": …}); ${blockKind(block)} is not ` +
      "supported there",
    param,
  );
}

function blockKind(block: unknown): string {
  return isObject(block) && typeof block.type === "string" ? `a "${block.type}" block` : "this";
}

/**
 * The conversation as template messages: `system` first, a user turn's `tool_result` blocks
 * as `tool` messages (in order, before the turn's text), an assistant turn's `tool_use` blocks
 * as `tool_calls` with JSON `arguments` and its `thinking` as `reasoning_content`.
 */
function templateMessages(system: unknown, messages: unknown): TemplateMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw badRequest('"messages" must be a non-empty array', "messages");
  }
  const out: TemplateMessage[] = [];
  const systemPrompt = systemText(system);
  if (systemPrompt !== undefined) out.push({ role: "system", content: systemPrompt });
  /** Tool names by `tool_use` id, for the `tool` messages that answer them. */
  const toolNames = new Map<string, string>();
  messages.forEach((message, i) => {
    if (!isObject(message)) throw badRequest(`messages[${i}] must be an object`, "messages");
    const { role, content } = message;
    if (role !== "user" && role !== "assistant") {
      throw badRequest(`messages[${i}].role must be "user" or "assistant"`, "messages");
    }
    if (typeof content === "string") {
      out.push({ role, content });
      return;
    }
    if (!Array.isArray(content)) {
      throw badRequest(
        `messages[${i}].content must be a string or an array of content blocks`,
        "messages",
      );
    }
    const where = (j: number) => `messages[${i}].content[${j}]`;
    if (role === "assistant") out.push(assistantMessage(content, where, toolNames));
    // One push each: spread into one call, 130,000 tool_result blocks overflowed the stack (a 500).
    else for (const turn of userMessages(content, where, toolNames)) out.push(turn);
  });
  return out;
}

function unsupportedBlock(block: unknown, where: string): never {
  throw badRequest(
    `${where} is ${blockKind(block)}, which is not supported; Shimmy takes "text", ` +
      `"tool_use", "tool_result" and "thinking" blocks`,
    "messages",
  );
}

function assistantMessage(
  blocks: unknown[],
  where: (j: number) => string,
  toolNames: Map<string, string>,
): TemplateMessage {
  const parts: TemplatePart[] = [];
  const calls: unknown[] = [];
  let reasoning = "";
  blocks.forEach((block, j) => {
    if (!isObject(block)) unsupportedBlock(block, where(j));
    if (block.type === "text") {
      parts.push({ type: "text", text: textOf(block, where(j), "messages") });
    } else if (block.type === "thinking" && typeof block.thinking === "string") {
      reasoning += block.thinking;
    } else if (block.type === "tool_use") {
      const { id, name, input } = block;
      if (typeof id !== "string" || typeof name !== "string" || !isObject(input)) {
        throw badRequest(
          `${where(j)} must be {"type": "tool_use", "id", "name", "input": {…}}`,
          "messages",
        );
      }
      toolNames.set(id, name);
      calls.push({ id, type: "function", function: { name, arguments: JSON.stringify(input) } });
    } else {
      unsupportedBlock(block, where(j));
    }
  });
  return {
    role: "assistant",
    content: parts.length > 0 ? parts : null,
    ...(calls.length > 0 ? { tool_calls: calls } : {}),
    ...(reasoning !== "" ? { reasoning_content: reasoning } : {}),
  };
}

function userMessages(
  blocks: unknown[],
  where: (j: number) => string,
  toolNames: Map<string, string>,
): TemplateMessage[] {
  const results: TemplateMessage[] = [];
  const parts: TemplatePart[] = [];
  blocks.forEach((block, j) => {
    if (!isObject(block)) unsupportedBlock(block, where(j));
    if (block.type === "text") {
      parts.push({ type: "text", text: textOf(block, where(j), "messages") });
    } else if (block.type === "tool_result") {
      results.push(toolMessage(block, where(j), toolNames));
    } else {
      unsupportedBlock(block, where(j));
    }
  });
  return parts.length > 0 || results.length === 0
    ? [...results, { role: "user", content: parts }]
    : results;
}

/** A `tool_result` block as a `tool` message; an error result says so in its text. */
function toolMessage(
  block: Record<string, unknown>,
  where: string,
  toolNames: Map<string, string>,
): TemplateMessage {
  const { tool_use_id: id, content, is_error: isError } = block;
  if (typeof id !== "string") {
    throw badRequest(`${where}.tool_use_id must be a string`, "messages");
  }
  let text: string;
  if (content === undefined || content === null) text = "";
  else if (typeof content === "string") text = content;
  else if (Array.isArray(content)) {
    text = content.map((part, k) => textOf(part, `${where}.content[${k}]`, "messages")).join("\n");
  } else {
    throw badRequest(`${where}.content must be a string or an array of text blocks`, "messages");
  }
  const name = toolNames.get(id);
  return {
    role: "tool",
    tool_call_id: id,
    content: isError === true ? `Error: ${text}` : text,
    ...(name !== undefined ? { name } : {}),
  };
}

/**
 * Refuses Anthropic's message threads (`thread`, which the SDK's tool runner sends by default)
 * with the rejection its clients recognise: they then go on without a thread, sending the whole
 * conversation each turn, which is how Shimmy serves it.
 *
 * @param body The request body.
 * @throws {HttpError} 400 with `details.error_code` `thread_unsupported_request`.
 */
function refuseThread(body: Record<string, unknown>): void {
  if (body.thread === undefined || body.thread === null) return;
  throw new HttpError(
    400,
    '"thread": Shimmy keeps no message threads; send the whole conversation in "messages"',
    {
      param: "thread",
      code: "invalid_value",
      details: { error_code: "thread_unsupported_request", unsupported: ["thread"] },
    },
  );
}
