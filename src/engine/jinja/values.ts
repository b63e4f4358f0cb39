/**
 * Values of the Jinja runtime, with llama.cpp's semantics: integers and floats are distinct,
 * `undefined` and `none` are distinct, tuples are immutable arrays, objects keep insertion
 * order and take any hashable key. Each value also records whether the template used it and
 * how (`stats`), which is how llama.cpp probes a template's capabilities.
 *
 * @module
 */

/** Usage a template made of a value (collected only while probing capabilities). */
export interface ValueStats {
  used: boolean;
  ops: Set<string>;
}

/** Arguments of a function call (positional values and `kwarg`s, in order). */
export interface CallArgs {
  readonly args: JValue[];
  /** The calling context (macros run in it). */
  readonly ctx: unknown;
  /** Name of the called function, for messages. */
  name: string;
}

/** A callable: a built-in filter/function or a macro. */
export type JFunction = (call: CallArgs) => JValue;

/** Base of all values. */
abstract class Base {
  stats: ValueStats | undefined;

  /** Type name as llama.cpp reports it. */
  abstract get type(): string;
}

/** An undefined value (a missing variable or key). */
export class JUndefined extends Base {
  readonly kind = "undefined";
  constructor(readonly hint = "") {
    super();
  }
  get type(): string {
    return this.hint === "" ? "Undefined" : `Undefined (hint: '${this.hint}')`;
  }
}
/** `none`. */
export class JNone extends Base {
  readonly kind = "none";
  get type(): string {
    return "None";
  }
}
/** A boolean. */
export class JBool extends Base {
  readonly kind = "bool";
  constructor(readonly value: boolean) {
    super();
  }
  get type(): string {
    return "Boolean";
  }
}
/** An integer. */
export class JInt extends Base {
  readonly kind = "int";
  constructor(readonly value: number) {
    super();
  }
  get type(): string {
    return "Integer";
  }
}
/** A float. */
export class JFloat extends Base {
  readonly kind = "float";
  constructor(readonly value: number) {
    super();
  }
  get type(): string {
    return "Float";
  }
}
/** A string. */
export class JString extends Base {
  readonly kind = "string";
  constructor(readonly value: string) {
    super();
  }
  get type(): string {
    return "String";
  }
}
/** An array, or (`tuple: true`) an immutable tuple. */
export class JArray extends Base {
  readonly kind = "array";
  constructor(readonly items: JValue[], readonly tuple = false) {
    super();
  }
  get type(): string {
    return this.tuple ? "Tuple" : "Array";
  }
}
/** An ordered mapping. */
export class JObject extends Base {
  readonly kind = "object";
  /** Entries by key hash: [key, value], in insertion order. */
  readonly entries = new Map<string, [JValue, JValue]>();
  /** Context and loop objects have no filters/methods. */
  hasBuiltins = true;
  get type(): string {
    return "Object";
  }
  /** Sets a key (a string, or any hashable value). */
  set(key: string | JValue, value: JValue): void {
    const k = typeof key === "string" ? new JString(key) : key;
    const h = hashKey(k);
    const existing = this.entries.get(h);
    if (existing) existing[1] = value;
    else this.entries.set(h, [k, value]);
  }
  /** The value of a key, or `undefined` (JS) when absent. */
  get(key: string | JValue): JValue | undefined {
    const k = typeof key === "string" ? new JString(key) : key;
    return this.entries.get(hashKey(k))?.[1];
  }
  /** Whether the key is present. */
  has(key: JValue): boolean {
    return this.entries.has(hashKey(key));
  }
}
/** A function, optionally bound to its first argument (a method). */
export class JFunc extends Base {
  readonly kind = "func";
  constructor(readonly name: string, readonly fn: JFunction, readonly self?: JValue) {
    super();
  }
  get type(): string {
    return "Function";
  }
}
/** A keyword argument in a call (`name=value`). */
export class JKwarg extends Base {
  readonly kind = "kwarg";
  constructor(readonly key: string, readonly value: JValue) {
    super();
  }
  get type(): string {
    return "KwArg";
  }
}

