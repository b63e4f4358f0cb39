/**
 * Building blocks of the tool-call parsers. Each reads the text right after a call marker and
 * says whether it holds complete calls (and where they end), calls the text has not finished
 * yet (named ones are reported, with the arguments read so far), or no call at all. They never
 * throw on malformed or cut-off output.
 *
 * @module
 */

import { scanJson, scanObjectMembers, skipSpace } from "./json_scan.ts";
import type { CallScan, ParsedCall, ToolSpec } from "./tool_types.ts";

/** The outcome of expecting literal text. */
type Expect = { state: "complete"; end: number } | { state: "incomplete" } | { state: "invalid" };

/**
 * Expects literals in order, each after optional whitespace.
 *
 * @param text The text.
 * @param at Where to start.
 * @param literals The literals ("" entries are skipped).
 * @returns Where they end, or whether the text stops inside them or differs.
 */
export function expectLiterals(text: string, at: number, literals: readonly string[]): Expect {
  let i = at;
  for (const literal of literals) {
    if (literal === "") continue;
    i = skipSpace(text, i);
    if (text.startsWith(literal, i)) {
      i += literal.length;
      continue;
    }
    return literal.startsWith(text.slice(i)) ? { state: "incomplete" } : { state: "invalid" };
  }
  return { state: "complete", end: i };
}

/** Keys that name the function and hold its arguments in a JSON call object. */
export interface JsonCallKeys {
  name: readonly string[];
  arguments: readonly string[];
  /** Key of a model-written id. */
  id?: string;
}

/** `{"name": …, "arguments": …}` (Hermes, Qwen, Llama 3, Mistral Nemo, Granite). */
export const NAME_ARGUMENTS: JsonCallKeys = {
  name: ["name"],
  arguments: ["arguments", "parameters"],
  id: "id",
};

/**
 * Arguments text as the client gets it: a JSON object's text as written, or the content of a
 * JSON string that holds an object (some models quote their arguments).
 */
function argumentsText(raw: string): string {
  if (!raw.startsWith('"')) return raw;
  try {
    const inner = JSON.parse(raw);
    if (typeof inner === "string") return inner;
  } catch { /* not reached for complete values */ }
  return raw;
}

/**
 * One call written as a JSON object.
 *
 * @param text The text.
 * @param at Where the object starts (after optional whitespace).
 * @param keys Which keys hold the name and arguments.
 * @returns The call, an unfinished call, or invalid.
 */
export function jsonObjectCall(
  text: string,
  at: number,
  keys: JsonCallKeys = NAME_ARGUMENTS,
): { state: "complete"; call: ParsedCall; end: number } | {
  state: "incomplete";
  call?: ParsedCall;
} | { state: "invalid" } {
  const scan = scanObjectMembers(text, at);
  if (scan.state === "invalid") return { state: "invalid" };
  const nameKey = keys.name.find((k) => scan.members.has(k));
  const argsKey = keys.arguments.find((k) => scan.members.has(k));
  const nameSpan = nameKey === undefined ? undefined : scan.members.get(nameKey)!;
  let name: string | undefined;
  if (nameSpan?.end !== undefined) {
    const value = JSON.parse(text.slice(nameSpan.start, nameSpan.end));
    if (typeof value !== "string" || value === "") return { state: "invalid" };
    name = value;
  }
  const argsSpan = argsKey === undefined ? undefined : scan.members.get(argsKey)!;
  const idSpan = keys.id === undefined ? undefined : scan.members.get(keys.id);
  let id: string | undefined;
  if (idSpan?.end !== undefined) {
    const value = JSON.parse(text.slice(idSpan.start, idSpan.end));
    if (typeof value === "string" && value !== "") id = value;
  }
  if (scan.state === "incomplete") {
    if (name === undefined) return { state: "incomplete" };
    const args = argsSpan === undefined
      ? ""
      : argsSpan.end === undefined
      ? text.slice(argsSpan.start)
      : text.slice(argsSpan.start, argsSpan.end);
    // A quoted arguments string streams only once it is whole.
    const partialArgs = args.startsWith('"') ? "" : args;
    return {
      state: "incomplete",
      call: { ...(id ? { id } : {}), name, arguments: partialArgs, complete: false },
    };
  }
  if (name === undefined) return { state: "invalid" };
  const args = argsSpan === undefined ? "{}" : argumentsText(
    text.slice(argsSpan.start, argsSpan.end),
  );
  if (!isObjectText(args)) return { state: "invalid" };
  return {
    state: "complete",
    call: { ...(id ? { id } : {}), name, arguments: args, complete: true },
    end: scan.end!,
  };
}

