/**
 * Responses input items (`message`, `function_call`, `function_call_output`, `reasoning`,
 * `item_reference`) checked, and turned into OpenAI chat messages: a `function_call` joins the
 * assistant turn before it as one of its `tool_calls`, a `function_call_output` is a `tool`
 * message (named after its call), a `reasoning` item is the next assistant turn's
 * `reasoning_content`, and `developer` is `system`. Images, files and other item types are a
 * 400 naming the item. Input items a response keeps get ids (`withItemIds`).
 *
 * @module
 */

import type { TemplateMessage, TemplatePart } from "../engine/templates.ts";
import { badRequest } from "./http_error.ts";
import type { ResponseStore } from "./response_store.ts";
import { isObject } from "../util/objects.ts";
import { itemId } from "./responses_output.ts";

/** A Responses input or output item, as JSON. */
export type Item = Record<string, unknown>;

function given(value: unknown): boolean {
  return value !== undefined && value !== null;
}

/**
 * The `input` field as checked items; an `item_reference` is replaced by the stored item.
 *
 * @param value The `input` field: a string (one user message) or an array of items.
 * @param store The stored responses, for `item_reference`.
 * @returns The items.
 * @throws {HttpError} 400 naming the item that cannot be read.
 */
export function inputItems(value: unknown, store: ResponseStore): Item[] {
  if (!given(value)) return [];
  if (typeof value === "string") return [{ type: "message", role: "user", content: value }];
  if (!Array.isArray(value)) {
    throw badRequest('"input" must be a string or an array of input items', "input");
  }
  return value.map((raw, i) => {
    let item = raw;
    if (isObject(item) && item.type === "item_reference") {
      const id = item.id;
      item = typeof id === "string" ? store.item(id) : undefined;
      if (!item) {
        throw badRequest(`input[${i}] references item ${JSON.stringify(id)}, not stored`, "input");
      }
    }
    checkItem(item, `input[${i}]`);
    return item as Item;
  });
}

const ROLES = ["user", "system", "developer", "assistant"];

function checkItem(item: unknown, at: string): void {
  if (!isObject(item)) throw badRequest(`${at} must be an object`, "input");
  const type = item.type ?? "message";
  const string = (key: string) => {
    if (typeof item[key] !== "string") throw badRequest(`${at}.${key} must be a string`, "input");
  };
  switch (type) {
    case "message":
      if (!ROLES.includes(item.role as string)) {
        throw badRequest(`${at}.role must be one of ${ROLES.join(", ")}`, "input");
      }
      textOf(item.content, `${at}.content`);
      return;
    case "function_call":
      ["call_id", "name", "arguments"].forEach(string);
      return;
    case "function_call_output":
      string("call_id");
      textOf(item.output, `${at}.output`);
      return;
    case "reasoning":
      if (given(item.encrypted_content)) {
        throw badRequest(`${at}.encrypted_content cannot be read here; send its text`, "input");
      }
      return;
    default:
      throw badRequest(
        `${at} is a ${JSON.stringify(type)} item, which is not supported; send message, ` +
          "function_call, function_call_output, reasoning or item_reference items",
        "input",
      );
  }
}

/** Text part types; images, files and audio need a model that sees them. */
const TEXT_PARTS = ["input_text", "output_text", "text", "summary_text", "reasoning_text"];

/** A content value as text parts (a string stays a string). */
function textOf(content: unknown, at: string): string | TemplatePart[] {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) {
    throw badRequest(`${at} must be a string or an array of content parts`, "input");
  }
  return content.map((part, j) => {
    if (isObject(part) && part.type === "refusal" && typeof part.refusal === "string") {
      return { type: "text", text: part.refusal };
    }
    if (isObject(part) && TEXT_PARTS.includes(part.type as string)) {
      if (typeof part.text !== "string") {
        throw badRequest(`${at}[${j}].text must be a string`, "input");
      }
      return { type: "text", text: part.text };
    }
    const type = isObject(part) ? JSON.stringify(part.type) : "not an object";
    throw badRequest(
      `${at}[${j}] is ${type}: only text parts (input_text, output_text) are supported; ` +
        "images, files and audio need a model that reads them",
      "input",
    );
  });
}

