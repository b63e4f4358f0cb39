/**
 * Tool-call ids as Mistral's templates demand them: nine letters and digits, or the template
 * raises "Tool call IDs should be alphanumeric strings with length 9!". Clients send back ids of
 * their own shape (the Anthropic API's `toolu_…`, an Ollama client's none, another server's
 * `call_…`), so every other id is given a nine-character one derived from it, the same for a
 * call and the result that answers it.
 *
 * @module
 */

import type { TemplateMessage } from "../template_messages.ts";
import { ALNUM } from "./output_stream.ts";

const MISTRAL_ID = /^[A-Za-z0-9]{9}$/;

/**
 * A nine-character id derived from `id` (the same one every time), or `id` when it already is
 * one.
 *
 * @param id A tool call's id.
 * @returns Nine letters and digits.
 * @example
 * ```ts
 * mistralToolId("Ab3dE6gH9"); // "Ab3dE6gH9"
 * mistralToolId("toolu_Ab3dE6gH9"); // nine letters and digits, always the same for this id
 * ```
 */
export function mistralToolId(id: string): string {
  if (MISTRAL_ID.test(id)) return id;
  // Two FNV-1a hashes of the id's UTF-16 units, 64 bits, written in base 62.
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ id.length;
  for (let i = 0; i < id.length; i++) {
    a = Math.imul(a ^ id.charCodeAt(i), 0x01000193) >>> 0;
    b = Math.imul(b ^ id.charCodeAt(id.length - 1 - i), 0x01000193) >>> 0;
  }
  let n = (BigInt(a) << 32n) | BigInt(b);
  let out = "";
  for (let i = 0; i < 9; i++) {
    out += ALNUM[Number(n % 62n)];
    n /= 62n;
  }
  return out;
}

/**
 * The messages with every tool-call id, and every result's `tool_call_id`, in Mistral's shape.
 *
 * @param messages The conversation.
 * @returns The same messages, those with other ids copied with theirs replaced.
 */
export function withMistralToolIds(
  messages: readonly TemplateMessage[],
): readonly TemplateMessage[] {
  return messages.map((message) => {
    let out = message;
    if (message.tool_call_id !== undefined && !MISTRAL_ID.test(message.tool_call_id)) {
      out = { ...out, tool_call_id: mistralToolId(message.tool_call_id) };
    }
    if (message.tool_calls?.some((call) => typeof idOf(call) === "string")) {
      out = {
        ...out,
        tool_calls: message.tool_calls.map((call) => {
          const id = idOf(call);
          return typeof id === "string" && !MISTRAL_ID.test(id)
            ? { ...(call as object), id: mistralToolId(id) }
            : call;
        }),
      };
    }
    return out;
  });
}

function idOf(call: unknown): unknown {
  return typeof call === "object" && call !== null ? (call as { id?: unknown }).id : undefined;
}
