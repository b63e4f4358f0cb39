/**
 * Built-in functions, tests, filters and methods, with the behaviour llama.cpp's template
 * engine gives them (including what it does with undefined and none inputs, which Python's
 * Jinja2 would refuse). A filter `x | f(a)` and a method `x.f(a)` are the same function,
 * called with `x` first.
 *
 * @module
 */

import { isSpace } from "./lexer.ts";
import {
  asBool,
  asString,
  type CallArgs,
  compare,
  type CompareOp,
  equals,
  isHashable,
  JArray,
  JBool,
  JFloat,
  JFunc,
  type JFunction,
  JinjaRuntimeError,
  JInt,
  JKwarg,
  JNone,
  JObject,
  jsonEnsureAscii,
  JString,
  JUndefined,
  type JValue,
  markUsed,
  toJson,
} from "./values.ts";

/**
 * Most items or characters one step of a template may make (a `range()`, a repeated string): a
 * hostile template's `range(999999999)` had taken gigabytes in one step, before any stop flag
 * could be looked at. Real chat templates make a few thousand.
 */
export const MAX_MADE_SIZE = 1 << 20;

/**
 * Refuses a step that would make more than {@link MAX_MADE_SIZE} items or characters.
 *
 * @param size What the step would make.
 * @param what The step, for the message.
 * @throws {RaisedException} when it is too many.
 */
export function checkMadeSize(size: number, what: string): void {
  if (size > MAX_MADE_SIZE) {
    throw new RaisedException(`${what} would make ${size} items, more than a template may`);
  }
}

/** The template's own error (`raise_exception`): its message goes to the client. */
export class RaisedException extends JinjaRuntimeError {
  override name = "RaisedException";
}

/** Something llama.cpp's engine does not implement either. */
export class NotImplementedError extends JinjaRuntimeError {
  /** @param message What is missing. */
  constructor(message: string) {
    super(`NotImplemented: ${message}`);
    this.name = "NotImplementedError";
  }
}

/** What the runtime offers builtins: stats collection and the render's clock. */
export interface BuiltinContext {
  readonly collectStats: boolean;
  /** Formats the render's current time with a C `strftime` format. */
  strftime(format: string): string;
}

type Table = Readonly<Record<string, JFunction>>;

function ctxOf(call: CallArgs): BuiltinContext {
  return call.ctx as BuiltinContext;
}

function count(call: CallArgs, min: number, max = 999): void {
  const n = call.args.length;
  if (n < min || n > max) {
    throw new JinjaRuntimeError(
      `Function '${call.name}' expected between ${min} and ${max} arguments, got ${n}`,
    );
  }
}

type Kind = JValue["kind"];

/** Checks arguments count (required ones) and the kinds of the required ones. */
function ensure(call: CallArgs, kinds: readonly Kind[], required: readonly boolean[] = []): void {
  const req = kinds.map((_, i) => required[i] ?? true);
  count(call, req.filter(Boolean).length);
  kinds.forEach((kind, i) => {
    const arg = call.args[i];
    if (req[i] && arg !== undefined && arg.kind !== kind) {
      throw new JinjaRuntimeError(
        `Function '${call.name}' expected value of type ${kind}, got ${arg.type}`,
      );
    }
  });
}

/** Positional argument `i`, or `fallback`, or an error. */
export function pos(call: CallArgs, i: number, fallback?: JValue): JValue {
  const arg = call.args[i];
  if (arg !== undefined) return arg;
  if (fallback !== undefined) return fallback;
  throw new RaisedException(
    `Function '${call.name}' expected at least ${i + 1} arguments, got ${call.args.length}`,
  );
}

/** The keyword argument `key`, else positional `i` if that is not a keyword, else undefined. */
export function kwargOrPos(call: CallArgs, key: string, i: number): JValue {
  const kw = kwarg(call, key);
  if (kw !== undefined) return kw;
  const arg = call.args[i];
  return arg !== undefined && !(arg instanceof JKwarg) ? arg : new JUndefined();
}

function kwarg(call: CallArgs, key: string): JValue | undefined {
  for (const arg of call.args) if (arg instanceof JKwarg && arg.key === key) return arg.value;
  return undefined;
}