/** Plain text of parts or a string. */
function joined(content: string | TemplatePart[]): string {
  return typeof content === "string" ? content : content.map((p) => p.text).join("");
}

type Message = {
  role: string;
  content?: string | null | TemplatePart[];
  reasoning_content?: string;
  tool_calls?: unknown[];
  tool_call_id?: string;
  name?: string;
};

/**
 * Checked items as OpenAI chat messages, as `chatMessages` in request_body.ts reads them.
 *
 * @param items The conversation.
 * @param instructions The system message, if any.
 * @returns The messages.
 */
export function chatMessagesOf(items: readonly Item[], instructions?: string): TemplateMessage[] {
  const messages: Message[] = instructions ? [{ role: "system", content: instructions }] : [];
  const names = new Map<string, string>();
  let reasoning: string | undefined;
  const assistant = (): Message => {
    const last = messages.at(-1);
    if (last?.role === "assistant") return last;
    const added: Message = { role: "assistant", content: null };
    messages.push(added);
    return added;
  };
  for (const item of items) {
    switch (item.type ?? "message") {
      case "message": {
        const content = textOf(item.content, "input");
        if (item.role !== "assistant") {
          messages.push({
            role: item.role === "developer" ? "system" : item.role as string,
            content,
          });
          break;
        }
        messages.push({
          role: "assistant",
          content: joined(content),
          ...(reasoning !== undefined ? { reasoning_content: reasoning } : {}),
        });
        reasoning = undefined;
        break;
      }
      case "function_call": {
        const turn = assistant();
        if (reasoning !== undefined) turn.reasoning_content ??= reasoning;
        reasoning = undefined;
        const id = item.call_id as string;
        names.set(id, item.name as string);
        // Pushed, not copied: 40,000 calls copied the list each time (seconds of the event loop).
        (turn.tool_calls ??= []).push({
          id,
          type: "function",
          function: { name: item.name, arguments: item.arguments },
        });
        break;
      }
      case "function_call_output": {
        const id = item.call_id as string;
        const name = names.get(id);
        messages.push({
          role: "tool",
          tool_call_id: id,
          content: joined(textOf(item.output, "input")),
          ...(name !== undefined ? { name } : {}),
        });
        break;
      }
      case "reasoning": {
        const parts = Array.isArray(item.content) && item.content.length > 0
          ? item.content
          : Array.isArray(item.summary)
          ? item.summary
          : [];
        reasoning = (reasoning ?? "") + joined(textOf(parts, "input"));
        break;
      }
    }
  }
  return messages;
}

/** Id prefixes by item type, as OpenAI's ids look. */
const PREFIXES: Record<string, string> = {
  message: "msg",
  function_call: "fc",
  function_call_output: "fco",
  reasoning: "rs",
};

/**
 * Input items as a response keeps them: each with an id (its own, or a new one), a message's
 * string content as one text part (`input_text`, or `output_text` for the assistant's).
 *
 * @param items The request's input items.
 * @returns New items; the given ones are not changed.
 * @example
 * ```ts
 * withItemIds([{ type: "message", role: "user", content: "Hi" }]);
 * // [{ id: "msg_…", type: "message", role: "user", content: [{ type: "input_text", text: "Hi" }] }]
 * ```
 */
export function withItemIds(items: readonly Item[]): Item[] {
  return items.map((item) => {
    const type = (item.type ?? "message") as string;
    const content = typeof item.content === "string" && type === "message"
      ? [{ type: item.role === "assistant" ? "output_text" : "input_text", text: item.content }]
      : item.content;
    const { id, ...rest } = item;
    return {
      id: typeof id === "string" ? id : itemId(PREFIXES[type] ?? "item"),
      ...rest,
      type,
      ...(content !== undefined ? { content } : {}),
    };
  });
}
