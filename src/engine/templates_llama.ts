/**
 * Chat messages → prompt, exactly as llama.cpp's server (`llama-server --jinja`) builds it:
 * the messages are read the way llama.cpp reads an OpenAI request (text parts, tool calls
 * with their arguments kept as JSON text, `reasoning_content`, `name`, `tool_call_id`), then
 * shaped for what the template can do (its capabilities, probed once per template): text
 * parts joined with `\n` or kept as parts, arguments parsed into objects, a system message
 * merged into the next turn when the template never prints one, `developer` read as `system`.
 * A few model families get the adjustments llama.cpp makes for them (GPT-OSS and LFM2 read
 * reasoning as `thinking`, Ministral 3 as a content block, DeepSeek V4 orders tool results by
 * call, older Gemma 4 templates take tool results inside the assistant turn). The template
 * then sees `messages`, `tools`, `bos_token`, `eos_token`, `add_generation_prompt`,
 * `enable_thinking`, `datetime`, `date_string`, `preserve_reasoning` and its derived flags,
 * and the `chat_template_kwargs`.
 *
 * ```ts
 * const tmpl = compileChatTemplate(source);
 * const prompt = applyChatTemplate(tmpl, { messages, tools, bosToken: "<s>", eosToken: "</s>" });
 * ```
 *
 * @module
 */

import { toolTurnsAsText, withToolsInSystem } from "./tool_polyfill.ts";
import { detectToolFormat } from "./tools/formats.ts";
import {
  applyPreserveReasoning,
  applyReasoningEffort,
  detectCaps,
  type TemplateCaps,
} from "./jinja/caps.ts";
import { parseTemplate, type Program } from "./jinja/parser.ts";
import { Context, render, type RenderOptions, StopRender, strftime } from "./jinja/runtime.ts";

/** A template ready to render: parsed, with its capabilities and its family quirks. */
export interface CompiledChatTemplate {
  /** The normalised source (line endings `\n`, one trailing newline dropped). */
  readonly source: string;
  readonly program: Program;
  readonly caps: TemplateCaps;
  /** Whether llama.cpp considers that the template can think (`enable_thinking` default). */
  readonly supportsThinking: boolean;
  /** The family llama.cpp gives a dedicated handler, if any. */
  readonly special: SpecialFamily | undefined;
}

/** Families whose messages llama.cpp adjusts before rendering. */
export type SpecialFamily =
  | "ministral3"
  | "gpt-oss"
  | "muse-glimmer"
  | "functionary-v3.2"
  | "kimi-k2"
  | "kimi-k3"
  | "ling3"
  | "cohere2moe"
  | "lfm2"
  | "lfm2.5"
  | "gigachat-v3"
  | "minimax-m3"
  | "deepseek-v3.2"
  | "gemma4"
  | "minicpm5"
  | "qwen3-coder";

/** What to render. */
export interface ChatTemplateInput {
  /** OpenAI-style messages, as sent (content as text, parts or null; tool calls; reasoning). */
  readonly messages: readonly unknown[];
  /** OpenAI-style tool definitions. */
  readonly tools?: readonly unknown[] | undefined;
  /** Open the assistant's turn at the end. Default `true`. */
  readonly addGenerationPrompt?: boolean | undefined;
  /** `bos_token` text. Default `""`. */
  readonly bosToken?: string | undefined;
  /** `eos_token` text. Default `""`. */
  readonly eosToken?: string | undefined;
  /** The vocabulary adds BOS itself: a leading BOS text is removed. Default false. */
  readonly addBos?: boolean | undefined;
  /** The vocabulary adds EOS itself: a trailing EOS text is removed. Default false. */
  readonly addEos?: boolean | undefined;
  /** Extra template variables (`chat_template_kwargs`), e.g. `{ enable_thinking: false }`. */
  readonly kwargs?: Readonly<Record<string, unknown>> | undefined;
  /** OpenAI `reasoning_effort` (`none` turns thinking off). */
  readonly reasoningEffort?: string | undefined;
  /** The render's clock (`strftime_now`, `datetime`). Default: now. */
  readonly now?: Date | undefined;
  /** Called at every step of the render; may throw to stop it. */
  readonly onStep?: (() => void) | undefined;
}