function str(v: JValue): string {
  return (v as JString).value;
}

function int(v: JValue): number {
  if (v instanceof JInt || v instanceof JFloat) return Math.trunc(v.value);
  if (v instanceof JBool) return v.value ? 1 : 0;
  throw new JinjaRuntimeError(`${v.type} is not an int value`);
}

function float(v: JValue): number {
  if (v instanceof JInt || v instanceof JFloat) return v.value;
  if (v instanceof JBool) return v.value ? 1 : 0;
  throw new JinjaRuntimeError(`${v.type} is not a float value`);
}

function pySlice<T>(items: readonly T[], start: number, stop: number, step: number): T[] {
  const len = items.length;
  const dir = step > 0 ? 1 : step < 0 ? -1 : 0;
  let a: number;
  let b: number;
  if (dir >= 0) {
    a = start < 0 ? Math.max(len + start, 0) : Math.min(start, len);
    b = stop < 0 ? Math.max(len + stop, 0) : Math.min(stop, len);
  } else {
    a = start < 0 ? Math.max(len + start, 0) : Math.min(start, len - 1);
    b = stop < -1 ? Math.max(len + stop, -1) : Math.min(stop, len - 1);
  }
  const out: T[] = [];
  if (dir === 0) return out;
  for (let i = a; dir * i < dir * b; i += step) if (i >= 0 && i < len) out.push(items[i]!);
  return out;
}

function sliceArgs(call: CallArgs): [number, number, number] {
  const a0 = pos(call, 1);
  const n = call.args.length;
  if (n === 1) return [0, int(a0), 1];
  if (n === 2) return [int(a0), int(pos(call, 2, new JUndefined())), 1];
  const step = int(pos(call, 3));
  if (step === 0) throw new RaisedException("slice step cannot be zero");
  return [int(a0), int(pos(call, 2)), step];
}

function cStrip(s: string, left: boolean, right: boolean, chars?: string): string {
  const match = (c: string) => (chars !== undefined ? chars.includes(c) : isSpace(c));
  let a = 0;
  let b = s.length;
  if (left) { while (a < b && match(s[a]!)) a++; }
  if (right) { while (b > a && match(s[b - 1]!)) b--; }
  return s.slice(a, b);
}

const asciiUpper = (s: string) => s.replace(/[a-z]/g, (c) => c.toUpperCase());
const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

/** `tojson(value, ensure_ascii, indent, separators, sort_keys)`. */
const tojson: JFunction = (call) => {
  count(call, 1, 5);
  const ascii = kwargOrPos(call, "ensure_ascii", 1);
  const indentArg = kwargOrPos(call, "indent", 2);
  const separators = kwargOrPos(call, "separators", 3);
  const sort = kwargOrPos(call, "sort_keys", 4);
  if (ctxOf(call).collectStats) markUsed(pos(call, 0), true);
  const indent = indentArg instanceof JInt ? indentArg.value : -1;
  if (asBool(sort)) throw new NotImplementedError("tojson sort_keys=true not implemented");
  const seps = separators instanceof JArray ? separators.items : [];
  const itemSep = seps[0] !== undefined ? asString(seps[0]) : indent < 0 ? ", " : ",";
  const keySep = seps[1] !== undefined ? asString(seps[1]) : ": ";
  const json = toJson(pos(call, 0), indent, itemSep, keySep);
  return new JString(asBool(ascii) ? jsonEnsureAscii(json) : json);
};

/** The generic `default(value, default, boolean)`. */
const defaultValue: JFunction = (call) => {
  count(call, 2, 3);
  const input = pos(call, 0);
  const noValue = asBool(kwargOrPos(call, "boolean", 2))
    ? !asBool(input)
    : input instanceof JUndefined || input instanceof JNone;
  return noValue ? pos(call, 1) : input;
};

function testOf(name: string): JFunction {
  const fn = GLOBALS[`test_is_${name}`];
  if (fn === undefined) throw new RaisedException(`selectattr: unknown test '${name}'`);
  return fn;
}

function callWith(parent: CallArgs, name: string, args: JValue[]): CallArgs {
  return { args, ctx: parent.ctx, name };
}

