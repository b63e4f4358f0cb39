/**
 * What a chat template can do, found the way llama.cpp finds it: render it a few times with
 * probe conversations while recording which inputs it reads and how (as text, as a list…).
 * The answers decide how messages are shaped before the real render (a template that never
 * prints a system message gets it merged into the first user turn, one that reads content as
 * a list gets text parts, one that reads `arguments.arg` gets arguments as objects).
 *
 * @module
 */

import type { Program } from "./parser.ts";
import { Context, render, StopRender } from "./runtime.ts";
import { JString, type JValue } from "./values.ts";
import { JArray, JObject } from "./values.ts";

/** A template's capabilities (llama.cpp's `jinja::caps`). */
export interface TemplateCaps {
  supportsTools: boolean;
  supportsToolCalls: boolean;
  supportsSystemRole: boolean;
  supportsParallelToolCalls: boolean;
  supportsPreserveReasoning: boolean;
  supportsReasoningEffort: boolean;
  supportsStringContent: boolean;
  supportsTypedContent: boolean;
  supportsObjectArguments: boolean;
}

interface Probe {
  ctx: Context;
  ok: boolean;
  output: string;
  messages: JValue;
  tools: JValue;
}

function probe(
  program: Program,
  messages: unknown[],
  tools: unknown[] | undefined,
  extra?: (ctx: Context) => void,
): Probe {
  const ctx = new Context(undefined, { collectStats: true });
  ctx.setJson({
    messages,
    tools: tools ?? [],
    bos_token: "",
    eos_token: "",
    add_generation_prompt: true,
  });
  extra?.(ctx);
  const result: Probe = {
    ctx,
    ok: false,
    output: "",
    messages: ctx.get("messages"),
    tools: ctx.get("tools"),
  };
  try {
    result.output = render(program, ctx);
    result.ok = true;
  } catch (error) {
    if (error instanceof StopRender) throw error; // a failing probe is an answer, a stop is not
  }
  return result;
}

function at(v: JValue | undefined, ...path: (string | number)[]): JValue | undefined {
  let cur = v;
  for (const key of path) {
    if (cur instanceof JArray && typeof key === "number") cur = cur.items[key];
    else if (cur instanceof JObject && typeof key === "string") cur = cur.get(key);
    else return undefined;
  }
  return cur;
}

const used = (v: JValue | undefined) => v?.stats?.used === true;
const hasOp = (v: JValue | undefined, op: string) => v?.stats?.ops.has(op) === true;

const TOOLS = [{
  name: "tool",
  type: "function",
  function: {
    name: "tool1",
    description: "Tool description",
    parameters: {
      type: "object",
      properties: { arg: { type: "string", description: "Arg description" } },
      required: ["arg"],
    },
  },
}];

function toolConversation(args: unknown, calls = 1): unknown[] {
  const call = (id: string) => ({
    id,
    type: "function",
    function: { name: "tool1", arguments: args },
  });
  return [
    { role: "user", content: "User message" },
    {
      role: "assistant",
      content: "",
      tool_calls: calls === 1 ? [call("call00001")] : [call("call00001"), call("call00002")],
    },
    { role: "tool", content: "Tool response", tool_call_id: "call00001" },
    { role: "assistant", content: "The tool response was 'tool response'" },
    { role: "user", content: "User message" },
  ];
}

/**
 * Sets the variables llama.cpp derives from `preserve_reasoning`.
 *
 * @param ctx The render context.
 * @param enabled Keep reasoning in the history.
 */
export function applyPreserveReasoning(ctx: Context, enabled: boolean): void {
  ctx.setJson({
    preserve_thinking: enabled,
    clear_thinking: !enabled,
    truncate_history_thinking: !enabled,
    drop_thinking: !enabled,
  });
}

/**
 * Sets the variables llama.cpp derives from `reasoning_effort`.
 *
 * @param ctx The render context.
 * @param effort The effort level.
 */
export function applyReasoningEffort(ctx: Context, effort: string): void {
  const value = new JString(effort);
  ctx.set("reasoning_effort", value);
  ctx.set("reasoning_strength", value);
}