/** A request that llama.cpp would refuse before rendering (bad message shape). */
export class ChatInputError extends Error {
  override name = "ChatInputError";
}

/** Deepest nesting of objects and arrays a template's data may have (messages, tools, kwargs). */
export const MAX_TEMPLATE_DATA_DEPTH = 256;

/** Whether JSON data nests objects or arrays more than `limit` levels (checked without recursion). */
function nestedDeeperThan(data: unknown, limit: number): boolean {
  const pending: [unknown, number][] = [[data, 0]];
  while (pending.length > 0) {
    const [value, depth] = pending.pop() as [unknown, number];
    if (typeof value !== "object" || value === null) continue;
    if (depth >= limit) return true;
    for (const child of Object.values(value)) pending.push([child, depth + 1]);
  }
  return false;
}

type Json = unknown;
type Obj = Record<string, Json>;

function isObj(v: Json): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function detectSpecial(src: string): SpecialFamily | undefined {
  const has = (s: string) => src.includes(s);
  if (has("[SYSTEM_PROMPT]") && has("[TOOL_CALLS]") && has("[ARGS]") && !has("[CALL_ID]")) {
    return "ministral3";
  }
  if (has("<|channel|>")) return "gpt-oss";
  if (has("<atem:function_calls>") && has("<|eom|>")) return "muse-glimmer";
  if (has(">>>all") && has(">>>${recipient}")) return "functionary-v3.2";
  if (has("<|tool_calls_section_begin|>") && has("<|tool_call_begin|>")) return "kimi-k2";
  if (has("<|open|>") && has("<|close|>") && has("<|end_of_msg|>")) return "kimi-k3";
  if (has("<role>ASSISTANT</role>") && has("<arg_key>")) return "ling3";
  if (has("<|START_TEXT|>") && has("<|START_ACTION|>")) return "cohere2moe";
  if (has("<|tool_list_start|>") && has("<|tool_list_end|>") || isLfm2(src)) return "lfm2";
  if (has("List of tools: [") && !has("<|tool_list_start|>")) return "lfm2.5";
  if (has("<|role_sep|>") && has("<|message_sep|>") && !has("<|function_call|>")) {
    return "gigachat-v3";
  }
  if (has("]<]minimax[>[") && has("<tool_call>") && has("<invoke name=")) return "minimax-m3";
  if (has("dsml_token") && has("DSML") && (has("function_calls") || has("tool_calls"))) {
    return "deepseek-v3.2";
  }
  if (has("'<|tool_call>call:'")) return "gemma4";
  if (has("Tool usage guidelines:") && has('<function name="') && has('<param name="')) {
    return "minicpm5";
  }
  if (
    has("<tool_call>") && has("<function=") && has("<parameter=") &&
    !has("'<tool_call><function=' ~ tool_call.name ~ '>'")
  ) return "qwen3-coder";
  return undefined;
}

function isLfm2(src: string): boolean {
  return src.includes("<|tool_list_start|>") && src.includes("<|tool_list_end|>");
}

/**
 * Parses a template and probes what it can do. The result is reusable for any number of renders.
 *
 * @param source The Jinja template.
 * @returns The compiled template.
 * @throws {import("./jinja/lexer.ts").JinjaSyntaxError} When it does not parse.
 * @example
 * ```ts
 * compileChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}").caps.supportsSystemRole; // true
 * ```
 */
export function compileChatTemplate(source: string): CompiledChatTemplate {
  const program = parseTemplate(source);
  const src = program.source;
  const caps = detectCaps(program);
  const special = detectSpecial(src);
  let supportsThinking: boolean;
  if (special === "gigachat-v3") supportsThinking = false;
  else if (special === "qwen3-coder") supportsThinking = src.includes("<think>");
  else if (special !== undefined) supportsThinking = true;
  else supportsThinking = thinkingToggles(program);
  return { source: src, program, caps, special, supportsThinking };
}