function selectattr(reject: boolean): JFunction {
  return (call) => {
    count(call, 2, 4);
    ensure(call, ["array", "string", "string", "string"], [true, true, false, false]);
    const items = (pos(call, 0) as JArray).items;
    const attribute = pos(call, 1);
    const out: JValue[] = [];
    const keep = (selected: boolean) => (reject ? !selected : selected);
    if (call.args.length === 2) {
      for (const item of items) {
        if (!(item instanceof JObject)) {
          throw new RaisedException("selectattr: item is not an object");
        }
        if (keep(asBool(item.get(attribute) ?? new JUndefined()))) out.push(item);
      }
    } else if (call.args.length === 3) {
      const test = testOf(str(attribute));
      const arg = pos(call, 2);
      for (const item of items) {
        if (keep(asBool(test(callWith(call, str(attribute), [item, arg]))))) out.push(item);
      }
    } else {
      const test = testOf(asString(pos(call, 2)));
      const arg = pos(call, 3);
      for (const item of items) {
        if (!(item instanceof JObject)) {
          throw new RaisedException("selectattr: item is not an object");
        }
        const value = item.get(attribute) ?? new JUndefined();
        if (keep(asBool(test(callWith(call, "test", [value, arg]))))) out.push(item);
      }
    }
    return new JArray(out);
  };
}

function typeTest(...kinds: Kind[]): JFunction {
  return (call) => {
    count(call, 1);
    return new JBool(kinds.includes(pos(call, 0).kind));
  };
}

function compareTest(op: CompareOp): JFunction {
  return (call) => {
    count(call, 2, 2);
    return new JBool(compare(pos(call, 0), pos(call, 1), op));
  };
}

/** `in`: membership in an array, a string or an object's keys. */
export const testIsIn: JFunction = (call) => {
  count(call, 2);
  const needle = pos(call, 0);
  const haystack = pos(call, 1);
  if (haystack instanceof JUndefined) return new JBool(false);
  if (haystack instanceof JArray) return new JBool(haystack.items.some((i) => equals(needle, i)));
  if (haystack instanceof JString) {
    if (!(needle instanceof JString)) {
      throw new RaisedException(
        `'in' test expects args[1] as string when args[0] is string, got args[1] as ${needle.type}`,
      );
    }
    return new JBool(haystack.value.includes(needle.value));
  }
  if (haystack instanceof JObject) {
    if (
      !isHashable(needle) || needle instanceof JArray && !needle.tuple || needle instanceof JObject
    ) {
      throw new JinjaRuntimeError(`Object key of unhashable type: ${needle.type}`);
    }
    return new JBool(haystack.has(needle));
  }
  throw new RaisedException(`'in' test expects iterable as first argument, got ${haystack.type}`);
};