/** Any runtime value. */
export type JValue =
  | JUndefined
  | JNone
  | JBool
  | JInt
  | JFloat
  | JString
  | JArray
  | JObject
  | JFunc
  | JKwarg;

/** A runtime error raised by the template or by a misuse in it. */
export class JinjaRuntimeError extends Error {
  override name = "JinjaRuntimeError";
}

/** Marks a value (and with `deep`, everything in it) as used. */
export function markUsed(value: JValue, deep = false): void {
  value.stats ??= { used: false, ops: new Set() };
  value.stats.used = true;
  if (!deep) return;
  if (value instanceof JArray) { for (const item of value.items) markUsed(item, true); }
  else if (value instanceof JObject) {
    for (const [k, v] of value.entries.values()) {
      markUsed(k, true);
      markUsed(v, true);
    }
  }
}

/** Records an operation on a value. */
export function markOp(value: JValue, op: string): void {
  value.stats ??= { used: false, ops: new Set() };
  value.stats.used = true;
  value.stats.ops.add(op);
}

/** Whether a value is a number (int, float or bool). */
export function isNumeric(v: JValue): v is JInt | JFloat | JBool {
  return v instanceof JInt || v instanceof JFloat || v instanceof JBool;
}

function isImmutable(v: JValue): boolean {
  return !(v instanceof JObject) && !(v instanceof JArray && !v.tuple);
}

/** Whether a value may be a mapping key. */
export function isHashable(v: JValue): boolean {
  if (v instanceof JUndefined || v instanceof JFunc) return false;
  if (v instanceof JArray) return v.items.every((i) => isImmutable(i) && isHashable(i));
  if (v instanceof JObject) {
    return [...v.entries.values()].every(([, i]) => isImmutable(i) && isHashable(i));
  }
  return true;
}

/** A string that identifies a hashable key (equal numbers hash alike). */
export function hashKey(v: JValue): string {
  if (!isImmutable(v) || !isHashable(v)) {
    throw new JinjaRuntimeError(`Object key of unhashable type: ${v.type}`);
  }
  if (v instanceof JString) return "s" + v.value;
  if (v instanceof JInt || v instanceof JFloat) return "n" + v.value;
  if (v instanceof JBool) return "n" + (v.value ? 1 : 0);
  if (v instanceof JNone) return "N";
  if (v instanceof JArray) return "t(" + v.items.map(hashKey).join(",") + ")";
  if (v instanceof JKwarg) return "k" + v.key + "=" + hashKey(v.value);
  return "?";
}

/** Truthiness. */
export function asBool(v: JValue): boolean {
  switch (v.kind) {
    case "undefined":
    case "none":
      return false;
    case "bool":
      return v.value;
    case "int":
    case "float":
      return v.value !== 0;
    case "string":
      return v.value.length > 0;
    case "array":
      return v.items.length > 0;
    case "object":
      return v.entries.size > 0;
    default:
      throw new JinjaRuntimeError(`${v.type} is not a bool value`);
  }
}

/** A float as C++ `std::to_string` writes it, trailing zeros trimmed (`1.5`, `2.0`). */
export function floatString(x: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  let out = x.toFixed(6);
  out = out.replace(/0+$/, "");
  if (out.endsWith(".")) out += "0";
  return out;
}

/** The string form of a value (`str(x)`, Python-like for lists and dicts). */
export function asString(v: JValue): string {
  switch (v.kind) {
    case "string":
      return v.value;
    case "int":
      return String(v.value);
    case "float":
      return floatString(v.value);
    case "bool":
      return v.value ? "True" : "False";
    case "none":
      return "None";
    case "array": {
      const inner = v.items.map(repr).join(", ");
      return v.tuple ? `(${inner}${v.items.length === 1 ? "," : ""})` : `[${inner}]`;
    }
    case "object":
      return "{" + [...v.entries.values()].map(([k, x]) => `${repr(k)}: ${repr(x)}`).join(", ") +
        "}";
    default:
      throw new JinjaRuntimeError(`${v.type} is not a string value`);
  }
}

