/**
 * The tool-calling and reasoning fields of an OpenAI chat request (`tools`, `tool_choice`,
 * `parallel_tool_calls`, llama-server's `reasoning_format`), validated into one
 * {@link ChatOutputRequest}; and the final assistant message in OpenAI's shape. Anything Shimmy
 * cannot honour is a 400 naming the field.
 *
 * @module
 */

import { I32_MAX } from "../util/limits.ts";
import type {
  ChatOutputRequest,
  ReasoningFormat,
  ThinkingBudget,
  ToolChoice,
} from "../engine/tools/plan.ts";
import type { ChatOutput } from "../engine/tools/output_stream.ts";
import type { ToolSpec } from "../engine/tools/tool_types.ts";
import { badRequest } from "./http_error.ts";
import type { Fields } from "./request_body.ts";
import { isObject } from "../util/objects.ts";

/** OpenAI's rule for function names. */
const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Most tools a request may offer. */
export const MAX_TOOLS = 128;

const REASONING_FORMATS: readonly ReasoningFormat[] = [
  "none",
  "auto",
  "deepseek",
  "deepseek-legacy",
];

/**
 * Reads `tools` into name + parameters.
 *
 * @param value The `tools` field.
 * @returns The tools.
 * @throws {HttpError} 400 for anything but `{"type":"function","function":{"name",…}}` entries.
 */
export function toolSpecs(value: unknown): ToolSpec[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw badRequest('"tools" must be an array', "tools");
  if (value.length > MAX_TOOLS) {
    throw badRequest(`"tools" may hold at most ${MAX_TOOLS} tools`, "tools");
  }
  const seen = new Set<string>();
  return value.map((tool, i) => {
    if (!isObject(tool) || tool.type !== "function" || !isObject(tool.function)) {
      throw badRequest(
        `tools[${i}] must be {"type": "function", "function": {...}}; only function tools are supported`,
        "tools",
      );
    }
    const { name, parameters, strict } = tool.function;
    if (typeof name !== "string" || !FUNCTION_NAME.test(name)) {
      throw badRequest(
        `tools[${i}].function.name must be 1-64 letters, digits, "_" or "-"`,
        "tools",
      );
    }
    if (seen.has(name)) throw badRequest(`tools has two functions named "${name}"`, "tools");
    seen.add(name);
    if (parameters !== undefined && parameters !== null && !isObject(parameters)) {
      throw badRequest(`tools[${i}].function.parameters must be a JSON schema object`, "tools");
    }
    if (isObject(parameters) && parameters.type !== undefined && parameters.type !== "object") {
      throw badRequest(
        `tools[${i}].function.parameters must describe an object ("type": "object"): a call's ` +
          `arguments are one, not ${JSON.stringify(parameters.type)}`,
        "tools",
      );
    }
    if (strict !== undefined && strict !== null && typeof strict !== "boolean") {
      throw badRequest(`tools[${i}].function.strict must be a boolean`, "tools");
    }
    return {
      name,
      parameters: parameters ?? { type: "object", properties: {} },
      ...(strict === true ? { strict } : {}),
    };
  });
}

function toolChoice(value: unknown, tools: readonly ToolSpec[]): ToolChoice {
  if (value === undefined || value === null) return tools.length > 0 ? "auto" : "none";
  if (value === "auto" || value === "none" || value === "required") {
    if (value === "required" && tools.length === 0) {
      throw badRequest('"tool_choice": "required" needs "tools"', "tool_choice");
    }
    return value;
  }
  if (isObject(value) && value.type === "function" && isObject(value.function)) {
    const name = value.function.name;
    if (typeof name !== "string") {
      throw badRequest('"tool_choice.function.name" must be a string', "tool_choice");
    }
    if (!tools.some((t) => t.name === name)) {
      throw badRequest(
        `"tool_choice" names the function "${name}", which is not in "tools"`,
        "tool_choice",
      );
    }
    return { name };
  }
  throw badRequest(
    '"tool_choice" must be "auto", "none", "required" or {"type": "function", "function": {"name": …}}',
    "tool_choice",
  );
}

/**
 * Reads `tools`, `tool_choice`, `parallel_tool_calls` and `reasoning_format`.
 *
 * @param fields The body.
 * @returns What the request asks.
 * @throws {HttpError} 400 naming the bad field.
 * @example
 * ```ts
 * const request = chatOutputRequest(new Fields(body));
 * ```
 */
export function chatOutputRequest(fields: Fields): ChatOutputRequest {
  const tools = toolSpecs(fields.raw("tools"));
  const choice = toolChoice(fields.raw("tool_choice"), tools);
  const parallel = fields.boolean("parallel_tool_calls") ?? true;
  const reasoningFormat = fields.string("reasoning_format") ?? "auto";
  if (!REASONING_FORMATS.includes(reasoningFormat as ReasoningFormat)) {
    throw badRequest(
      `Unsupported reasoning_format "${reasoningFormat}"; use ${
        REASONING_FORMATS.map((f) => `"${f}"`).join(", ")
      }`,
      "reasoning_format",
    );
  }
  const thinkingBudget = thinkingBudgetOf(fields);
  return {
    tools,
    choice,
    parallel,
    reasoningFormat: reasoningFormat as ReasoningFormat,
    ...(thinkingBudget ? { thinkingBudget } : {}),
  };
}

/** The longest text forced before a thinking block's closing tag (it is tokenized at once). */
const MAX_BUDGET_MESSAGE = 4096;

/**
 * Reads llama-server's thinking budget: `thinking_budget_tokens` (or `reasoning_budget_tokens`;
 * -1, the default, for none) and `reasoning_budget_message`; `reasoning_control: true` asks for
 * a budget (unlimited without one) that `POST /v1/chat/completions/control` can end.
 *
 * @throws {HttpError} 400 for a budget below -1, both names at once, or a message that is not
 *   a string or is longer than 4096 characters.
 */
function thinkingBudgetOf(fields: Fields): ThinkingBudget | undefined {
  const names = ["thinking_budget_tokens", "reasoning_budget_tokens"] as const;
  const given = names.filter((name) => fields.raw(name) !== undefined);
  if (given.length > 1) {
    throw badRequest(
      `Send "thinking_budget_tokens" or "reasoning_budget_tokens", not both`,
      names[1],
    );
  }
  const name = given[0] ?? names[0];
  const tokens = fields.number(name, { min: -1, max: I32_MAX, integer: true }) ?? -1;
  const message = fields.string("reasoning_budget_message") ?? "";
  if (message.length > MAX_BUDGET_MESSAGE) {
    throw badRequest(
      `"reasoning_budget_message" must be at most ${MAX_BUDGET_MESSAGE} characters`,
      "reasoning_budget_message",
    );
  }
  const controlled = fields.boolean("reasoning_control") ?? false;
  if (tokens < 0 && !controlled) return undefined;
  return { tokens: tokens < 0 ? Infinity : tokens, message, controlled };
}

/**
 * The assistant message of a chat completion.
 *
 * @param output The read output.
 * @returns OpenAI's `message`.
 */
export function assistantMessage(output: ChatOutput): Record<string, unknown> {
  return {
    role: "assistant",
    content: output.content,
    ...(output.reasoning !== undefined ? { reasoning_content: output.reasoning } : {}),
    ...(output.toolCalls.length > 0 ? { tool_calls: output.toolCalls } : {}),
    refusal: null, // OpenAI's SDK types it as always there: a model here never refuses by flag
    annotations: [],
  };
}