/**
 * Probes a template's capabilities.
 *
 * @param program The parsed template.
 * @returns Its capabilities.
 * @example
 * ```ts
 * detectCaps(parseTemplate("{% for m in messages %}{{ m.content }}{% endfor %}")).supportsSystemRole; // true
 * ```
 */
export function detectCaps(program: Program): TemplateCaps {
  const caps: TemplateCaps = {
    supportsTools: true,
    supportsToolCalls: true,
    supportsSystemRole: true,
    supportsParallelToolCalls: true,
    supportsPreserveReasoning: false,
    supportsReasoningEffort: false,
    supportsStringContent: true,
    supportsTypedContent: false,
    supportsObjectArguments: false,
  };
  const marker = "STRING_MARKER";
  const typed = probe(program, [{ role: "user", content: marker }], undefined);
  const content = at(typed.messages, 0, "content");
  const checksString = hasOp(content, "test_is_string");
  const asArray = hasOp(content, "selectattr") || hasOp(content, "array_access");
  if (asArray) caps.supportsTypedContent = true;
  if (!typed.ok) caps.supportsStringContent = false;
  else if (asArray && !typed.output.includes(marker)) caps.supportsStringContent = false;
  if (checksString) {
    const empty = probe(program, [{ role: "user", content: [] }], undefined);
    const c = at(empty.messages, 0, "content");
    if ((hasOp(c, "selectattr") || hasOp(c, "array_access")) && empty.ok) {
      caps.supportsTypedContent = true;
    }
  }

  const system = probe(program, [
    { role: "system", content: "System message" },
    { role: "user", content: "User message" },
  ], undefined);
  if (!used(at(system.messages, 0, "content"))) caps.supportsSystemRole = false;

  const objectArgs = probe(program, toolConversation({ arg: "value" }), TOOLS);
  if (objectArgs.ok) {
    if (!used(at(objectArgs.tools, 0, "function", "name"))) caps.supportsTools = false;
    const calls = at(objectArgs.messages, 1, "tool_calls");
    if (!used(calls)) caps.supportsToolCalls = false;
    else if (used(at(calls, 0, "function", "arguments", "arg"))) {
      caps.supportsObjectArguments = true;
    }
  }
  if (!caps.supportsObjectArguments) {
    const stringArgs = probe(program, toolConversation('{"arg": "value"}'), TOOLS);
    if (!stringArgs.ok) {
      caps.supportsToolCalls = false;
      caps.supportsTools = false;
    } else {
      if (!used(at(stringArgs.tools, 0, "function", "name"))) caps.supportsTools = false;
      if (!used(at(stringArgs.messages, 1, "tool_calls"))) caps.supportsToolCalls = false;
    }
  }

  const parallel = probe(
    program,
    toolConversation(caps.supportsObjectArguments ? { arg: "value" } : '{"arg": "value"}', 2),
    TOOLS,
  );
  if (!parallel.ok || !used(at(parallel.messages, 1, "tool_calls", 1, "function"))) {
    caps.supportsParallelToolCalls = false;
  }

  const placeholder = "<REASONING_CONTENT_PLACEHOLDER>";
  const preserve = probe(
    program,
    [
      { role: "user", content: "User message" },
      { role: "assistant", content: "Assistant message", reasoning_content: placeholder },
      { role: "user", content: "User message" },
      { role: "assistant", content: "Assistant message", reasoning_content: "Reasoning content" },
      { role: "user", content: "User message" },
    ],
    undefined,
    (ctx) => {
      ctx.setJson({ enable_thinking: true });
      applyPreserveReasoning(ctx, true);
    },
  );
  if (preserve.output.includes(placeholder)) caps.supportsPreserveReasoning = true;

  const effort = probe(program, [{ role: "user", content: "User message" }], undefined, (ctx) => {
    ctx.setJson({ enable_thinking: true });
    applyReasoningEffort(ctx, "low");
  });
  caps.supportsReasoningEffort = used(effort.ctx.get("reasoning_effort"));
  return caps;
}