const MARKER = /^(<[^<>\s]+>|\[[^\[\]\s]+\])$/;

function trimWs(s: string): string {
  return s.replace(/^[ \t\n\v\f\r]+/, "").replace(/[ \t\n\v\f\r]+$/, "");
}

/** The differing middles of two texts (after their common prefix and suffix). */
function diff(a: string, b: string): [string, string] {
  let p = 0;
  while (p < a.length && p < b.length && a[p] === b[p]) p++;
  let s = 0;
  while (s < a.length - p && s < b.length - p && a[a.length - 1 - s] === b[b.length - 1 - s]) s++;
  return [a.slice(p, a.length - s), b.slice(p, b.length - s)];
}

/**
 * Whether llama.cpp's template analysis finds reasoning support (then `enable_thinking`
 * defaults to true): flipping `enable_thinking` adds or removes think markers at the end of
 * the prompt, or a message's `reasoning_content` is written between markers.
 */
function thinkingToggles(program: Program): boolean {
  const run = (messages: unknown[], vars: Record<string, unknown>) => {
    const ctx = new Context(undefined, {});
    ctx.setJson({ messages, bos_token: "", eos_token: "", ...vars });
    try {
      return render(program, ctx);
    } catch (error) {
      if (error instanceof StopRender) throw error;
      return undefined;
    }
  };
  const user = { role: "user", content: "Hello, please help me." };
  const off = run([user], { add_generation_prompt: true, enable_thinking: false });
  const on = run([user], { add_generation_prompt: true, enable_thinking: true });
  if (off !== undefined && on !== undefined && off !== on) {
    const [left, right] = diff(off, on);
    const l = trimWs(left);
    const r = trimWs(right);
    if (l === "" && r !== "" && on.endsWith(r)) return true;
    if (r === "" && l !== "" && off.endsWith(l)) return true;
    if (l !== "" && r !== "") {
      for (const [base, extended] of [[on, off], [off, on]] as const) {
        const anchor = base.slice(Math.max(0, base.length - 64));
        const at = extended.lastIndexOf(anchor);
        if (at < 0 || at + anchor.length >= extended.length) continue;
        const extra = trimWs(extended.slice(at + anchor.length)).split(/\s+/).filter((x) =>
          x !== ""
        );
        const markers = extra.length === 1
          ? extra[0]!.match(/<[^<>]+>|\[[^\[\]]+\]/g) ?? []
          : extra;
        if (
          markers.length === 2 && markers.every((m) => MARKER.test(m)) &&
          markers.join("").length <= extra.join("").length
        ) {
          return true;
        }
      }
    }
  }
  const thought = "I should think about this carefully.";
  const plain = run([user, { role: "assistant", content: "Sure." }], { enable_thinking: true });
  const withReasoning = run([user, {
    role: "assistant",
    content: "Sure.",
    reasoning_content: thought,
  }], {
    enable_thinking: true,
  });
  if (plain !== undefined && withReasoning !== undefined) {
    const [, right] = diff(plain, withReasoning);
    const at = withReasoning.indexOf(thought);
    if (right.includes(thought) && at >= 0) {
      const after = trimWs(withReasoning.slice(at + thought.length)).match(
        /^(<[^<>\s]+>|\[[^\[\]\s]+\])/,
      );
      if (after) return true;
    }
  }
  return false;
}

/** One message as llama.cpp's `common_chat_msg` holds it. */
interface ChatMsg {
  role: string;
  content: string;
  parts: { type: string; text: string }[];
  toolCalls: { name: string; arguments: string; id: string }[];
  reasoning: string;
  name: string;
  toolCallId: string;
}

function text(v: Json, what: string): string {
  if (typeof v !== "string") throw new ChatInputError(`${what} must be a string`);
  return v;
}

