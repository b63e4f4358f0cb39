/**
 * Finding JSON values inside model output that may stop anywhere: a scanner that tells a
 * complete value (its span) from one the text has not finished yet, and a walker over the
 * members of an object that reports where each member's value starts even while the object is
 * still being written. Tool-call parsers use both, for whole outputs and for streamed prefixes.
 *
 * @module
 */

/** The outcome of scanning for a JSON value. */
export type JsonScan =
  /** A complete, valid value spanning `[start, end)`. */
  | { state: "complete"; start: number; end: number }
  /** The text ends inside the value (or before it starts); `start` is where it begins. */
  | { state: "incomplete"; start: number }
  /** The text at `start` cannot be (the start of) a JSON value. */
  | { state: "invalid"; start: number };

const WS = /\s/;

/**
 * Skips whitespace.
 *
 * @param text The text.
 * @param at Where to start.
 * @returns The first index at or after `at` that is not whitespace (or the text's length).
 */
export function skipSpace(text: string, at: number): number {
  while (at < text.length && WS.test(text[at]!)) at++;
  return at;
}

/** End of a string whose opening quote is at `at`: the index after the closing quote, or -1. */
function stringEnd(text: string, at: number): number {
  for (let i = at + 1; i < text.length; i++) {
    const c = text[i];
    if (c === "\\") i++;
    else if (c === '"') return i + 1;
    else if (c === "\n") return -2; // raw line breaks never occur inside a JSON string
  }
  return -1;
}

/**
 * Scans one JSON value that starts at `at` (after optional whitespace).
 *
 * @param text The text.
 * @param at Where to start.
 * @returns Its span when complete and valid, or whether it is unfinished or invalid.
 * @example
 * ```ts
 * scanJson('x {"a": [1, 2]} y', 1); // { state: "complete", start: 2, end: 15 }
 * scanJson('{"a": [1, ', 0).state; // "incomplete"
 * ```
 */
export function scanJson(text: string, at: number): JsonScan {
  const start = skipSpace(text, at);
  if (start >= text.length) return { state: "incomplete", start };
  const first = text[start]!;
  let end: number;
  if (first === "{" || first === "[") {
    const stack: string[] = [];
    end = -1;
    for (let i = start; i < text.length; i++) {
      const c = text[i]!;
      if (c === '"') {
        const close = stringEnd(text, i);
        if (close === -2) return { state: "invalid", start };
        if (close === -1) return { state: "incomplete", start };
        i = close - 1;
      } else if (c === "{" || c === "[") {
        stack.push(c === "{" ? "}" : "]");
      } else if (c === "}" || c === "]") {
        if (stack.pop() !== c) return { state: "invalid", start };
        if (stack.length === 0) {
          end = i + 1;
          break;
        }
      } else if (!/[\s,:\-+.0-9a-zA-Z]/.test(c)) {
        return { state: "invalid", start };
      }
    }
    if (end === -1) return { state: "incomplete", start };
  } else if (first === '"') {
    end = stringEnd(text, start);
    if (end === -2) return { state: "invalid", start };
    if (end === -1) return { state: "incomplete", start };
  } else if (/[-0-9tfn]/.test(first)) {
    const m = /^[-+.0-9eEa-z]*/.exec(text.slice(start))!;
    end = start + m[0].length;
    if (end === text.length) {
      // A literal or number at the very end may go on; a prefix of a literal is unfinished.
      const word = m[0];
      if (["true", "false", "null"].some((w) => w.startsWith(word) && w !== word)) {
        return { state: "incomplete", start };
      }
      if (!/^(true|false|null)$/.test(word)) return { state: "incomplete", start };
    }
  } else {
    return { state: "invalid", start };
  }
  try {
    JSON.parse(text.slice(start, end));
  } catch {
    return { state: "invalid", start };
  }
  return { state: "complete", start, end };
}

/** One member of an object being scanned. */
export interface MemberSpan {
  /** Where the value starts. */
  start: number;
  /** Where it ends; undefined while the text ends inside it. */
  end?: number;
}

/** The outcome of {@link scanObjectMembers}. */
export interface ObjectScan {
  state: "complete" | "incomplete" | "invalid";
  /** Members found so far, by key, in order. */
  members: Map<string, MemberSpan>;
  /** Index after the closing brace, when complete. */
  end?: number;
}

/**
 * Walks the members of a JSON object that starts at `at` (after optional whitespace), tolerating
 * text that stops anywhere: each key found so far maps to where its value starts and, once it
 * is complete, ends.
 *
 * @param text The text.
 * @param at Where to start.
 * @returns The members and whether the object is complete, unfinished or invalid.
 * @example
 * ```ts
 * const scan = scanObjectMembers('{"name": "f", "arguments": {"a": 1', 0);
 * scan.state; // "incomplete"
 * scan.members.get("arguments"); // { start: 27 }
 * ```
 */
export function scanObjectMembers(text: string, at: number): ObjectScan {
  const members = new Map<string, MemberSpan>();
  let i = skipSpace(text, at);
  if (i >= text.length) return { state: "incomplete", members };
  if (text[i] !== "{") return { state: "invalid", members };
  i = skipSpace(text, i + 1);
  if (i >= text.length) return { state: "incomplete", members };
  if (text[i] === "}") return { state: "complete", members, end: i + 1 };
  while (true) {
    if (i >= text.length) return { state: "incomplete", members };
    if (text[i] !== '"') return { state: "invalid", members };
    const keyEnd = stringEnd(text, i);
    if (keyEnd === -2) return { state: "invalid", members };
    if (keyEnd === -1) return { state: "incomplete", members };
    let key: string;
    try {
      key = JSON.parse(text.slice(i, keyEnd));
    } catch {
      return { state: "invalid", members };
    }
    i = skipSpace(text, keyEnd);
    if (i >= text.length) return { state: "incomplete", members };
    if (text[i] !== ":") return { state: "invalid", members };
    const value = scanJson(text, i + 1);
    if (value.state === "invalid") return { state: "invalid", members };
    if (value.state === "incomplete") {
      if (value.start < text.length) members.set(key, { start: value.start });
      return { state: "incomplete", members };
    }
    members.set(key, { start: value.start, end: value.end });
    i = skipSpace(text, value.end);
    if (i >= text.length) return { state: "incomplete", members };
    if (text[i] === "}") return { state: "complete", members, end: i + 1 };
    if (text[i] !== ",") return { state: "invalid", members };
    i = skipSpace(text, i + 1);
  }
}

/**
 * The longest end of `text` that is a proper beginning of one of the markers: text that must
 * be held back while streaming because it may turn into a marker.
 *
 * @param text The text so far.
 * @param markers Strings that would start something other than content.
 * @returns How many characters at the end to hold back.
 * @example
 * ```ts
 * heldBack("Let me check <tool_", ["<tool_call>"]); // 6
 * ```
 */
export function heldBack(text: string, markers: readonly string[]): number {
  let most = 0;
  for (const marker of markers) {
    for (let n = Math.min(marker.length - 1, text.length); n > most; n--) {
      if (text.endsWith(marker.slice(0, n))) {
        most = n;
        break;
      }
    }
  }
  return most;
}