/** Python-like repr of a value inside a list or dict. */
export function repr(v: JValue): string {
  if (v instanceof JString) return v.value.includes("'") ? toJson(v) : `'${v.value}'`;
  if (v instanceof JUndefined) return v.type;
  if (v instanceof JFunc) return `Function<${v.name}>(${v.self ? repr(v.self) : ""})`;
  if (v instanceof JKwarg) return "KwArg";
  return asString(v);
}

/** A float as C++ `ostream << double` writes it (6 significant digits, `%g`). */
function streamFloat(x: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const exp = Math.floor(Math.log10(Math.abs(x)));
  if (exp < -4 || exp >= 6) {
    const [mant, e] = x.toExponential(5).split("e");
    const m = mant!.includes(".") ? mant!.replace(/0+$/, "").replace(/\.$/, "") : mant!;
    const n = Number(e);
    return `${m}e${n < 0 ? "-" : "+"}${String(Math.abs(n)).padStart(2, "0")}`;
  }
  const s = x.toPrecision(6);
  return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
}

function jsonString(s: string): string {
  let out = '"';
  for (const c of s) {
    switch (c) {
      case '"':
        out += '\\"';
        break;
      case "\\":
        out += "\\\\";
        break;
      case "\b":
        out += "\\b";
        break;
      case "\f":
        out += "\\f";
        break;
      case "\n":
        out += "\\n";
        break;
      case "\r":
        out += "\\r";
        break;
      case "\t":
        out += "\\t";
        break;
      default:
        out += c.charCodeAt(0) < 0x20 ? "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0") : c;
    }
  }
  return out + '"';
}

/**
 * JSON text of a value as llama.cpp's `tojson` writes it: keys in insertion order, `", "` and
 * `": "` between items without `indent`, one item per line with it.
 *
 * @param v The value.
 * @param indent Spaces per level; negative for one line.
 * @param itemSep Between items.
 * @param keySep Between a key and its value.
 * @returns The JSON text.
 */
export function toJson(v: JValue, indent = -1, itemSep = ", ", keySep = ": "): string {
  const parts: string[] = [];
  const write = (val: JValue, level: number) => {
    const pad = (n: number) => (indent > 0 ? " ".repeat(n * indent) : "");
    const nl = indent >= 0 ? "\n" : "";
    if (val instanceof JNone || val instanceof JUndefined) parts.push("null");
    else if (val instanceof JBool) parts.push(val.value ? "true" : "false");
    else if (val instanceof JInt) parts.push(String(val.value));
    else if (val instanceof JFloat) parts.push(streamFloat(val.value));
    else if (val instanceof JString) parts.push(jsonString(val.value));
    else if (val instanceof JArray) {
      parts.push("[");
      if (val.items.length > 0) {
        parts.push(nl);
        val.items.forEach((item, i) => {
          parts.push(pad(level + 1));
          write(item, level + 1);
          if (i < val.items.length - 1) parts.push(itemSep);
          parts.push(nl);
        });
        parts.push(pad(level));
      }
      parts.push("]");
    } else if (val instanceof JObject) {
      parts.push("{");
      const entries = [...val.entries.values()];
      if (entries.length > 0) {
        parts.push(nl);
        entries.forEach(([k, x], i) => {
          parts.push(pad(level + 1));
          parts.push(jsonString(asString(k)));
          parts.push(keySep);
          write(x, level + 1);
          if (i < entries.length - 1) parts.push(itemSep);
          parts.push(nl);
        });
        parts.push(pad(level));
      }
      parts.push("}");
    } else parts.push("null");
  };
  write(v, 0);
  return parts.join("");
}

/** Escapes every non-ASCII character of JSON text as `\uXXXX` (lowercase hex). */
export function jsonEnsureAscii(json: string): string {
  let out = "";
  for (let i = 0; i < json.length; i++) {
    const code = json.charCodeAt(i);
    out += code < 0x80 ? json[i] : "\\u" + code.toString(16).padStart(4, "0");
  }
  return out;
}