/** Reads OpenAI messages as llama.cpp does (`common_chat_msgs_parse_oaicompat`). */
function parseMessages(messages: readonly Json[]): ChatMsg[] {
  return messages.map((message, i) => {
    if (!isObj(message)) throw new ChatInputError(`messages[${i}] must be an object`);
    if (!("role" in message)) throw new ChatInputError(`messages[${i}] has no "role"`);
    const role = text(message.role, `messages[${i}].role`);
    const hasContent = "content" in message;
    const hasCalls = "tool_calls" in message;
    if (role !== "assistant" && !hasContent) {
      throw new ChatInputError("All non-assistant messages must contain 'content'");
    }
    if (role === "assistant" && !hasContent && !hasCalls) {
      throw new ChatInputError("Assistant message must contain either 'content' or 'tool_calls'");
    }
    const msg: ChatMsg = {
      role,
      content: "",
      parts: [],
      toolCalls: [],
      reasoning: "",
      name: "",
      toolCallId: "",
    };
    const content = message.content;
    if (typeof content === "string") msg.content = content;
    else if (Array.isArray(content)) {
      content.forEach((part, j) => {
        if (!isObj(part) || !("type" in part)) {
          throw new ChatInputError(`messages[${i}].content[${j}] has no "type"`);
        }
        if (part.type !== "text") {
          throw new ChatInputError(
            `messages[${i}].content[${j}] is not a text part; only {"type":"text","text":…} is supported`,
          );
        }
        msg.parts.push({
          type: "text",
          text: text(part.text, `messages[${i}].content[${j}].text`),
        });
      });
    } else if (content !== null && content !== undefined) {
      throw new ChatInputError(
        `messages[${i}].content must be a string, an array of parts or null`,
      );
    }
    if (hasCalls) {
      const calls = message.tool_calls;
      if (!Array.isArray(calls)) {
        throw new ChatInputError(`messages[${i}].tool_calls must be an array`);
      }
      calls.forEach((call, j) => {
        const where = `messages[${i}].tool_calls[${j}]`;
        if (!isObj(call) || call.type !== "function") {
          throw new ChatInputError(`${where}.type must be "function"`);
        }
        const fn = call.function;
        if (!isObj(fn) || !("name" in fn)) {
          throw new ChatInputError(`${where}.function.name is missing`);
        }
        const args = fn.arguments;
        msg.toolCalls.push({
          name: text(fn.name, `${where}.function.name`),
          arguments: typeof args === "string" ? args : JSON.stringify(args ?? null),
          id: "id" in call ? text(call.id, `${where}.id`) : "",
        });
      });
    }
    if ("reasoning_content" in message && message.reasoning_content !== null) {
      msg.reasoning = text(message.reasoning_content, `messages[${i}].reasoning_content`);
    }
    if ("name" in message && message.name !== null) {
      msg.name = text(message.name, `messages[${i}].name`);
    }
    if ("tool_call_id" in message && message.tool_call_id !== null) {
      msg.toolCallId = text(message.tool_call_id, `messages[${i}].tool_call_id`);
    }
    return msg;
  });
}

/** Tools as llama.cpp passes them: `{type, function: {name, description, parameters}}` only. */
function parseTools(tools: readonly Json[] | undefined): Obj[] {
  return (tools ?? []).map((tool, i) => {
    if (!isObj(tool) || tool.type !== "function") {
      throw new ChatInputError(`tools[${i}].type must be "function"`);
    }
    const fn = tool.function;
    if (!isObj(fn)) throw new ChatInputError(`tools[${i}].function is missing`);
    return {
      type: "function",
      function: {
        name: text(fn.name, `tools[${i}].function.name`),
        description: typeof fn.description === "string" ? fn.description : "",
        parameters: "parameters" in fn && fn.parameters !== undefined ? fn.parameters : {},
      },
    };
  });
}

function joinParts(parts: readonly { type?: unknown; text?: unknown }[]): string {
  let out = "";
  for (const part of parts) {
    if (part.type !== "text") continue;
    if (out !== "") out += "\n";
    out += typeof part.text === "string" ? part.text : "";
  }
  return out;
}

