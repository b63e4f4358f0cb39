/**
 * GPT-OSS's "harmony" output: a sequence of messages, each a header
 * (`<|channel|>analysis`, `<|channel|>commentary to=functions.f <|constrain|>json`, …), then
 * `<|message|>`, the body, and `<|end|>`, `<|call|>` or `<|return|>`; later messages open with
 * `<|start|>assistant`. The `analysis` channel is reasoning, `final` (and commentary without a
 * recipient) is content, and a message to `functions.NAME` is a call whose body is the JSON
 * arguments. Markup is held back while it may still be arriving.
 *
 * @module
 */

import { heldBack, scanJson } from "./json_scan.ts";
import type { ParsedCall, ParsedOutput } from "./tool_types.ts";

const MESSAGE = "<|message|>";
const START = "<|start|>";
const ENDS = ["<|end|>", "<|call|>", "<|return|>"];
const HEADER_OPENERS = ["<|channel|>", START, " to=", "to="];

/**
 * Reads harmony output.
 *
 * @param text The output after the prompt's `<|start|>assistant` (or a streamed prefix).
 * @param final Whether the text is whole.
 * @param calling Whether messages to functions are calls (else they are dropped).
 * @returns Reasoning, content and calls.
 * @example
 * ```ts
 * parseHarmony("<|channel|>analysis<|message|>Hmm<|end|><|start|>assistant<|channel|>final<|message|>Hi", true, true);
 * // { content: "Hi", reasoning: "Hmm", calls: [] }
 * ```
 */
export function parseHarmony(text: string, final: boolean, calling: boolean): ParsedOutput {
  let content = "";
  let reasoning = "";
  const calls: ParsedCall[] = [];
  const nextEnd = endFinder(text);
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    if (!HEADER_OPENERS.some((o) => rest.startsWith(o))) {
      if (!final && HEADER_OPENERS.some((o) => o.startsWith(rest))) break;
      // Not harmony markup: plain text.
      content += final ? rest : rest.slice(0, rest.length - heldBack(rest, ENDS));
      break;
    }
    const headerEnd = text.indexOf(MESSAGE, i);
    if (headerEnd < 0) break; // the header is still arriving (a half header at the end is dropped)
    const header = text.slice(i, headerEnd);
    const channel = /<\|channel\|>\s*([A-Za-z_]+)/.exec(header)?.[1] ?? "";
    const recipient = /to=([^\s<]+)/.exec(header)?.[1];
    const bodyAt = headerEnd + MESSAGE.length;
    const end = nextEnd(bodyAt);
    const closed = end !== undefined;
    let body = closed ? text.slice(bodyAt, end.at) : text.slice(bodyAt);
    if (!closed && !final) body = body.slice(0, body.length - heldBack(body, ENDS));
    if (recipient?.startsWith("functions.")) {
      const name = recipient.slice("functions.".length);
      const args = body.trim();
      const json = scanJson(args, 0);
      const whole = json.state === "complete" && json.end === args.length && args.startsWith("{");
      if (calling && /^[A-Za-z0-9_.\-]{1,128}$/.test(name)) {
        if (whole && (closed || final)) calls.push({ name, arguments: args, complete: true });
        else if (!final) {
          calls.push({ name, arguments: args.startsWith("{") ? args : "", complete: false });
        }
      }
    } else if (channel === "analysis") {
      reasoning += body;
    } else {
      content += body;
    }
    if (!closed) break;
    i = end.at + end.marker.length;
    if (text.startsWith(START, i)) {
      // `<|start|>assistant` opens the next message; its header follows.
      const role = text.slice(i + START.length);
      const m = /^assistant/.exec(role);
      if (!m) {
        if (!final && "assistant".startsWith(role)) break;
        break;
      }
      i += START.length + m[0].length;
    }
  }
  return { content, reasoning, calls };
}

/**
 * A search for the first end marker at or after a position that only moves forward, in one pass
 * over the text: each marker's next place is remembered until the position passes it, so a
 * marker the text never holds is looked for once, not once per message.
 *
 * @param text The text.
 * @returns The search: the first end marker at or after `from`, or undefined.
 */
function endFinder(text: string): (from: number) => { at: number; marker: string } | undefined {
  /** Per marker: where it next occurs, -1 for nowhere, undefined before the first search. */
  const next: (number | undefined)[] = ENDS.map(() => undefined);
  return (from) => {
    let found: { at: number; marker: string } | undefined;
    ENDS.forEach((marker, k) => {
      let at = next[k];
      if (at === undefined || (at >= 0 && at < from)) next[k] = at = text.indexOf(marker, from);
      if (at >= 0 && (found === undefined || at < found.at)) found = { at, marker };
    });
    return found;
  };
}
