/**
 * Continuing the assistant's last message (prefill): a conversation that ends with the
 * assistant's message is not answered with a new turn; the model goes on with that message, as
 * llama-server does unless started with `--no-prefill-assistant`. Requests say it with their
 * last message (every chat API), or with llama-server's `continue_final_message`; `echo` says
 * whether the message's text so far comes back with the answer.
 *
 * @module
 */

import type { ContinuedPart } from "../engine/template_continuation.ts";
import type { TemplateMessage } from "../engine/templates.ts";
import { badRequest } from "./http_error.ts";
import type { Fields } from "./request_body.ts";

/** How a request continues its last message. */
export interface Continuation {
  /** The text continued: the answer, or the thinking. */
  part: ContinuedPart;
  /** Whether the message's text so far is sent as part of the answer. */
  echo: boolean;
}

/**
 * Reads an OpenAI-style chat request's continuation: llama-server's `continue_final_message`
 * (`true`, `"content"` or `"reasoning_content"`) and `echo`, or, without them, a last message
 * from the assistant. As in llama-server, a message continued because it came last is echoed
 * unless `echo` is false, one continued on request is not unless `echo` is true.
 *
 * @param fields The request body.
 * @param messages Its messages.
 * @param prefill Whether a last assistant message is continued unasked (the server's setting).
 * @returns The continuation, or undefined when the model answers with a new turn.
 * @throws {HttpError} 400 for a bad value, a continuation with `add_generation_prompt: true`,
 *   `echo: true` with nothing continued, or a last message that cannot be continued.
 * @example
 * ```ts
 * chatContinuation(new Fields(body), messages, true); // { part: "content", echo: true }
 * ```
 */
export function chatContinuation(
  fields: Fields,
  messages: readonly TemplateMessage[],
  prefill: boolean,
): Continuation | undefined {
  const asked = askedPart(fields.raw("continue_final_message"));
  const echo = fields.boolean("echo");
  const last = messages.at(-1);
  if (asked === undefined && !(prefill && last?.role === "assistant")) {
    if (echo) {
      throw badRequest(
        '"echo": true needs a message to continue: end "messages" with the assistant\'s message',
        "echo",
      );
    }
    return undefined;
  }
  if (asked !== undefined && fields.boolean("add_generation_prompt") === true) {
    throw badRequest(
      '"continue_final_message" and "add_generation_prompt": true contradict each other: the ' +
        "first continues the last message, the second opens a new one",
      "continue_final_message",
    );
  }
  return {
    part: continuedPart(messages, asked === "auto" ? undefined : asked, "messages"),
    echo: echo ?? asked === undefined,
  };
}

/**
 * Checks that a conversation's last message can be continued and says which of its texts is:
 * the one asked, or the thinking when the message has thinking and no answer yet.
 *
 * @param messages The conversation.
 * @param asked The text to continue, when the request names it.
 * @param param The request field the messages came in (for the error).
 * @returns The text continued.
 * @throws {HttpError} 400 when the last message is not the assistant's, follows another
 *   assistant message, or holds tool calls.
 * @example
 * ```ts
 * continuedPart([{ role: "user", content: "Hi" }, { role: "assistant", content: "Su" }]); // "content"
 * ```
 */
export function continuedPart(
  messages: readonly TemplateMessage[],
  asked?: ContinuedPart,
  param = "messages",
): ContinuedPart {
  const last = messages.at(-1);
  if (last?.role !== "assistant") {
    throw badRequest(
      "Only a last message from the assistant can be continued; this conversation ends with " +
        (last ? `a "${last.role}" message` : "no message"),
      param,
    );
  }
  if (messages.at(-2)?.role === "assistant") {
    throw badRequest(
      "The conversation ends with two assistant messages; only the last one can be continued, " +
        "so join them into one",
      param,
    );
  }
  if ((last.tool_calls?.length ?? 0) > 0) {
    throw badRequest(
      "The last message, the assistant's, holds tool calls and cannot be continued: send the " +
        "tools' results after it",
      param,
    );
  }
  if (asked !== undefined) return asked;
  const thinking = (last.reasoning_content ?? "") !== "";
  const answer = typeof last.content === "string"
    ? last.content !== ""
    : (last.content?.length ?? 0) > 0;
  return thinking && !answer ? "reasoning" : "content";
}

/** `continue_final_message`'s meaning: auto, a part, or nothing (absent or false). */
function askedPart(value: unknown): ContinuedPart | "auto" | undefined {
  if (value === undefined || value === null || value === false) return undefined;
  if (value === true) return "auto";
  if (value === "content") return "content";
  if (value === "reasoning_content") return "reasoning";
  throw badRequest(
    '"continue_final_message" must be true, false, "content" or "reasoning_content"',
    "continue_final_message",
  );
}
