/**
 * Tool calling for chat templates that know nothing of tools (Gemma 2, Phi-3.5…). llama-server
 * renders such a template without the request's tools, so the model never learns of them, and
 * a conversation that comes back with calls and results either loses them or makes the template
 * raise (Gemma's alternation check refuses a `tool` turn). Shimmy writes the tools into the
 * system message (with the generic JSON call format, `{"tool_calls": [...]}`, which Shimmy reads
 * and forces for such templates, unless the template writes calls in a format of its own), and,
 * where the template cannot show calls, turns an assistant's calls into that JSON text and the
 * tool results into a user turn.
 *
 * @module
 */

import { plainText, type TemplateMessage } from "./template_messages.ts";

type Obj = Record<string, unknown>;

/**
 * The system text that describes the tools, and how to call them where the template teaches no
 * call format of its own.
 *
 * @param tools The tools, as llama.cpp passes them (`{type, function: {name, description,
 *   parameters}}`).
 * @param teachFormat Whether to teach the generic JSON format (a template that writes calls in a
 *   format of its own, such as DeepSeek R1's, has taught the model that one).
 * @returns The text.
 */
export function toolsSystemText(tools: readonly Obj[], teachFormat: boolean): string {
  const described = JSON.stringify(tools.map((tool) => tool.function), null, 2);
  const how = teachFormat
    ? "To call tools, answer with JSON only, in this form: " +
      '{"tool_calls": [{"name": "<tool name>", "arguments": {<the arguments>}}]}\n'
    : "";
  return `You can call tools. ${how}The tools:\n${described}`;
}

/**
 * The messages with the tools described in the system message (a new first message where there
 * is none).
 *
 * @param messages Messages in the shape templates take.
 * @param tools The tools.
 * @param teachFormat See {@link toolsSystemText}.
 * @returns The messages to render.
 */
export function withToolsInSystem(
  messages: readonly Obj[],
  tools: readonly Obj[],
  teachFormat: boolean,
): Obj[] {
  const text = toolsSystemText(tools, teachFormat);
  const [first, ...rest] = messages;
  if (first?.role === "system") {
    const before = textOf(first.content);
    return [{ ...first, content: before === "" ? text : `${before}\n\n${text}` }, ...rest];
  }
  return [{ role: "system", content: text }, ...messages];
}

/**
 * The messages with tool turns as text: an assistant's calls become the JSON it would have
 * written, and the results that follow become one user turn (joined with a user turn beside
 * them, for templates that insist that users and the assistant alternate).
 *
 * @param messages Messages in the shape templates take.
 * @returns The messages to render.
 */
export function toolTurnsAsText(messages: readonly Obj[]): Obj[] {
  const out: Obj[] = [];
  // The user turn made of tool results, which the next results or user turn join.
  let results: Obj | undefined;
  // The names of the calls by id, for results that do not name their tool.
  const names = new Map<unknown, unknown>();
  for (const message of messages) {
    if (message.role === "assistant" && Array.isArray(message.tool_calls)) {
      const { tool_calls: calls, ...rest } = message;
      for (const call of calls as Obj[]) names.set(call.id, (call.function as Obj)?.name);
      const json = JSON.stringify({ tool_calls: calls.map(callJson) });
      const before = textOf(message.content);
      out.push({ ...rest, content: before === "" ? json : `${before}\n${json}` });
      results = undefined;
      continue;
    }
    const name = message.name ?? names.get(message.tool_call_id);
    const text = message.role === "tool"
      ? `Tool result${name ? ` of ${name}` : ""}: ${textOf(message.content)}`
      : message.role === "user" && results
      ? textOf(message.content)
      : undefined;
    if (text === undefined) {
      out.push(message);
      results = undefined;
    } else if (results) {
      results.content = `${results.content}\n\n${text}`;
    } else {
      results = { role: "user", content: text };
      out.push(results);
    }
  }
  return out;
}

function callJson(call: unknown): Obj {
  const fn = (call as { function?: { name?: unknown; arguments?: unknown } }).function ?? {};
  let args = fn.arguments;
  if (typeof args === "string") {
    try {
      args = JSON.parse(args);
    } catch {
      // kept as the text it was
    }
  }
  return { name: fn.name, arguments: args };
}

function textOf(content: unknown): string {
  return plainText(content as TemplateMessage["content"]);
}