function isObjectText(text: string): boolean {
  try {
    const value = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}

/**
 * A JSON array of call objects (Mistral Nemo, Granite, Command R7B, the generic format).
 *
 * @param text The text.
 * @param at Where the array starts (after optional whitespace).
 * @param keys Which keys hold the name and arguments.
 * @param after Literals that must follow the array (e.g. `<|END_ACTION|>`).
 * @returns The calls.
 */
export function jsonArrayCalls(
  text: string,
  at: number,
  keys: JsonCallKeys = NAME_ARGUMENTS,
  after: readonly string[] = [],
): CallScan {
  let i = skipSpace(text, at);
  if (i >= text.length) return { state: "incomplete", calls: [] };
  if (text[i] !== "[") return { state: "invalid" };
  const calls: ParsedCall[] = [];
  i = skipSpace(text, i + 1);
  if (text[i] === "]") return { state: "invalid" };
  while (true) {
    const one = jsonObjectCall(text, i, keys);
    if (one.state === "invalid") return one;
    if (one.state === "incomplete") {
      return { state: "incomplete", calls: one.call ? [...calls, one.call] : calls };
    }
    calls.push(one.call);
    i = skipSpace(text, one.end);
    if (i >= text.length) return { state: "incomplete", calls };
    if (text[i] === ",") {
      i = skipSpace(text, i + 1);
      continue;
    }
    if (text[i] !== "]") return { state: "invalid" };
    const tail = expectLiterals(text, i + 1, after);
    if (tail.state === "complete") return { state: "complete", calls, end: tail.end };
    return tail.state === "incomplete" ? { state: "incomplete", calls } : tail;
  }
}

/** How a call that writes the name, then a separator, then JSON arguments, is laid out. */
export interface NameArgsLayout {
  /** What ends the name (the separator before the arguments); group 1 may capture an id. */
  nameEnd: RegExp;
  /** Literals after the arguments (e.g. "```" and the call's end marker). */
  after: readonly string[];
  /** Turns the written name into the function name and an id (Kimi K2's `functions.f:0`). */
  name?: (written: string) => { name: string; id?: string } | undefined;
}

const NAME_PATTERN = /^[A-Za-z0-9_.:\-]{1,128}$/;

/** How long a name still being written may grow (after leading space) before it is not one. */
const MAX_NAME_SOFAR = 256;

/** The last search of {@link firstMatch}: text, pattern, where it started and what it found. */
let lastSearch:
  | { text: string; source: string; flags: string; from: number; found: number }
  | undefined;

/** Patterns compiled for {@link firstMatch}, by flags and source (formats build theirs per call). */
const COMPILED = new Map<string, RegExp>();

/** The pattern `source` with `flags`, compiled once. */
function compiled(source: string, flags: string): RegExp {
  const key = `${flags}/${source}`;
  let re = COMPILED.get(key);
  if (re === undefined) COMPILED.set(key, re = new RegExp(source, flags));
  return re;
}

/**
 * The first match of `pattern` at or after `from` in `text`, with its index in `text`. A parser
 * reads markers left to right, and a pattern absent from the rest of the text (a name end after
 * marker-like text that is no call) would be looked for to the end again from every marker: the
 * last search is remembered, so while `from` moves forward and stays at or before what it found,
 * the text is not searched again.
 *
 * @param pattern The pattern (its `g` and `y` flags are ignored).
 * @param text The text.
 * @param from Where to start.
 * @returns The match, or null.
 */
function firstMatch(pattern: RegExp, text: string, from: number): RegExpExecArray | null {
  const flags = pattern.flags.replace(/[gy]/g, "");
  const last = lastSearch;
  let found: number;
  if (
    last !== undefined && last.text === text && last.source === pattern.source &&
    last.flags === flags && last.from <= from && (last.found < 0 || last.found >= from)
  ) {
    found = last.found;
  } else {
    const search = compiled(pattern.source, flags + "g");
    search.lastIndex = from;
    found = search.exec(text)?.index ?? -1;
    lastSearch = { text, source: pattern.source, flags, from, found };
  }
  if (found < 0) return null;
  const sticky = compiled(pattern.source, flags + "y");
  sticky.lastIndex = found;
  return sticky.exec(text);
}

/**
 * One call written as name, separator, JSON arguments, end marker (DeepSeek, Mistral v11,
 * Functionary v3.1, Kimi K2).
 *
 * @param text The text.
 * @param at Where the name starts.
 * @param layout The separators.
 * @returns The call.
 */
export function nameArgsCall(text: string, at: number, layout: NameArgsLayout): CallScan {
  const m = firstMatch(layout.nameEnd, text, at);
  if (!m) {
    // Still writing the name: fine while it looks like one.
    const start = skipSpace(text, at);
    const sofar = text.slice(start, start + MAX_NAME_SOFAR + 1).trimEnd();
    const short = sofar.length <= MAX_NAME_SOFAR &&
      !/\S/.test(text.slice(start + MAX_NAME_SOFAR + 1));
    return short && !sofar.includes("\n\n")
      ? { state: "incomplete", calls: [] }
      : { state: "invalid" };
  }
  const written = text.slice(at, m.index).trim();
  const named = layout.name ? layout.name(written) : { name: written };
  if (!named || !NAME_PATTERN.test(named.name)) return { state: "invalid" };
  const id = named.id ?? m[1];
  const base = { ...(id ? { id } : {}), name: named.name };
  const argsAt = m.index + m[0].length;
  const args = scanJson(text, argsAt);
  if (args.state === "invalid") return { state: "invalid" };
  if (args.state === "incomplete") {
    const partial = text.slice(args.start);
    return {
      state: "incomplete",
      calls: [{ ...base, arguments: partial.startsWith("{") ? partial : "", complete: false }],
    };
  }
  const json = text.slice(args.start, args.end);
  if (!isObjectText(json)) return { state: "invalid" };
  const tail = expectLiterals(text, args.end, layout.after);
  if (tail.state === "invalid") return tail;
  const call = { ...base, arguments: json };
  if (tail.state === "incomplete") {
    return { state: "incomplete", calls: [{ ...call, complete: false }] };
  }
  return { state: "complete", calls: [{ ...call, complete: true }], end: tail.end };
}

/**
 * Several calls inside a section: `open` was just read; each call starts with `callStart`
 * and the section ends with `close`. When generation ends right after a complete call, the
 * missing `close` is forgiven.
 *
 * @param text The text.
 * @param at Where the section's content starts.
 * @param callStart What starts each call.
 * @param close What ends the section.
 * @param one Reads one call right after its `callStart`.
 * @param final Whether the text is the whole output.
 * @returns The calls.
 */
export function sectionCalls(
  text: string,
  at: number,
  callStart: string,
  close: string,
  one: (text: string, at: number) => CallScan,
  final: boolean,
): CallScan {
  const calls: ParsedCall[] = [];
  let i = at;
  while (true) {
    i = skipSpace(text, i);
    if (text.startsWith(callStart, i)) {
      const scan = one(text, i + callStart.length);
      if (scan.state === "invalid") return scan;
      if (scan.state === "incomplete") {
        return { state: "incomplete", calls: [...calls, ...scan.calls] };
      }
      calls.push(...scan.calls);
      i = scan.end;
      continue;
    }
    if (text.startsWith(close, i)) {
      return calls.length > 0 ? { state: "complete", calls, end: i + close.length } : {
        state: "invalid",
      };
    }
    if (i >= text.length && final && calls.length > 0) {
      return { state: "complete", calls, end: text.length };
    }
    const left = text.slice(i);
    if (callStart.startsWith(left) || close.startsWith(left)) {
      return { state: "incomplete", calls };
    }
    return { state: "invalid" };
  }
}

/** Whether a parameter's schema says its value is a string (so XML values stay text). */
function isStringParam(tool: ToolSpec | undefined, param: string): boolean {
  const props = tool?.parameters.properties as Record<string, Record<string, unknown>> | undefined;
  const schema = props?.[param];
  if (schema === undefined) return false;
  const type = schema.type;
  if (type === undefined) {
    return Array.isArray(schema.enum) && schema.enum.every((v) => typeof v === "string");
  }
  return type === "string" || (Array.isArray(type) && type.includes("string"));
}

/** A parameter value from XML-style calls: text for string parameters, else JSON if it parses. */
function xmlValue(tool: ToolSpec | undefined, param: string, raw: string): unknown {
  if (isStringParam(tool, param)) return raw;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** Tags of an XML-style call: `<function=NAME>` … or GLM's `NAME` + `<arg_key>`. */
export interface XmlLayout {
  /** What ends the function name. */
  nameEnd: string;
  /** Opens a parameter; the key follows. */
  keyOpen: string;
  /** Ends the key. */
  keyClose: string;
  /** Opens the value after the key, if anything does. */
  valueOpen?: string;
  /** Ends the value. */
  valueClose: string;
  /** Ends the call. */
  end: readonly string[];
  /** Strip one leading and trailing line break from values (Qwen3-Coder). */
  trimNewlines: boolean;
}

/**
 * One call with XML-style parameters (Qwen3-Coder `<function=f><parameter=p>v</parameter>`,
 * GLM 4.x `f<arg_key>p</arg_key><arg_value>v</arg_value>`). The arguments become a JSON object;
 * while streaming, each parameter is added once its value is closed.
 *
 * @param text The text.
 * @param at Where the name starts.
 * @param layout The tags.
 * @param tools The offered tools (parameter types decide text or JSON values).
 * @returns The call.
 */
export function xmlCall(
  text: string,
  at: number,
  layout: XmlLayout,
  tools: readonly ToolSpec[],
): CallScan {
  const nameEnd = text.indexOf(layout.nameEnd, at);
  if (nameEnd < 0) {
    const sofar = text.slice(at).trim();
    return NAME_PATTERN.test(sofar) || sofar === ""
      ? { state: "incomplete", calls: [] }
      : { state: "invalid" };
  }
  const name = text.slice(at, nameEnd).trim();
  if (!NAME_PATTERN.test(name)) return { state: "invalid" };
  const tool = tools.find((t) => t.name === name);
  const parts: string[] = [];
  const partial = (): CallScan => ({
    state: "incomplete",
    calls: [{ name, arguments: "{" + parts.join(", "), complete: false }],
  });
  let i = nameEnd + layout.nameEnd.length;
  while (true) {
    i = skipSpace(text, i);
    if (text.startsWith(layout.keyOpen, i)) {
      const keyAt = i + layout.keyOpen.length;
      const keyEnd = text.indexOf(layout.keyClose, keyAt);
      if (keyEnd < 0) return partial();
      const key = text.slice(keyAt, keyEnd).trim();
      let valueAt = keyEnd + layout.keyClose.length;
      if (layout.valueOpen) {
        const open = expectLiterals(text, valueAt, [layout.valueOpen]);
        if (open.state === "invalid") return open;
        if (open.state === "incomplete") return partial();
        valueAt = open.end;
      }
      const valueEnd = text.indexOf(layout.valueClose, valueAt);
      if (valueEnd < 0) return partial();
      let raw = text.slice(valueAt, valueEnd);
      if (layout.trimNewlines) raw = raw.replace(/^\n/, "").replace(/\n$/, "");
      parts.push(`${JSON.stringify(key)}: ${JSON.stringify(xmlValue(tool, key, raw))}`);
      i = valueEnd + layout.valueClose.length;
      continue;
    }
    const tail = expectLiterals(text, i, layout.end);
    if (tail.state === "complete") {
      return {
        state: "complete",
        calls: [{ name, arguments: "{" + parts.join(", ") + "}", complete: true }],
        end: tail.end,
      };
    }
    if (tail.state === "invalid") {
      return layout.keyOpen.startsWith(text.slice(i)) ? partial() : tail;
    }
    return partial();
  }
}
