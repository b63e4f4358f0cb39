/**
 * A Responses answer's output items, built from the chat deltas that {@link ChatOutputStream}
 * reads out of the model's text: reasoning becomes a `reasoning` item, text a `message` item
 * with one `output_text` part, each tool call a `function_call` item. Items open and close in
 * the order the model writes them, and each step is reported as a Responses stream event
 * (`response.output_item.added`, `response.output_text.delta`, …) through a callback, so the
 * streamed events and the final `output` always agree. Whitespace around text is held back
 * until more text follows: an answer whose text is only the blank before its calls gets no
 * `message` item, as in chat, where such content is trimmed away.
 *
 * @module
 */

import type { ChatDelta, ToolCallDelta } from "../engine/tools/output_stream.ts";
import type { Item } from "./responses_items.ts";

/** Reports one stream event: its `type` and fields (the sender adds `sequence_number`). */
export type EmitEvent = (type: string, fields: Record<string, unknown>) => void;

/** Item status in OpenAI's words. */
type Status = "in_progress" | "completed" | "incomplete";

/**
 * A new id: the prefix and 48 hex digits, as OpenAI's ids look.
 *
 * @param prefix `resp`, `msg`, `fc` or `rs`.
 * @returns The id, e.g. `msg_3f9a…`.
 */