/** Functions and tests available by name in every template. */
export const GLOBALS: Table = {
  raise_exception: (call) => {
    ensure(call, ["string"]);
    throw new RaisedException(`Jinja Exception: ${str(pos(call, 0))}`);
  },
  namespace: (call) => {
    const out = new JObject();
    for (const arg of call.args) {
      if (!(arg instanceof JKwarg)) {
        throw new RaisedException("namespace() arguments must be kwargs");
      }
      out.set(arg.key, arg.value);
    }
    return out;
  },
  strftime_now: (call) => {
    ensure(call, ["string"]);
    return new JString(ctxOf(call).strftime(str(pos(call, 0))));
  },
  range: (call) => {
    count(call, 1, 3);
    ensure(call, ["int", "int", "int"], [true, false, false]);
    const n = call.args.length;
    const a = int(pos(call, 0));
    const [start, stop, step] = n === 1
      ? [0, a, 1]
      : n === 2
      ? [a, int(pos(call, 1)), 1]
      : [a, int(pos(call, 1)), int(pos(call, 2))];
    if (step === 0) throw new RaisedException("range() step argument must not be zero");
    checkMadeSize(Math.ceil((stop - start) / step), "range()");
    const out: JValue[] = [];
    if (step > 0) { for (let i = start; i < stop; i += step) out.push(new JInt(i)); }
    else for (let i = start; i > stop; i += step) out.push(new JInt(i));
    return new JArray(out);
  },
  tojson,
  test_is_boolean: typeTest("bool"),
  test_is_callable: typeTest("func"),
  test_is_odd: (call) => {
    ensure(call, ["int"]);
    return new JBool(int(pos(call, 0)) % 2 !== 0);
  },
  test_is_even: (call) => {
    ensure(call, ["int"]);
    return new JBool(int(pos(call, 0)) % 2 === 0);
  },
  test_is_false: (call) => {
    count(call, 1);
    const v = pos(call, 0);
    return new JBool(v instanceof JBool && !v.value);
  },
  test_is_true: (call) => {
    count(call, 1);
    const v = pos(call, 0);
    return new JBool(v instanceof JBool && v.value);
  },
  test_is_divisibleby: (call) => {
    ensure(call, ["int", "int"]);
    return new JBool(int(pos(call, 0)) % int(pos(call, 1)) === 0);
  },
  test_is_string: typeTest("string"),
  test_is_integer: typeTest("int"),
  test_is_float: typeTest("float"),
  test_is_number: typeTest("int", "float"),
  test_is_iterable: typeTest("array", "string", "undefined"),
  test_is_sequence: typeTest("array", "string", "undefined"),
  test_is_mapping: typeTest("object"),
  test_is_lower: (call) => {
    ensure(call, ["string"]);
    return new JBool(!/[A-Z]/.test(str(pos(call, 0))));
  },
  test_is_upper: (call) => {
    ensure(call, ["string"]);
    return new JBool(!/[a-z]/.test(str(pos(call, 0))));
  },
  test_is_none: typeTest("none"),
  test_is_defined: (call) => {
    count(call, 1);
    return new JBool(!(pos(call, 0) instanceof JUndefined));
  },
  test_is_undefined: typeTest("undefined"),
  test_is_eq: compareTest("eq"),
  test_is_equalto: compareTest("eq"),
  test_is_ge: compareTest("ge"),
  test_is_gt: compareTest("gt"),
  test_is_greaterthan: compareTest("gt"),
  test_is_lt: compareTest("lt"),
  test_is_lessthan: compareTest("lt"),
  test_is_ne: compareTest("ne"),
  test_is_in: testIsIn,
  test_is_test: (call) => {
    ensure(call, ["string"]);
    return new JBool(Object.hasOwn(GLOBALS, `test_is_${str(pos(call, 0))}`));
  },
  test_is_sameas: () => {
    throw new NotImplementedError("sameas test not implemented");
  },
  test_is_escaped: () => {
    throw new NotImplementedError("escaped test not implemented");
  },
  test_is_filter: () => {
    throw new NotImplementedError("filter test not implemented");
  },
};

const emptyString: JFunction = () => new JString("");
const emptyArray: JFunction = () => new JArray([]);
const emptyInt: JFunction = () => new JInt(0);
const undef: JFunction = () => new JUndefined();

const NUMBER: Table = {
  default: defaultValue,
  abs: (call) => {
    const v = pos(call, 0);
    if (v instanceof JInt) return new JInt(Math.abs(v.value));
    return new JFloat(Math.abs(float(v)));
  },
  int: (call) => new JInt(int(pos(call, 0))),
  float: (call) => new JFloat(float(pos(call, 0))),
  safe: tojson,
  string: tojson,
  tojson,
};

function splitter(fromRight: boolean): JFunction {
  return (call) => {
    count(call, 1, 3);
    const input = pos(call, 0);
    if (!(input instanceof JString)) {
      throw new RaisedException(
        `${fromRight ? "rsplit" : "split"}() first argument must be a string`,
      );
    }
    let s = input.value;
    const delim = call.args.length > 1 ? asString(pos(call, 1)) : " ";
    if (delim === "") throw new RaisedException("empty separator");
    let max = call.args.length > 2 ? int(pos(call, 2)) : -1;
    const out: JValue[] = [];
    let at: number;
    if (!fromRight) {
      while ((at = s.indexOf(delim)) !== -1 && max !== 0) {
        out.push(new JString(s.slice(0, at)));
        s = s.slice(at + delim.length);
        max--;
      }
      out.push(new JString(s));
      return new JArray(out);
    }
    while ((at = s.lastIndexOf(delim)) !== -1 && max !== 0) {
      out.push(new JString(s.slice(at + delim.length)));
      s = s.slice(0, at);
      max--;
    }
    out.push(new JString(s));
    return new JArray(out.reverse());
  };
}