/** `common_chat_msg::to_json_oaicompat`, then content shaped for the template's caps. */
function messagesJson(msgs: readonly ChatMsg[], caps: TemplateCaps): Obj[] {
  const onlyString = caps.supportsStringContent && !caps.supportsTypedContent;
  const onlyTyped = !caps.supportsStringContent && caps.supportsTypedContent;
  return msgs.map((m) => {
    const out: Obj = { role: m.role };
    if (m.content !== "") out.content = m.content;
    else if (m.parts.length > 0) out.content = m.parts.map((p) => ({ type: p.type, text: p.text }));
    else out.content = "";
    if (m.reasoning !== "") out.reasoning_content = m.reasoning;
    if (m.name !== "") out.name = m.name;
    if (m.toolCallId !== "") out.tool_call_id = m.toolCallId;
    if (m.toolCalls.length > 0) {
      out.tool_calls = m.toolCalls.map((c) => {
        const call: Obj = { type: "function", function: { name: c.name, arguments: c.arguments } };
        if (c.id !== "") call.id = c.id;
        return call;
      });
    }
    // A tool result's parts are joined where the template takes strings: templates that read
    // parts in user turns (Kimi K2, GLM 4.6) print a tool turn's content as it is, and printed
    // a list of parts as nothing (llama-server passes them on as parts there too).
    const joinTool = m.role === "tool" && caps.supportsStringContent;
    if (onlyTyped && typeof out.content === "string") {
      out.content = [{ type: "text", text: out.content }];
    } else if ((onlyString || joinTool) && Array.isArray(out.content)) {
      out.content = joinParts(out.content as Obj[]);
    }
    return out;
  });
}

function trimC(s: string): string {
  return s.replace(/^[ \t\n\v\f\r]+/, "").replace(/[ \t\n\v\f\r]+$/, "");
}

/** Reorders consecutive tool results by the order of the calls they answer (DeepSeek V4). */
function sortToolResults(messages: Obj[]): Obj[] {
  const out = [...messages];
  let order = new Map<string, number>();
  for (let i = 0; i < out.length;) {
    const role = out[i]!.role;
    const calls = out[i]!.tool_calls;
    if (role === "assistant" && Array.isArray(calls) && calls.length > 0) {
      order = new Map();
      calls.forEach((c, idx) => {
        const id = isObj(c) && typeof c.id === "string" ? c.id : "";
        if (id !== "") order.set(id, idx);
      });
      i++;
      continue;
    }
    if (role !== "user" && role !== "tool") {
      i++;
      continue;
    }
    const positions: number[] = [];
    let end = i;
    for (; end < out.length; end++) {
      const r = out[end]!.role;
      if (r === "tool") positions.push(end);
      else if (r !== "user") break;
    }
    if (positions.length > 1 && order.size > 0) {
      const rank = (m: Obj) =>
        order.get(typeof m.tool_call_id === "string" ? m.tool_call_id : "") ?? 0;
      const results = positions.map((p) => out[p]!).map((m, k) => ({ m, k }))
        .sort((a, b) => rank(a.m) - rank(b.m) || a.k - b.k).map((x) => x.m);
      positions.forEach((p, k) => (out[p] = results[k]!));
    }
    i = end;
  }
  return out;
}

