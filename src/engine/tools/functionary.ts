/**
 * Functionary v3.2's output: messages that each start with `>>>RECIPIENT\n` (the prompt ends
 * with the first `>>>`). `all` is text for the user; any other recipient is a call to that
 * function with JSON arguments.
 *
 * @module
 */

import { heldBack, scanJson, skipSpace } from "./json_scan.ts";
import type { ParsedCall, ParsedOutput } from "./tool_types.ts";

const SEP = ">>>";

/**
 * Reads Functionary v3.2 output.
 *
 * @param text The output after the prompt's `>>>` (or a streamed prefix).
 * @param final Whether the text is whole.
 * @param calling Whether messages to functions are calls (else they are dropped).
 * @returns Content and calls.
 * @example
 * ```ts
 * parseFunctionaryV32('all\nChecking.>>>get_weather\n{"city": "Oslo"}', true, true);
 * ```
 */
export function parseFunctionaryV32(text: string, final: boolean, calling: boolean): ParsedOutput {
  let content = "";
  const calls: ParsedCall[] = [];
  let i = text.startsWith(SEP) ? SEP.length : 0;
  while (i < text.length) {
    const newline = text.indexOf("\n", i);
    if (newline < 0) {
      if (!final && /^[A-Za-z0-9_.\-]*$/.test(text.slice(i))) break; // the recipient is arriving
      content += text.slice(i);
      break;
    }
    const recipient = text.slice(i, newline).trim();
    const bodyAt = newline + 1;
    if (recipient === "all") {
      const next = text.indexOf(SEP, bodyAt);
      let body = next < 0 ? text.slice(bodyAt) : text.slice(bodyAt, next);
      if (next < 0 && !final) body = body.slice(0, body.length - heldBack(body, [SEP]));
      content += body;
      if (next < 0) break;
      i = next + SEP.length;
      continue;
    }
    if (!/^[A-Za-z0-9_.\-]{1,128}$/.test(recipient)) {
      content += text.slice(i);
      break;
    }
    const args = scanJson(text, bodyAt);
    if (args.state === "invalid") {
      content += text.slice(i);
      break;
    }
    if (args.state === "incomplete") {
      const partial = text.slice(args.start);
      if (calling && !final) {
        calls.push({
          name: recipient,
          arguments: partial.startsWith("{") ? partial : "",
          complete: false,
        });
      }
      break;
    }
    const json = text.slice(args.start, args.end);
    if (calling && json.startsWith("{")) {
      calls.push({ name: recipient, arguments: json, complete: true });
    }
    const after = skipSpace(text, args.end);
    if (!text.startsWith(SEP, after)) break;
    i = after + SEP.length;
  }
  return { content, reasoning: "", calls };
}
