/**
 * The chat messages that templates render, and the text of a message's content.
 *
 * @module
 */

/**
 * One chat message. Jinja templates see the whole object, so OpenAI-style fields
 * (`tool_calls`, `tool_call_id`, `name`) reach templates that use them.
 */
export interface TemplateMessage {
  /** `system`, `user`, `assistant`, `tool`… */
  readonly role: string;
  /**
   * The message text, or its text parts (`{type: "text", text}`); `null` or absent (an
   * assistant turn with only tool calls) counts as empty.
   */
  readonly content?: string | null | readonly TemplatePart[];
  /** The assistant's reasoning (`reasoning_content`), passed to templates that show it. */
  readonly reasoning_content?: string;
  /** Tool calls of an assistant message. */
  readonly tool_calls?: readonly unknown[];
  /** The call a `tool` message answers. */
  readonly tool_call_id?: string;
  /** Name of the tool or participant. */
  readonly name?: string;
}

/** One part of a message's content. */
export interface TemplatePart {
  /** `text`. */
  readonly type: string;
  /** The text. */
  readonly text: string;
}

/** A message's content as one text (parts joined with `\n`, as llama.cpp joins them). */
export function plainText(content: TemplateMessage["content"]): string {
  if (content === undefined || content === null) return "";
  if (typeof content === "string") return content;
  return content.filter((p) => p.type === "text").map((p) => p.text).join("\n");
}

/**
 * How many tool calls the conversation's assistant messages hold.
 *
 * @param messages The conversation.
 * @returns The count.
 * @example
 * ```ts
 * toolCallsIn([{ role: "assistant", tool_calls: [call, call] }, { role: "tool", content: "1" }]); // 2
 * ```
 */
export function toolCallsIn(messages: readonly TemplateMessage[]): number {
  return messages.reduce(
    (n, m) => n + (m.role === "assistant" && Array.isArray(m.tool_calls) ? m.tool_calls.length : 0),
    0,
  );
}