/** Older Gemma 4 templates: tool results go into the assistant turn as `tool_responses`. */
function gemma4ToolResponses(messages: Obj[]): Obj[] {
  const hasCalls = (m: Obj) => Array.isArray(m.tool_calls) && m.tool_calls.length > 0;
  const hasContent = (m: Obj) =>
    (typeof m.content === "string" && m.content !== "") ||
    (Array.isArray(m.content) && m.content.length > 0);
  const out: Obj[] = [];
  let i = 0;
  while (i < messages.length) {
    const msg = messages[i]!;
    if (msg.role !== "assistant" || !hasCalls(msg)) {
      out.push(msg);
      i++;
      continue;
    }
    const calls = [...(msg.tool_calls as Json[])];
    const responses: Obj[] = [];
    const reasoning = typeof msg.reasoning_content === "string" ? msg.reasoning_content : undefined;
    let content: Json = undefined;
    i++;
    while (i < messages.length && messages[i]!.role === "tool") {
      const cur = messages[i]!;
      let response: Json = null;
      if ("content" in cur) {
        if (typeof cur.content === "string") {
          try {
            response = JSON.parse(cur.content);
          } catch {
            response = cur.content;
          }
        } else response = cur.content;
      }
      let name = "";
      const call = calls[responses.length];
      if (isObj(call) && isObj(call.function) && typeof call.function.name === "string") {
        name = call.function.name;
      }
      if (name === "" && typeof cur.tool_call_id === "string") name = cur.tool_call_id;
      responses.push({ name, response });
      i++;
    }
    if (i < messages.length && messages[i]!.role === "assistant") {
      const next = messages[i]!;
      if (!hasCalls(next) && hasContent(next)) {
        content = next.content;
        i++;
      }
    }
    const built: Obj = { role: "assistant", tool_calls: calls };
    if (responses.length > 0) built.tool_responses = responses;
    if (content !== undefined && content !== null) built.content = content;
    if (reasoning !== undefined) built.reasoning_content = reasoning;
    out.push(built);
  }
  return out;
}

/** Message adjustments of llama.cpp's dedicated handlers; `undefined` when none. */
function specialMessages(tmpl: CompiledChatTemplate, messages: Obj[]): Obj[] | undefined {
  switch (tmpl.special) {
    case "gpt-oss":
      return messages.map((m) => {
        if (typeof m.reasoning_content !== "string") return m;
        const out: Obj = { ...m, thinking: m.reasoning_content };
        if (Array.isArray(m.tool_calls) && m.tool_calls.length > 0) delete out.content;
        return out;
      });
    case "lfm2":
    case "lfm2.5":
      return messages.map((m) =>
        typeof m.reasoning_content === "string" ? { ...m, thinking: m.reasoning_content } : m
      );
    case "ministral3":
      return messages.map((m) => {
        if (m.role !== "system" && m.role !== "assistant") return m;
        const blocks: Json[] = [];
        if (typeof m.reasoning_content === "string") {
          blocks.push({ type: "thinking", thinking: m.reasoning_content });
        }
        if (typeof m.content === "string") blocks.push({ type: "text", text: m.content });
        else if (Array.isArray(m.content)) { for (const block of m.content) blocks.push(block); }
        const out: Obj = { ...m, content: blocks };
        delete out.reasoning_content;
        return out;
      });
    case "deepseek-v3.2":
      return tmpl.source.includes("function_calls") ? undefined : sortToolResults(messages);
    default:
      return undefined;
  }
}

/**
 * Renders a conversation with a compiled template, as llama-server's `/apply-template` does.
 *
 * @param tmpl The compiled template.
 * @param input Messages, tools, special tokens, kwargs.
 * @returns The prompt text.
 * @throws {ChatInputError} For a malformed message, tool or tool-call arguments.
 * @throws {import("./jinja/runtime.ts").JinjaRenderError} When the template raises an error or fails.
 * @example
 * ```ts
 * applyChatTemplate(compileChatTemplate(src), { messages: [{ role: "user", content: "Hi" }] });
 * ```
 */