/** Value equality (`==`), as llama.cpp compares. */
export function equals(a: JValue, b: JValue): boolean {
  if (isNumeric(a)) {
    if (!isNumeric(b)) return false;
    const ai = a instanceof JBool ? (a.value ? 1 : 0) : Math.trunc(a.value);
    const bi = b instanceof JBool ? (b.value ? 1 : 0) : Math.trunc(b.value);
    const af = a instanceof JBool ? ai : a.value;
    const bf = b instanceof JBool ? bi : b.value;
    return ai === bi && af === bf;
  }
  if (a instanceof JString) return b instanceof JString && a.value === b.value;
  if (a instanceof JNone) return b instanceof JNone;
  if (a instanceof JUndefined) return b instanceof JUndefined;
  if (a instanceof JArray) {
    return b instanceof JArray && a.tuple === b.tuple && isHashable(a) && isHashable(b) &&
      a.items.length === b.items.length && a.items.every((x, i) => equals(x, b.items[i]!));
  }
  if (a instanceof JObject) {
    if (!(b instanceof JObject) || !isHashable(a) || !isHashable(b)) return false;
    const x = [...a.entries.values()];
    const y = [...b.entries.values()];
    return x.length === y.length &&
      x.every(([k, v], i) => equals(k, y[i]![0]) && equals(v, y[i]![1]));
  }
  if (a instanceof JKwarg) return b instanceof JKwarg && a.key === b.key && a.value === b.value;
  return false;
}

/** Comparison operators of tests, `sort`, `min`, `max`. */
export type CompareOp = "eq" | "ge" | "gt" | "lt" | "ne";

/** Compares two values as llama.cpp's `value_compare` does (numbers, then strings, then bools). */
export function compare(a: JValue, b: JValue, op: CompareOp): boolean {
  const num = (v: JValue) => v instanceof JInt || v instanceof JFloat;
  const pick = <T>(x: T, y: T) => {
    switch (op) {
      case "eq":
        return x === y;
      case "ne":
        return x !== y;
      case "ge":
        return x >= y;
      case "gt":
        return x > y;
      case "lt":
        return x < y;
    }
  };
  if (num(a) && num(b)) return pick((a as JInt).value, (b as JInt).value);
  if (
    (b instanceof JString && num(a)) || (a instanceof JString && num(b)) ||
    (a instanceof JString && b instanceof JString)
  ) {
    return pick(utf8Order(asString(a)), utf8Order(asString(b)));
  }
  if (a instanceof JBool && b instanceof JBool) {
    if (op === "eq") return a.value === b.value;
    if (op === "ne") return a.value !== b.value;
    throw new JinjaRuntimeError("Unsupported comparison operator for bool type");
  }
  return false;
}

/** A key whose JS string order matches the byte order of its UTF-8 form. */
function utf8Order(s: string): string {
  return /[\ud800-\udfff]/.test(s)
    ? [...s].map((c) => String.fromCodePoint(c.codePointAt(0)!)).join("")
    : s;
}

/**
 * Converts JSON data to runtime values.
 *
 * @param data Parsed JSON (objects keep their key order).
 * @returns The value.
 */
export function fromJson(data: unknown): JValue {
  if (data === null) return new JNone();
  if (data === undefined) return new JUndefined();
  if (typeof data === "boolean") return new JBool(data);
  if (typeof data === "number") return Number.isInteger(data) ? new JInt(data) : new JFloat(data);
  if (typeof data === "string") return new JString(data);
  if (Array.isArray(data)) return new JArray(data.map(fromJson));
  if (data instanceof JsonFloat) return new JFloat(data.value);
  if (typeof data === "object") {
    const obj = new JObject();
    for (const [k, v] of Object.entries(data as Record<string, unknown>)) obj.set(k, fromJson(v));
    return obj;
  }
  throw new JinjaRuntimeError(`Unsupported JSON value: ${typeof data}`);
}

/** A JSON number written with a fraction or exponent (`1.0`), kept a float. */
export class JsonFloat {
  /** @param value The number. */
  constructor(readonly value: number) {}
}