function stripper(left: boolean, right: boolean): JFunction {
  return (call) => {
    const input = pos(call, 0);
    if (!(input instanceof JString)) {
      if (left && right) throw new RaisedException("strip() first argument must be a string");
      ensure(call, ["string"]);
    }
    const chars = kwargOrPos(call, "chars", 1);
    const s = str(input);
    return new JString(
      chars instanceof JUndefined
        ? cStrip(s, left, right)
        : cStrip(s, left, right, asString(chars)),
    );
  };
}

const STRING: Table = {
  default: defaultValue,
  upper: (call) => new JString(asciiUpper(str(pos(call, 0)))),
  lower: (call) => new JString(asciiLower(str(pos(call, 0)))),
  strip: stripper(true, true),
  rstrip: stripper(false, true),
  lstrip: stripper(true, false),
  title: (call) => {
    ensure(call, ["string"]);
    let next = true;
    let out = "";
    for (const c of str(pos(call, 0))) {
      if (isSpace(c)) {
        next = true;
        out += c;
      } else if (next) {
        out += asciiUpper(c);
        next = false;
      } else out += asciiLower(c);
    }
    return new JString(out);
  },
  capitalize: (call) => {
    ensure(call, ["string"]);
    const s = str(pos(call, 0));
    return new JString(s === "" ? s : asciiUpper(s[0]!) + asciiLower(s.slice(1)));
  },
  length: (call) => {
    ensure(call, ["string"]);
    return new JInt(new TextEncoder().encode(str(pos(call, 0))).length);
  },
  startswith: (call) => {
    ensure(call, ["string", "string"]);
    return new JBool(str(pos(call, 0)).startsWith(str(pos(call, 1))));
  },
  endswith: (call) => {
    ensure(call, ["string", "string"]);
    return new JBool(str(pos(call, 0)).endsWith(str(pos(call, 1))));
  },
  split: splitter(false),
  rsplit: splitter(true),
  replace: (call) => {
    ensure(call, ["string", "string", "string", "int"], [true, true, true, false]);
    const s = str(pos(call, 0));
    const from = str(pos(call, 1));
    const to = str(pos(call, 2));
    const n = call.args.length > 3 ? int(pos(call, 3)) : -1;
    if (n > 0) throw new NotImplementedError("String replace with count argument not implemented");
    if (from === to) return new JString(s);
    if (from === "") return new JString(to + [...s].map((c) => c + to).join(""));
    return new JString(s.split(from).join(to));
  },
  format: (call) => {
    const input = pos(call, 0);
    if (!(input instanceof JString)) {
      throw new RaisedException("format() first argument must be a string");
    }
    let out = "";
    let arg = 1;
    const s = input.value;
    for (let i = 0; i < s.length; i++) {
      if (s[i] !== "{") {
        out += s[i];
        continue;
      }
      if (s[i + 1] !== "}") {
        throw new NotImplementedError("format() only supports simple '{}' placeholders");
      }
      i++;
      out += asString(pos(call, arg++));
    }
    return new JString(out);
  },
  int: (call) => {
    const input = pos(call, 0);
    const fallback = kwargOrPos(call, "default", 1);
    const baseArg = kwargOrPos(call, "base", 2);
    const base = baseArg instanceof JUndefined ? 10 : int(baseArg);
    if (base !== 0 && (base < 2 || base > 36)) {
      throw new RaisedException("int() base must be 0 or between 2 and 36");
    }
    if (!(input instanceof JString)) {
      throw new RaisedException("int() first argument must be a string");
    }
    const parsed = parseInt(input.value.trimStart(), base === 0 ? undefined : base);
    if (Number.isNaN(parsed)) return new JInt(fallback instanceof JUndefined ? 0 : int(fallback));
    return new JInt(parsed);
  },
  float: (call) => {
    ensure(call, ["string"]);
    const fallback = kwargOrPos(call, "default", 1);
    const parsed = parseFloat(str(pos(call, 0)));
    if (Number.isNaN(parsed)) {
      return new JFloat(fallback instanceof JUndefined ? 0 : float(fallback));
    }
    return new JFloat(parsed);
  },
  string: (call) => {
    ensure(call, ["string"]);
    return new JString(str(pos(call, 0)));
  },
  slice: (call) => {
    count(call, 1, 4);
    ensure(call, ["string", "int", "int", "int"], [true, true, false, false]);
    const [a, b, step] = sliceArgs(call);
    return new JString(pySlice([...str(pos(call, 0))], a, b, step).join(""));
  },
  safe: (call) => {
    ensure(call, ["string"]);
    return pos(call, 0);
  },
  tojson,
  indent: (call) => {
    count(call, 1, 4);
    const input = pos(call, 0);
    const width = kwargOrPos(call, "width", 1);
    const first = asBool(kwargOrPos(call, "first", 2));
    const blank = asBool(kwargOrPos(call, "blank", 3));
    if (!(input instanceof JString)) {
      throw new RaisedException("indent() first argument must be a string");
    }
    if (width instanceof JInt) checkMadeSize(width.value, "indent()");
    const pad = width instanceof JInt
      ? " ".repeat(Math.max(0, width.value))
      : width instanceof JString
      ? width.value
      : "    ";
    const s = input.value;
    const lines = s.split("\n");
    if (s.endsWith("\n")) lines.pop();
    let out = "";
    let started = false;
    for (const line of s === "" ? [] : lines) {
      if (started) out += "\n";
      if (!started ? first : line !== "" || blank) out += pad;
      out += line;
      started = true;
    }
    if (s.endsWith("\n")) {
      out += "\n";
      if (blank) out += pad;
    }
    return new JString(out);
  },
  join: () => {
    throw new NotImplementedError("String join builtin not implemented");
  },
};