export function applyChatTemplate(tmpl: CompiledChatTemplate, input: ChatTemplateInput): string {
  const src = tmpl.source;
  const caps = tmpl.caps;
  let msgs = parseMessages(input.messages);
  if (src.includes("You have access to the following functions in JSONSchema format")) {
    msgs = msgs.map((m) => ({
      ...m,
      content: trimC(m.content),
      reasoning: trimC(m.reasoning),
      parts: m.parts.map((p) => ({ ...p, text: trimC(p.text) })),
    }));
  }
  const tools = input.tools && input.tools.length > 0 ? parseTools(input.tools) : undefined;
  let messages = messagesJson(msgs, caps);
  if (!src.includes("<|channel|>")) {
    messages = messages.map((m) => (m.role === "developer" ? { ...m, role: "system" } : m));
  }
  // Templates that know nothing of tools get them described, and their turns as text (Shimmy's
  // own step: llama-server renders such a template without the tools).
  if (tools && !caps.supportsTools) {
    messages = withToolsInSystem(messages, tools, detectToolFormat(src).id === "generic");
  }
  if (!caps.supportsToolCalls) messages = toolTurnsAsText(messages);
  if (!caps.supportsSystemRole && messages[0]?.role === "system") {
    const [first, second] = messages;
    if (second !== undefined) {
      if (typeof first!.content !== "string" || typeof second.content !== "string") {
        throw new ChatInputError(
          "Cannot merge the system message into the next one: both must be text",
        );
      }
      messages = [
        { ...second, content: `${first!.content}\n${second.content}` },
        ...messages.slice(2),
      ];
    } else {
      messages = messages.slice(1);
    }
  }
  if (caps.supportsToolCalls) {
    messages = messages.map((
      m,
    ) => ("tool_calls" in m && !("content" in m) ? { ...m, content: "" } : m));
  }
  if (caps.supportsObjectArguments) {
    messages = messages.map((m) => {
      if (!Array.isArray(m.tool_calls)) return m;
      return {
        ...m,
        tool_calls: m.tool_calls.map((c) => {
          if (!isObj(c) || !isObj(c.function) || typeof c.function.arguments !== "string") return c;
          let args: Json;
          try {
            args = JSON.parse(c.function.arguments);
          } catch (error) {
            throw new ChatInputError(
              `Failed to parse tool call arguments as JSON: ${(error as Error).message}`,
            );
          }
          return { ...c, function: { ...c.function, arguments: args } };
        }),
      };
    });
  }
  if (tmpl.special === "gemma4" && !src.includes("{#- OpenAI Chat Completions:")) {
    messages = gemma4ToolResponses(messages);
  }

  const now = input.now ?? new Date();
  let enableThinking = tmpl.supportsThinking;
  const kwargs: Obj = { preserve_reasoning: true, ...(input.kwargs ?? {}) };
  if (kwargs.enable_thinking === true) enableThinking = true;
  else if (kwargs.enable_thinking === false) enableThinking = false;
  else if (typeof kwargs.enable_thinking === "string") {
    throw new ChatInputError('Invalid type for "enable_thinking" (expected boolean, got string)');
  }
  if (input.reasoningEffort === "none") {
    enableThinking = false;
    delete kwargs.reasoning_effort;
  } else if (input.reasoningEffort) {
    kwargs.reasoning_effort = input.reasoningEffort;
  }

  const vars: Obj = {
    messages: specialMessages(tmpl, messages) ?? messages,
    bos_token: input.bosToken ?? "",
    eos_token: input.eosToken ?? "",
    enable_thinking: enableThinking,
  };
  if (tools) vars.tools = tools;
  vars.datetime = strftime("%b %d %Y", now);
  vars.date_string = strftime("%d %b %Y", now);
  Object.assign(vars, kwargs);
  if (input.addGenerationPrompt ?? true) vars.add_generation_prompt = true;

  const options: RenderOptions = { now, ...(input.onStep ? { onStep: input.onStep } : {}) };
  const ctx = new Context(undefined, options);
  if (typeof vars.preserve_reasoning === "boolean") {
    applyPreserveReasoning(ctx, vars.preserve_reasoning);
  }
  if (typeof vars.reasoning_effort === "string" && vars.reasoning_effort !== "") {
    applyReasoningEffort(ctx, vars.reasoning_effort);
  }
  if (nestedDeeperThan(vars, MAX_TEMPLATE_DATA_DEPTH)) {
    // The engine walks values recursively: a deeper tool schema or argument would overflow the
    // stack (a 500), not fail like bad input.
    throw new ChatInputError(
      `The messages or tools are nested more than ${MAX_TEMPLATE_DATA_DEPTH} levels deep`,
    );
  }
  ctx.setJson(vars);
  let result = render(tmpl.program, ctx);
  const bos = input.bosToken ?? "";
  const eos = input.eosToken ?? "";
  if (input.addBos && result.startsWith(bos)) result = result.slice(bos.length);
  if (input.addEos && result.endsWith(eos)) result = result.slice(0, result.length - eos.length);
  return result;
}
