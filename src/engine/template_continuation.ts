/**
 * Rendering a conversation whose last message, an assistant's, the model is to continue
 * (prefill): the prompt ends inside that turn, right after its text, instead of closing the turn
 * and opening a new one.
 *
 * The turn is rendered by the template itself, so whatever it writes before an assistant's text
 * (its header, a thinking block) is there: the text goes in between two markers no message holds,
 * and the prompt is cut at the second one. A template that drops or rewrites the text, or the
 * thinking the message holds before it (the markers do not come back), gets the conversation
 * before it with the assistant's turn opened as for a new answer, and the text after that; where
 * the template thinks in `<think>` blocks, the message's thinking goes in one first, as
 * llama-server writes it (`<think>thinking</think>answer`, or `<think>thinking` to go on
 * thinking; an empty block where the opened turn starts one and the answer is continued).
 *
 * ```ts
 * const out = renderContinued(messages, "content", (msgs, open) => render(msgs, open), false);
 * out.prompt.slice(out.continuedFrom); // the assistant's text, as the template wrote it
 * ```
 *
 * @module
 */

import { plainText, type TemplateMessage } from "./template_messages.ts";
import { THINK_TAGS } from "./tools/parse.ts";

/**
 * Which text of the last message the model continues: its answer (`content`), or its thinking
 * (`reasoning`, its `reasoning_content`), inside a thinking block left open.
 */
export type ContinuedPart = "content" | "reasoning";

/** A continued conversation's prompt. */
export interface ContinuedPrompt {
  /** The prompt, ending with the continued text. */
  prompt: string;
  /** Where in `prompt` the continued text starts. */
  continuedFrom: number;
}

/** A conversation that cannot be continued: the template has nothing to continue the text in. */
export class ContinuationError extends Error {
  /** @param message What is wrong and what to send instead. */
  constructor(message: string) {
    super(message);
    this.name = "ContinuationError";
  }
}

/**
 * Renders `messages` so that the prompt ends inside the last message, after its text.
 *
 * @param messages The conversation; the last message is an assistant's.
 * @param part Which of its texts is continued.
 * @param render Renders messages to prompt text, with the assistant's turn opened at the end or
 *   not (the template or built-in format of the request).
 * @param thinks Whether the template writes `<think>` blocks (else there is no thinking to
 *   continue).
 * @returns The prompt and where the continued text starts in it.
 * @throws {ContinuationError} when the last message is not an assistant's, or thinking is to be
 *   continued where the template has none.
 * @example
 * ```ts
 * renderContinued([{ role: "user", content: "Hi" }, { role: "assistant", content: "Sure" }],
 *   "content", (msgs, open) => chatml(msgs, open), false).prompt;
 * // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nSure"
 * ```
 */
export function renderContinued(
  messages: readonly TemplateMessage[],
  part: ContinuedPart,
  render: (messages: readonly TemplateMessage[], addGenerationPrompt: boolean) => string,
  thinks: boolean,
): ContinuedPrompt {
  const last = messages.at(-1);
  if (last?.role !== "assistant") {
    throw new ContinuationError("Only a last message from the assistant can be continued");
  }
  if (part === "reasoning" && !thinks) {
    throw new ContinuationError(
      "The model's chat template has no thinking block, so there is no reasoning to continue",
    );
  }
  const text = part === "content" ? plainText(last.content) : last.reasoning_content ?? "";
  const thought = part === "content" ? last.reasoning_content ?? "" : "";
  // Where the template thinks, a continued answer follows a thinking block: the message's own,
  // or an empty one.
  const withThought = part === "content" && (thinks || thought !== "");
  const earlier = messages.slice(0, -1);
  const [start, end, thoughtStart, thoughtEnd] = markers(messages);
  const marked: TemplateMessage = part === "content"
    ? {
      ...last,
      content: start + text + end,
      ...(withThought ? { reasoning_content: thoughtStart + thought + thoughtEnd } : {}),
    }
    : { ...last, reasoning_content: start + text + end, content: "" };
  let whole = render([...earlier, marked], false);
  const thoughtKept = whole.includes(thoughtStart) && whole.includes(thoughtEnd);
  whole = whole.replace(thoughtStart, "").replace(thoughtEnd, "");
  const from = whole.lastIndexOf(start);
  const to = whole.lastIndexOf(end);
  if ((!withThought || thoughtKept) && from >= 0 && to > from && whole.indexOf(start) === from) {
    return {
      prompt: whole.slice(0, from) + whole.slice(from + start.length, to),
      continuedFrom: from,
    };
  }
  // The template dropped or rewrote the text, or the thinking before it: the turn is opened as
  // for a new answer, the thinking written in a block of its own, and the text after it.
  let before = render(earlier, true);
  if (thinks) {
    if (endsInThought(before)) before = before.slice(0, before.lastIndexOf(THINK_TAGS.open));
    before += THINK_TAGS.open;
    if (part === "content") before += thought + THINK_TAGS.close;
  }
  return { prompt: before + text, continuedFrom: before.length };
}

/** Whether text ends inside a thinking block: its last `<think>` after its last `</think>`. */
function endsInThought(text: string): boolean {
  const open = text.lastIndexOf(THINK_TAGS.open);
  return open >= 0 && open > text.lastIndexOf(THINK_TAGS.close);
}

/** Four strings that occur in no message (a random tag, drawn again in the unlikely clash). */
function markers(messages: readonly TemplateMessage[]): [string, string, string, string] {
  const all = JSON.stringify(messages);
  for (;;) {
    const tag = crypto.randomUUID().replaceAll("-", "");
    if (!all.includes(tag)) {
      const mark = (i: number) => `shimmy${tag}mark${i}`;
      return [mark(0), mark(1), mark(2), mark(3)];
    }
  }
}