const BOOL: Table = {
  default: defaultValue,
  int: (call) => new JInt(int(pos(call, 0))),
  float: (call) => new JFloat(float(pos(call, 0))),
  safe: (call) => new JString(asBool(pos(call, 0)) ? "True" : "False"),
  string: (call) => new JString(asBool(pos(call, 0)) ? "True" : "False"),
  tojson,
};

function withAttribute(item: JValue, attribute: JValue): JValue | undefined {
  if (attribute instanceof JInt) {
    return item instanceof JArray ? item.items.at(attribute.value) ?? undefined : undefined;
  }
  return item instanceof JObject ? item.get(attribute) : undefined;
}

function sameShape(input: JValue, items: JValue[]): JArray {
  return new JArray(items, input instanceof JArray && input.tuple);
}

const ARRAY: Table = {
  default: defaultValue,
  list: (call) => new JArray([...(pos(call, 0) as JArray).items]),
  first: (call) => (pos(call, 0) as JArray).items[0] ?? new JUndefined(),
  last: (call) => (pos(call, 0) as JArray).items.at(-1) ?? new JUndefined(),
  length: (call) => new JInt((pos(call, 0) as JArray).items.length),
  slice: (call) => {
    count(call, 1, 4);
    ensure(call, ["array", "int", "int", "int"], [true, true, false, false]);
    const [a, b, step] = sliceArgs(call);
    const input = pos(call, 0) as JArray;
    return sameShape(input, pySlice(input.items, a, b, step));
  },
  selectattr: selectattr(false),
  select: selectattr(false),
  rejectattr: selectattr(true),
  reject: selectattr(true),
  join: (call) => {
    count(call, 1, 3);
    const input = pos(call, 0);
    if (!(input instanceof JArray)) {
      throw new RaisedException("join() first argument must be an array");
    }
    const delim = kwargOrPos(call, "d", 1);
    const attribute = kwargOrPos(call, "attribute", 2);
    if (
      !(attribute instanceof JUndefined) && !(attribute instanceof JString) &&
      !(attribute instanceof JInt)
    ) {
      throw new RaisedException("join() attribute must be string or integer");
    }
    const sep = delim instanceof JUndefined ? "" : asString(delim);
    return new JString(
      input.items.map((item) => {
        let v = item;
        if (!(attribute instanceof JUndefined)) {
          if (attribute instanceof JInt && item instanceof JArray) {
            v = item.items.at(attribute.value) ?? fail(`Index ${attribute.value} out of bounds`);
          } else if (attribute instanceof JString && item instanceof JObject) {
            v = item.get(attribute) ??
              fail(`Key '${attribute.value}' not found in value of type Object`);
          }
        }
        if (!(v instanceof JString) && !(v instanceof JInt) && !(v instanceof JFloat)) {
          throw new RaisedException("join() can only join arrays of strings or numerics");
        }
        return asString(v);
      }).join(sep),
    );
  },
  string: (call) => {
    if (ctxOf(call).collectStats) markUsed(pos(call, 0), true);
    return new JString(asString(pos(call, 0)));
  },
  tojson,
  map: (call) => {
    count(call, 2);
    const input = pos(call, 0);
    if (!(input instanceof JArray)) {
      throw new RaisedException("map: first argument must be an array");
    }
    if (!(call.args[1] instanceof JKwarg)) {
      throw new NotImplementedError("map: filter-mapping not implemented");
    }
    const attribute = kwargOrPos(call, "attribute", 1);
    if (!(attribute instanceof JString) && !(attribute instanceof JInt)) {
      throw new RaisedException("map: attribute must be string or integer");
    }
    const fallback = kwarg(call, "default") ?? new JUndefined();
    return sameShape(input, input.items.map((item) => withAttribute(item, attribute) ?? fallback));
  },
  append: (call) => {
    count(call, 2);
    const input = pos(call, 0);
    if (!(input instanceof JArray)) {
      throw new RaisedException("append: first argument must be an array");
    }
    if (input.tuple) throw new JinjaRuntimeError("Attempting to modify immutable type");
    input.items.push(pos(call, 1));
    return input;
  },
  pop: (call) => {
    count(call, 1, 2);
    ensure(call, ["array", "int"], [true, false]);
    const input = pos(call, 0) as JArray;
    if (input.tuple) throw new JinjaRuntimeError("Attempting to modify immutable type");
    let i = call.args.length === 2 ? int(pos(call, 1)) : -1;
    if (i < 0) i += input.items.length;
    if (i < 0 || i >= input.items.length) {
      throw new JinjaRuntimeError(
        `Index ${i} out of bounds for array of size ${input.items.length}`,
      );
    }
    return input.items.splice(i, 1)[0]!;
  },
  sort: (call) => {
    count(call, 1, 4);
    const input = pos(call, 0);
    if (!(input instanceof JArray)) {
      throw new RaisedException("sort: first argument must be an array");
    }
    const reverse = asBool(kwargOrPos(call, "reverse", 1));
    const attribute = kwargOrPos(call, "attribute", 3);
    const key = (a: JValue, b: JValue): [JValue, JValue] => {
      if (attribute instanceof JUndefined) return [a, b];
      if (attribute instanceof JInt && a instanceof JArray && b instanceof JArray) {
        return [a.items.at(attribute.value)!, b.items.at(attribute.value)!];
      }
      if (!(attribute instanceof JInt) && a instanceof JObject && b instanceof JObject) {
        return [
          a.get(attribute) ?? fail("Key not found"),
          b.get(attribute) ?? fail("Key not found"),
        ];
      }
      throw new RaisedException(
        `sort: unsupported object attribute comparison between ${a.type} and ${b.type}`,
      );
    };
    const op: CompareOp = reverse ? "gt" : "lt";
    const items = [...input.items].sort((a, b) => {
      const [x, y] = key(a, b);
      if (compare(x, y, op)) return -1;
      const [y2, x2] = key(b, a);
      return compare(y2, x2, op) ? 1 : 0;
    });
    return sameShape(input, items);
  },
  reverse: (call) => {
    const input = pos(call, 0) as JArray;
    return sameShape(input, [...input.items].reverse());
  },
  min: (call) => extreme(call, "lt"),
  max: (call) => extreme(call, "gt"),
  unique: () => {
    throw new NotImplementedError("Array unique builtin not implemented");
  },
};

