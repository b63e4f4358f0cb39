/**
 * Splitting model output into reasoning, content and tool calls. The same function reads the
 * whole output at the end and every streamed prefix: on a prefix, text that may still become a
 * call marker or a `</think>` is held back, a call is reported once its name is known (with
 * the arguments read so far), and a call that never finishes is left out of the final answer.
 * Malformed markup is never a call: it stays in the content.
 *
 * @module
 */

import { heldBack, skipSpace } from "./json_scan.ts";
import type { ScanContext, ToolFormat } from "./formats.ts";
import type { ParsedCall, ParsedOutput, ToolSpec } from "./tool_types.ts";

/** How reasoning is marked in the output. */
export interface ReasoningSyntax {
  /** Opens reasoning, e.g. `<think>`. */
  open: string;
  /** Closes it, e.g. `</think>`. */
  close: string;
  /** The prompt ended with `open`, so the output starts inside the reasoning. */
  startsOpen: boolean;
}

/** The `<think>` syntax of DeepSeek R1, Qwen 3, QwQ and most reasoning models. */
export const THINK_TAGS: Omit<ReasoningSyntax, "startsOpen"> = {
  open: "<think>",
  close: "</think>",
};

/** Options of {@link parseOutput}. */
export interface ParseOptions {
  /** The tool-call format; undefined when no tools are offered (or `tool_choice` is `none`). */
  format?: ToolFormat;
  /** Tools offered. */
  tools?: readonly ToolSpec[];
  /** Reasoning markup to extract; undefined keeps everything in the content. */
  reasoning?: ReasoningSyntax;
  /** Whether `text` is the whole output (else a streamed prefix). Default true. */
  final?: boolean;
}

/**
 * Splits reasoning from the rest.
 *
 * @param text The output (or a prefix).
 * @param syntax The markers.
 * @param final Whether the text is whole.
 * @returns The reasoning text and the rest, with partial markers held back on prefixes.
 */
export function splitReasoning(
  text: string,
  syntax: ReasoningSyntax,
  final: boolean,
): { reasoning: string; rest: string } {
  let at = 0;
  if (!syntax.startsOpen) {
    const start = skipSpace(text, 0);
    if (text.startsWith(syntax.open, start)) {
      at = start + syntax.open.length;
    } else if (!final && syntax.open.startsWith(text.slice(start))) {
      return { reasoning: "", rest: "" }; // may still become the opening tag
    } else {
      return { reasoning: "", rest: text };
    }
  }
  const close = text.indexOf(syntax.close, at);
  if (close < 0) {
    const body = text.slice(at);
    if (final) return { reasoning: trimStartNewlines(body).trimEnd(), rest: "" };
    // Trailing space may be the end of the reasoning, which is trimmed: hold it back too.
    const shown = body.slice(0, body.length - heldBack(body, [syntax.close]));
    return { reasoning: trimStartNewlines(shown).trimEnd(), rest: "" };
  }
  return {
    reasoning: trimStartNewlines(text.slice(at, close)).trimEnd(),
    rest: text.slice(close + syntax.close.length).trimStart(),
  };
}

function trimStartNewlines(text: string): string {
  return text.replace(/^\n+/, "");
}

/**
 * Splits model output into reasoning, content and tool calls.
 *
 * @param text The output, or a streamed prefix of it.
 * @param options Format, tools, reasoning markup, and whether the text is whole.
 * @returns The parts.
 * @example
 * ```ts
 * parseOutput('Sure.<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>', {
 *   format: TOOL_FORMATS.hermes,
 * });
 * // { content: "Sure.", reasoning: "", calls: [{ name: "f", arguments: '{"a": 1}', complete: true }] }
 * ```
 */
export function parseOutput(text: string, options: ParseOptions = {}): ParsedOutput {
  const final = options.final ?? true;
  if (options.format?.readWhole) {
    return options.format.readWhole(text, { tools: options.tools ?? [], final });
  }
  let reasoning = "";
  let rest = text;
  if (options.reasoning) ({ reasoning, rest } = splitReasoning(text, options.reasoning, final));
  const format = options.format;
  if (!format) return { content: rest, reasoning, calls: [] };
  const { content, calls } = parseCalls(rest, format, { tools: options.tools ?? [], final });
  return { content, reasoning, calls };
}

/**
 * Finds the calls in text (after any reasoning).
 *
 * @param text The text.
 * @param format The format.
 * @param ctx Tools and whether the text is whole.
 * @returns The content around the calls, and the calls.
 */
export function parseCalls(
  text: string,
  format: ToolFormat,
  ctx: ScanContext,
): { content: string; calls: ParsedCall[] } {
  let content = "";
  const calls: ParsedCall[] = [];
  let pos = 0;
  // Space between calls, or after the last, separates them: markup, not content.
  const kept = (between: string) => calls.length > 0 && !/\S/.test(between) ? "" : between;
  if (format.leadingJson) {
    const start = skipSpace(text, 0);
    if (start >= text.length) return { content: ctx.final ? text : "", calls };
    if (text[start] === "{") {
      const scan = format.scan(text, start, "", ctx);
      if (scan.state === "incomplete") {
        return { content: "", calls: ctx.final ? [] : scan.calls };
      }
      if (scan.state === "complete") {
        calls.push(...scan.calls);
        pos = scan.end;
      }
    }
  }
  while (true) {
    const found = nextMarker(text, pos, format.markers);
    if (!found) {
      const tail = text.slice(pos);
      // While streaming, trailing space is held too: before a call it is trimmed away.
      content += ctx.final
        ? kept(tail)
        : tail.slice(0, tail.length - heldBack(tail, format.markers)).trimEnd();
      break;
    }
    const before = text.slice(pos, found.index);
    const after = found.index + found.marker.length;
    const scan = format.scan(text, after, found.marker, ctx);
    if (scan.state === "invalid") {
      content += before + found.marker;
      pos = after;
      continue;
    }
    content += kept(before.trimEnd()); // the space before a call is the call's
    if (scan.state === "incomplete") {
      if (!ctx.final) calls.push(...scan.calls);
      break;
    }
    calls.push(...scan.calls);
    pos = scan.end;
  }
  return { content, calls };
}

function nextMarker(
  text: string,
  from: number,
  markers: readonly string[],
): { index: number; marker: string } | undefined {
  let best: { index: number; marker: string } | undefined;
  for (const marker of markers) {
    const index = text.indexOf(marker, from);
    if (index >= 0 && (!best || index < best.index)) best = { index, marker };
  }
  return best;
}