export function itemId(prefix: string): string {
  const hex = [...crypto.getRandomValues(new Uint8Array(24))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${prefix}_${hex}`;
}

/** The item being written, and its text so far. */
interface Open {
  index: number;
  kind: "message" | "reasoning" | "function_call";
  text: string;
  /** For calls: the call's index in the chat deltas. */
  call?: number;
}

/**
 * Output items built from chat deltas, with their stream events.
 *
 * @example
 * ```ts
 * const output = new ResponseOutput((type, fields) => console.log(type, fields));
 * output.push({ content: "Hello" });
 * const items = output.finish({ completeCalls: 0, truncated: false });
 * ```
 */
export class ResponseOutput {
  /** The items, in output order. */
  readonly items: Item[] = [];
  readonly #emit: EmitEvent;
  #open: Open | undefined;
  /** Whitespace at the end of the text, sent once more text follows. */
  #heldSpace = "";
  /** The output index of each call, by its chat delta index. */
  readonly #calls: number[] = [];
  /** Reasoning items carry their text as a summary too (`reasoning.summary`). */
  readonly #summarize: boolean;

  /**
   * @param emit Receives each stream event; a no-op when not streaming.
   * @param options `summarize`: give reasoning items their text as one `summary_text` part too,
   *   with the summary's stream events (Shimmy does not summarize: the text is the model's).
   */
  constructor(emit: EmitEvent = () => {}, options: { summarize?: boolean } = {}) {
    this.#emit = emit;
    this.#summarize = options.summarize ?? false;
  }

  /**
   * Adds what a chat delta says.
   *
   * @param delta Content, reasoning or a tool-call fragment.
   */
  push(delta: ChatDelta): void {
    if (delta.reasoning_content) this.#reasoning(delta.reasoning_content);
    if (delta.content) this.#content(delta.content);
    for (const call of delta.tool_calls ?? []) this.#call(call);
  }

  /**
   * Ends the output: closes the last item, and adds an empty message when the model wrote
   * neither text nor calls.
   *
   * @param end `completeCalls`: how many calls the final read found whole (later ones were
   *   cut off and end `incomplete`); `truncated`: the output ran out of tokens.
   * @returns The items.
   */
  finish(end: { completeCalls: number; truncated: boolean }): Item[] {
    if (this.#calls.length === 0) {
      if (this.#heldSpace !== "") this.#text(this.#heldSpace);
      if (!this.items.some((item) => item.type === "message")) this.#text("");
    }
    this.#heldSpace = "";
    if (this.#open) {
      const cut = this.#open.kind === "function_call"
        ? (this.#open.call as number) >= end.completeCalls
        : end.truncated;
      this.#close(cut ? "incomplete" : "completed");
    }
    return this.items;
  }

  #reasoning(text: string): void {
    if (this.#open?.kind !== "reasoning") {
      this.#start("reasoning", { type: "reasoning", summary: [], content: [] }, "rs");
      this.#partAdded({ type: "reasoning_text", text: "" });
      if (this.#summarize) this.#summaryEvent("part.added", { part: summaryText("") });
    }
    this.#delta("response.reasoning_text.delta", text);
    if (this.#summarize) this.#summaryEvent("text.delta", { delta: text });
  }

  /** A `response.reasoning_summary_…` event of a reasoning item's one summary part. */
  #summaryEvent(
    kind: string,
    fields: Record<string, unknown>,
    index = (this.#open as Open).index,
  ): void {
    this.#emit(`response.reasoning_summary_${kind}`, {
      item_id: this.items[index]?.id,
      output_index: index,
      summary_index: 0,
      ...fields,
    });
  }

  #content(piece: string): void {
    const text = this.#heldSpace + piece;
    const kept = text.trimEnd();
    this.#heldSpace = text.slice(kept.length);
    if (kept !== "") this.#text(kept);
  }

  #text(text: string): void {
    if (this.#open?.kind !== "message") {
      this.#start("message", { type: "message", role: "assistant", content: [] }, "msg");
      this.#partAdded(outputText(""));
    }
    if (text !== "") this.#delta("response.output_text.delta", text, { logprobs: [] });
  }

  #call(delta: ToolCallDelta): void {
    if (delta.id !== undefined) {
      const item = { type: "function_call", call_id: delta.id, name: delta.function.name };
      this.#start("function_call", { ...item, arguments: "" }, "fc", delta.index);
      this.#calls[delta.index] = this.items.length - 1;
    }
    const args = delta.function.arguments;
    const index = this.#calls[delta.index];
    if (args === "" || index === undefined) return;
    const item = this.items[index] as Item;
    item.arguments = (item.arguments as string) + args;
    if (this.#open?.index === index) this.#open.text += args;
    this.#emit("response.function_call_arguments.delta", {
      item_id: item.id,
      output_index: index,
      delta: args,
    });
  }

  #start(kind: Open["kind"], fields: Item, prefix: string, call?: number): void {
    if (this.#open) this.#close("completed");
    const item: Item = { id: itemId(prefix), ...fields, status: "in_progress" };
    this.items.push(item);
    const index = this.items.length - 1;
    this.#open = { index, kind, text: "", ...(call !== undefined ? { call } : {}) };
    this.#emit("response.output_item.added", { output_index: index, item });
  }

  #partAdded(part: Record<string, unknown>): void {
    const { index } = this.#open as Open;
    const item_id = this.items[index]?.id;
    this.#emit("response.content_part.added", {
      item_id,
      output_index: index,
      content_index: 0,
      part,
    });
  }

  #delta(type: string, delta: string, extra: Record<string, unknown> = {}): void {
    const open = this.#open as Open;
    open.text += delta;
    this.#emit(type, {
      item_id: this.items[open.index]?.id,
      output_index: open.index,
      content_index: 0,
      delta,
      ...extra,
    });
  }

  #close(status: Status): void {
    const { index, kind, text } = this.#open as Open;
    this.#open = undefined;
    const item = this.items[index] as Item;
    const at = { item_id: item.id, output_index: index };
    if (kind === "function_call") {
      this.#emit("response.function_call_arguments.done", {
        ...at,
        name: item.name,
        arguments: item.arguments,
      });
    } else {
      const part = kind === "message" ? outputText(text) : { type: "reasoning_text", text };
      item.content = [part];
      const done = kind === "message"
        ? { type: "response.output_text.done", extra: { logprobs: [] } }
        : { type: "response.reasoning_text.done", extra: {} };
      this.#emit(done.type, { ...at, content_index: 0, text, ...done.extra });
      this.#emit("response.content_part.done", { ...at, content_index: 0, part });
      if (kind === "reasoning" && this.#summarize) {
        item.summary = [summaryText(text)];
        this.#summaryEvent("text.done", { text }, index);
        this.#summaryEvent("part.done", { part: summaryText(text) }, index);
      }
    }
    item.status = status;
    this.#emit("response.output_item.done", { output_index: index, item });
  }
}

function summaryText(text: string) {
  return { type: "summary_text", text };
}

function outputText(text: string) {
  return { type: "output_text", text, annotations: [], logprobs: [] };
}