function extreme(call: CallArgs, op: CompareOp): JValue {
  count(call, 1, 4);
  ensure(call, ["array"]);
  if (!(kwargOrPos(call, "attribute", 2) instanceof JUndefined)) {
    throw new NotImplementedError(`${op === "lt" ? "min" : "max"}: attribute not implemented`);
  }
  const items = (pos(call, 0) as JArray).items;
  let best = items[0];
  if (best === undefined) return new JUndefined();
  for (const item of items.slice(1)) if (compare(item, best, op)) best = item;
  return best;
}

function fail(message: string): never {
  throw new JinjaRuntimeError(message);
}

const OBJECT: Table = {
  get: (call) => {
    count(call, 2, 3);
    const obj = pos(call, 0);
    if (!(obj instanceof JObject)) {
      throw new RaisedException("get: first argument must be an object");
    }
    const key = pos(call, 1);
    if (!(key instanceof JString)) {
      throw new RaisedException("get: second argument must be a string (key)");
    }
    return obj.get(key) ?? (call.args.length === 3 ? pos(call, 2) : new JNone());
  },
  keys: (call) => new JArray([...(pos(call, 0) as JObject).entries.values()].map(([k]) => k)),
  values: (call) => new JArray([...(pos(call, 0) as JObject).entries.values()].map(([, v]) => v)),
  items: (call) =>
    new JArray(
      [...(pos(call, 0) as JObject).entries.values()].map(([k, v]) => new JArray([k, v], true)),
    ),
  tojson,
  string: (call) => {
    if (ctxOf(call).collectStats) markUsed(pos(call, 0), true);
    return new JString(asString(pos(call, 0)));
  },
  length: (call) => new JInt((pos(call, 0) as JObject).entries.size),
  dictsort: (call) => {
    const input = pos(call, 0) as JObject;
    const by = kwargOrPos(call, "by", 2);
    const reverse = asBool(kwargOrPos(call, "reverse", 3));
    const byValue = by instanceof JString && by.value === "value";
    const op: CompareOp = reverse ? "gt" : "lt";
    const entries = [...input.entries.values()].sort((a, b) => {
      const [x, y] = byValue ? [a[1], b[1]] : [a[0], b[0]];
      if (compare(x, y, op)) return -1;
      return compare(y, x, op) ? 1 : 0;
    });
    const out = new JObject();
    for (const [k, v] of entries) out.set(k, v);
    return out;
  },
  join: () => {
    throw new NotImplementedError("object join not implemented");
  },
};

