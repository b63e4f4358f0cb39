/**
 * What a chat request's tools and reasoning settings mean for one generation, once the
 * prompt is rendered: the tool-call format the model's template teaches, the grammar that
 * forces a call (`required` or a named tool), and how to read the output (calls, `<think>`).
 *
 * @module
 */

import { detectToolFormat, type ToolFormat } from "./formats.ts";
import { forcedToolGrammar } from "./grammar.ts";
import type { ChatOutputOptions } from "./output_stream.ts";
import { THINK_TAGS } from "./parse.ts";
import type { ToolSpec } from "./tool_types.ts";

/** `tool_choice`: OpenAI's strings, or the name of the one function to call. */
export type ToolChoice = "auto" | "none" | "required" | { name: string };

/** llama-server's `reasoning_format` values. */
export type ReasoningFormat = "none" | "auto" | "deepseek" | "deepseek-legacy";

/** What the request asked about tools and reasoning. */
export interface ChatOutputRequest {
  /** The tools offered (validated). */
  tools: ToolSpec[];
  /** `tool_choice`; default `auto` with tools. */
  choice: ToolChoice;
  /** `parallel_tool_calls`; default true. */
  parallel: boolean;
  /** `reasoning_format`; default `auto`. */
  reasoningFormat: ReasoningFormat;
  /**
   * A thinking budget (`thinking_budget_tokens`, or an unlimited one that `reasoning_control`
   * lets a client end); default: none.
   */
  thinkingBudget?: ThinkingBudget;
  /**
   * When the model continues the last message (prefill): whether its text so far is part of the
   * answer sent (llama-server's `echo`), or only what the model adds. Default false.
   */
  echoContinued?: boolean;
}

/** The most tokens the model may think, and what it is told when it has thought them. */
export interface ThinkingBudget {
  /** Tokens inside the thinking block (0: it is closed at once). */
  tokens: number;
  /** Text put before the closing tag when the budget runs out (default: none). */
  message: string;
  /** `reasoning_control`: a client may end the thinking while it runs (see `endNow`). */
  controlled?: boolean;
  /** Ends the thinking now (llama-server's `reasoning_end` control), whatever is left of it. */
  endNow?: AbortSignal;
}

/** How a generation's output is constrained and read. */
export interface ChatOutputPlan {
  /** The format, when tools may be called. */
  format?: ToolFormat;
  /** A grammar forcing a call, for `required` and named choices; lazy for `auto`. */
  grammar?: string;
  /** For `auto`: the grammar waits for one of these patterns (the format's call markers). */
  triggers?: string[];
  /** Options for `ChatOutputStream`. */
  read: ChatOutputOptions;
  /**
   * Where the model thinks in `<think>` blocks (whatever `reasoning_format` does with them), and
   * whether the prompt opened one: what a thinking budget counts. Absent when a forced call's
   * grammar leaves no room for thinking.
   */
  thinking?: { startsOpen: boolean };
  /**
   * The text of the last message that the model continues (prefill): read before the generated
   * text, so that the output is parsed as one, and sent with the answer when `echo` is set.
   */
  continued?: { text: string; echo: boolean };
}

/**
 * Plans how to constrain and read a chat generation.
 *
 * @param request Tools, choice and reasoning format.
 * @param prompt The rendered prompt's template, its tail before the continued text, that text
 *   (prefill), and the tool calls of the conversation's earlier turns.
 * @returns The plan.
 * @throws {SchemaError} (param `tools`) when a forced tool's parameters cannot be converted.
 * @example
 * ```ts
 * const plan = planChatOutput(request, { template: ggufTemplate, promptTail: "…assistant\n" });
 * ```
 */
export function planChatOutput(
  request: ChatOutputRequest,
  prompt: {
    template?: string;
    format?: string;
    promptTail?: string;
    continued?: string;
    callsBefore?: number;
  },
): ChatOutputPlan {
  const calling = request.tools.length > 0 && request.choice !== "none";
  const template = prompt.template ?? "";
  // GPT-OSS writes channels even without tools: its reader also splits reasoning from content.
  const harmony = template.includes("<|channel|>") && request.reasoningFormat !== "none";
  const format = calling || harmony ? detectToolFormat(prompt.template, prompt.format) : undefined;
  const tools = calling ? request.tools : [];
  let grammar: string | undefined;
  let triggers: string[] | undefined;
  if (format && calling && request.choice !== "auto") {
    const forced = typeof request.choice === "object"
      ? request.tools.filter((t) => t.name === (request.choice as { name: string }).name)
      : request.tools;
    grammar = forcedToolGrammar(format, forced, request.parallel);
  } else if (format && calling && canBeLazy(format)) {
    // `auto`: free text until a call marker, then a valid call.
    grammar = forcedToolGrammar(format, request.tools, request.parallel);
    triggers = format.markers.map(escapeRegExp);
  }
  const tail = (prompt.promptTail ?? "").trimEnd();
  const thinks = template.includes(THINK_TAGS.open) || tail.endsWith(THINK_TAGS.open);
  const forcedCall = grammar !== undefined && !triggers;
  const startsOpen = tail.endsWith(THINK_TAGS.open) && !forcedCall;
  const reasoning = request.reasoningFormat !== "none" && thinks
    ? { ...THINK_TAGS, startsOpen }
    : undefined;
  const continued = prompt.continued ?? "";
  // A thinking budget counts generated tokens: whether they start in a block is the prompt's
  // state after the continued text.
  const openAfter = continued === "" ? startsOpen : thoughtOpenAfter(startsOpen, continued);
  return {
    ...(thinks && !forcedCall ? { thinking: { startsOpen: openAfter } } : {}),
    ...(continued !== ""
      ? { continued: { text: continued, echo: request.echoContinued ?? false } }
      : {}),
    ...(format ? { format } : {}),
    ...(grammar ? { grammar } : {}),
    ...(triggers ? { triggers } : {}),
    read: {
      ...(format ? { format, tools, idStyle: format.idStyle } : {}),
      ...(format?.idStyle === "kimi" ? { callsBefore: prompt.callsBefore ?? 0 } : {}),
      ...(reasoning ? { reasoning } : {}),
    },
  };
}

/** Whether a thinking block is open after `text`, given whether one was before it. */
function thoughtOpenAfter(openBefore: boolean, text: string): boolean {
  const open = text.lastIndexOf(THINK_TAGS.open);
  const close = text.lastIndexOf(THINK_TAGS.close);
  return open === close ? openBefore : open > close;
}

/**
 * Whether a lazy grammar can wait for the format's markers: the forced grammar must start with
 * one of them. Formats whose calls may open the output as bare JSON (Llama 3, generic) cannot.
 */
function canBeLazy(format: ToolFormat): boolean {
  return format.markers.length > 0 && !format.leadingJson;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