const NONE: Table = {
  default: defaultValue,
  tojson,
  string: () => new JString("None"),
  safe: () => new JString("None"),
  items: emptyArray,
  map: emptyArray,
  reject: emptyArray,
  rejectattr: emptyArray,
  select: emptyArray,
  selectattr: emptyArray,
  unique: emptyArray,
};

const UNDEFINED: Table = {
  default: defaultValue,
  capitalize: emptyString,
  first: undef,
  items: emptyArray,
  join: emptyString,
  last: undef,
  length: emptyInt,
  list: emptyArray,
  lower: emptyString,
  map: emptyArray,
  max: undef,
  min: undef,
  reject: emptyArray,
  rejectattr: emptyArray,
  replace: emptyString,
  reverse: emptyArray,
  safe: emptyString,
  select: emptyArray,
  selectattr: emptyArray,
  sort: emptyArray,
  string: emptyString,
  strip: emptyString,
  sum: emptyInt,
  title: emptyString,
  truncate: emptyString,
  unique: emptyArray,
  upper: emptyString,
  wordcount: emptyInt,
};

/**
 * The filters/methods a value has.
 *
 * @param v The value.
 * @returns Its table.
 * @throws {JinjaRuntimeError} For functions and keyword arguments, which have none.
 */
export function builtinsOf(v: JValue): Table {
  switch (v.kind) {
    case "int":
    case "float":
      return NUMBER;
    case "string":
      return STRING;
    case "bool":
      return BOOL;
    case "array":
      return ARRAY;
    case "object":
      return v.hasBuiltins ? OBJECT : {};
    case "none":
      return NONE;
    case "undefined":
      return UNDEFINED;
    default:
      throw new JinjaRuntimeError(`${v.type} has no builtins`);
  }
}

/** Binds a named builtin of `input` as a method, or returns undefined when it has none. */
export function bindBuiltin(input: JValue, name: string): JFunc | undefined {
  const table = builtinsOf(input);
  const fn = Object.hasOwn(table, name) ? table[name] : undefined;
  return fn === undefined ? undefined : new JFunc(name, fn, input);
}
