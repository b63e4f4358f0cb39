/**
 * The Jinja interpreter: runs a parsed template against a context, statement by statement,
 * with llama.cpp's semantics (which chat templates are tested against): `set` in a loop stays
 * in the loop, macros see the caller's variables, `{{ none }}` and objects print nothing,
 * `+`/`~` treat a missing value next to a string as `""`, and a failure names its place in
 * the source.
 *
 * @module
 */

import {
  bindBuiltin,
  type BuiltinContext,
  checkMadeSize,
  GLOBALS,
  NotImplementedError,
  RaisedException,
  testIsIn,
} from "./builtins.ts";
import { lineColumn } from "./lexer.ts";
import type { Node, Program } from "./parser.ts";
import {
  asBool,
  asString,
  type CallArgs,
  equals,
  fromJson,
  hashKey,
  isHashable,
  JArray,
  JBool,
  JFloat,
  JFunc,
  JinjaRuntimeError,
  JInt,
  JKwarg,
  JNone,
  JObject,
  JString,
  JUndefined,
  type JValue,
  markOp,
  markUsed,
} from "./values.ts";

/** A failure while rendering, located in the template. */
export class JinjaRenderError extends Error {
  /** The underlying message (for `raise_exception`, `Jinja Exception: <the template's text>`). */
  readonly detail: string;
  /** Whether the template itself raised it. */
  readonly raised: boolean;

  /**
   * @param detail The underlying message.
   * @param where `line L, column C`.
   * @param raised Whether the template raised it.
   */
  constructor(detail: string, where: string, raised: boolean) {
    super(`${detail} (at ${where})`);
    this.name = "JinjaRenderError";
    this.detail = detail;
    this.raised = raised;
  }
}

/**
 * A hook every render of this thread calls at each step, unless its options give another:
 * a worker sets it to watch its stop flag (also during capability probes).
 */
export const stepHook: { onStep?: () => void } = {};

/** Thrown by a step hook to stop a render; it passes through every catch of the engine. */
export class StopRender extends Error {
  override name = "StopRender";
}

class BreakSignal {}
class ContinueSignal {}

/** Options of a render. */
export interface RenderOptions {
  /** Collect usage stats on values (capability probing). Default false. */
  collectStats?: boolean;
  /** The render's "now" (for `strftime_now`). Default: the current time. */
  now?: Date;
  /** Called at every statement and expression; may throw to stop the render. */
  onStep?: () => void;
}

/** Variables of one scope (copied into nested scopes, as llama.cpp does). */
export class Context implements BuiltinContext {
  readonly vars: Map<string, JValue>;
  readonly collectStats: boolean;
  readonly now: Date;
  readonly onStep: (() => void) | undefined;

  /**
   * @param vars Variables (copied).
   * @param options Stats, clock and step hook.
   */
  constructor(vars: Map<string, JValue> | undefined, options: RenderOptions) {
    this.vars = new Map(vars ?? BASE_VARS());
    this.collectStats = options.collectStats ?? false;
    this.now = options.now ?? new Date();
    this.onStep = options.onStep ?? stepHook.onStep;
  }

  /** A nested scope with a copy of these variables. */
  child(): Context {
    return new Context(this.vars, {
      collectStats: this.collectStats,
      now: this.now,
      ...(this.onStep ? { onStep: this.onStep } : {}),
    });
  }

  /** A variable, or undefined. */
  get(name: string): JValue {
    return this.vars.get(name) ?? new JUndefined(name);
  }

  /** Sets a variable in this scope. */
  set(name: string, value: JValue): void {
    this.vars.set(name, value);
  }

  /** Sets variables from JSON data. */
  setJson(data: Record<string, unknown>): void {
    for (const [k, v] of Object.entries(data)) this.vars.set(k, fromJson(v));
  }

  strftime(format: string): string {
    return strftime(format, this.now);
  }
}

function BASE_VARS(): Map<string, JValue> {
  return new Map<string, JValue>([
    ["true", new JBool(true)],
    ["True", new JBool(true)],
    ["false", new JBool(false)],
    ["False", new JBool(false)],
    ["none", new JNone()],
    ["None", new JNone()],
  ]);
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

/**
 * C `strftime` in the local time zone, for the conversions templates use.
 *
 * @param format The format (`%d %b %Y`…).
 * @param date The time.
 * @returns The formatted text.
 */
export function strftime(format: string, date: Date): string {
  const p2 = (n: number) => String(n).padStart(2, "0");
  const dayOfYear = Math.floor(
    (Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) -
      Date.UTC(date.getFullYear(), 0, 1)) /
      86_400_000,
  ) + 1;
  return format.replace(/%([a-zA-Z%])/g, (whole, c: string) => {
    switch (c) {
      case "Y":
        return String(date.getFullYear());
      case "y":
        return p2(date.getFullYear() % 100);
      case "m":
        return p2(date.getMonth() + 1);
      case "d":
        return p2(date.getDate());
      case "e":
        return String(date.getDate()).padStart(2, " ");
      case "b":
      case "h":
        return MONTHS[date.getMonth()]!.slice(0, 3);
      case "B":
        return MONTHS[date.getMonth()]!;
      case "a":
        return DAYS[date.getDay()]!.slice(0, 3);
      case "A":
        return DAYS[date.getDay()]!;
      case "H":
        return p2(date.getHours());
      case "I":
        return p2(date.getHours() % 12 === 0 ? 12 : date.getHours() % 12);
      case "M":
        return p2(date.getMinutes());
      case "S":
        return p2(date.getSeconds());
      case "p":
        return date.getHours() < 12 ? "AM" : "PM";
      case "j":
        return String(dayOfYear).padStart(3, "0");
      case "F":
        return `${date.getFullYear()}-${p2(date.getMonth() + 1)}-${p2(date.getDate())}`;
      case "T":
        return `${p2(date.getHours())}:${p2(date.getMinutes())}:${p2(date.getSeconds())}`;
      case "%":
        return "%";
      default:
        return whole;
    }
  });
}

/** Appends what a statement's result prints: strings, numbers, booleans, arrays of them. */
function gather(value: JValue, out: string[]): void {
  if (value instanceof JString) out.push(value.value);
  else if (value instanceof JInt || value instanceof JFloat || value instanceof JBool) {
    out.push(asString(value));
  } else if (value instanceof JArray) { for (const item of value.items) gather(item, out); }
}

class Interpreter {
  readonly #source: string;

  constructor(source: string) {
    this.#source = source;
  }

  block(nodes: readonly Node[], ctx: Context): JString {
    const out: string[] = [];
    for (const node of nodes) gather(this.exec(node, ctx), out);
    return new JString(out.join(""));
  }

  exec(node: Node, ctx: Context): JValue {
    ctx.onStep?.();
    try {
      return this.#exec(node, ctx);
    } catch (error) {
      if (
        error instanceof BreakSignal || error instanceof ContinueSignal ||
        error instanceof JinjaRenderError || error instanceof StopRender
      ) {
        throw error;
      }
      const detail = error instanceof Error ? error.message : String(error);
      throw new JinjaRenderError(
        detail,
        lineColumn(this.#source, node.pos),
        error instanceof RaisedException,
      );
    }
  }

  #exec(node: Node, ctx: Context): JValue {
    switch (node.kind) {
      case "text":
      case "string":
        return new JString(node.value);
      case "comment":
      case "noop":
      case "blank":
        return new JUndefined();
      case "int":
        return new JInt(node.value);
      case "float":
        return new JFloat(node.value);
      case "identifier": {
        const value = ctx.get(node.name);
        if (!(value instanceof JUndefined)) {
          if (ctx.collectStats) markUsed(value);
          return value;
        }
        const fn = GLOBALS[node.name];
        return fn && Object.hasOwn(GLOBALS, node.name)
          ? new JFunc(node.name, fn)
          : new JUndefined(node.name);
      }
      case "array":
        return new JArray(node.items.map((i) => this.exec(i, ctx)));
      case "tuple":
        return new JArray(node.items.map((i) => this.exec(i, ctx)), true);
      case "object": {
        const obj = new JObject();
        for (const [k, v] of node.pairs) {
          const key = this.exec(k, ctx);
          const value = this.exec(v, ctx);
          obj.set(key, value);
        }
        return obj;
      }
      case "binary":
        return this.#binary(node, ctx);
      case "unary": {
        const v = this.exec(node.operand, ctx);
        if (node.op === "not") return new JBool(!asBool(v));
        if (node.op === "-") {
          if (v instanceof JInt) return new JInt(-v.value);
          if (v instanceof JFloat) return new JFloat(-v.value);
          throw new JinjaRuntimeError("Unary - operator requires numeric operand");
        }
        if (node.op === "+") {
          if (v instanceof JInt || v instanceof JFloat) return v;
          throw new JinjaRuntimeError("Unary + operator requires numeric operand");
        }
        throw new JinjaRuntimeError(`Unknown unary operator '${node.op}'`);
      }
      case "filter":
        return this.#applyFilter(node.filter, this.exec(node.operand, ctx), ctx);
      case "filterblock":
        return this.#applyFilter(node.filter, this.block(node.body, ctx), ctx);
      case "test":
        return this.#test(node, ctx);
      case "select":
        return asBool(this.exec(node.test, ctx)) ? this.exec(node.value, ctx) : new JUndefined();
      case "ternary":
        return asBool(this.exec(node.test, ctx))
          ? this.exec(node.then, ctx)
          : this.exec(node.otherwise, ctx);
      case "member":
        return this.#member(node, ctx);
      case "slice":
        throw new JinjaRuntimeError("must be handled by MemberExpression");
      case "call": {
        const args = node.args.map((a) => this.exec(a, ctx));
        const callee = this.exec(node.callee, ctx);
        if (!(callee instanceof JFunc)) {
          throw new JinjaRuntimeError(`Callee is not a function: got ${callee.type}`);
        }
        return invoke(callee, args, ctx);
      }
      case "kwarg": {
        if (node.key.kind !== "identifier") {
          throw new JinjaRuntimeError("Keyword argument key must be identifiers");
        }
        return new JKwarg(node.key.name, this.exec(node.value, ctx));
      }
      case "spread":
        throw new JinjaRuntimeError("cannot exec SpreadExpression");
      case "if": {
        const branch = asBool(this.exec(node.test, ctx)) ? node.body : node.otherwise;
        return this.block(branch, ctx);
      }
      case "for":
        return this.#for(node, ctx);
      case "break":
        throw new BreakSignal();
      case "continue":
        throw new ContinueSignal();
      case "set":
        this.#set(node, ctx);
        return new JUndefined();
      case "macro":
        this.#macro(node, ctx);
        return new JUndefined();
      case "callblock":
        return this.#callBlock(node, ctx);
    }
  }

  #binary(node: Extract<Node, { kind: "binary" }>, ctx: Context): JValue {
    const left = this.exec(node.left, ctx);
    const op = node.op;
    if (op === "and") return asBool(left) ? this.exec(node.right, ctx) : left;
    if (op === "or") return asBool(left) ? left : this.exec(node.right, ctx);
    const right = this.exec(node.right, ctx);
    if (op === "==") return new JBool(equals(left, right));
    if (op === "!=") return new JBool(!equals(left, right));

    const concatNull = (): JValue | undefined => {
      const ln = left instanceof JNone || left instanceof JUndefined;
      const rn = right instanceof JNone || right instanceof JUndefined;
      if ((ln && right instanceof JString) || (rn && left instanceof JString)) {
        return new JString((ln ? "" : asString(left)) + (rn ? "" : asString(right)));
      }
      return undefined;
    };
    const member = () => asBool(testIsIn({ args: [left, right], ctx, name: "test_is_in" }));

    if (left instanceof JUndefined || right instanceof JUndefined) {
      if (right instanceof JUndefined && (op === "in" || op === "not in")) {
        return new JBool(op === "not in");
      }
      if (op === "+" || op === "~") {
        const res = concatNull();
        if (res) return res;
      }
      throw new JinjaRuntimeError(`Cannot perform operation ${op} on undefined values`);
    }
    if (left instanceof JNone || right instanceof JNone) {
      if (!(right instanceof JNone) && (op === "in" || op === "not in")) {
        const m = member();
        return new JBool(op === "in" ? m : !m);
      }
      if (op === "+" || op === "~") {
        const res = concatNull();
        if (res) return res;
      }
      throw new JinjaRuntimeError("Cannot perform operation on null values");
    }
    const num = (v: JValue): v is JInt | JFloat => v instanceof JInt || v instanceof JFloat;
    if (num(left) && num(right)) {
      const a = left.value;
      const b = right.value;
      const isFloat = left instanceof JFloat || right instanceof JFloat;
      const wrap = (x: number) => (isFloat ? new JFloat(x) : new JInt(Math.trunc(x)));
      switch (op) {
        case "+":
          return wrap(a + b);
        case "-":
          return wrap(a - b);
        case "*":
          return wrap(a * b);
        case "/":
          return new JFloat(a / b);
        case "%":
          return wrap(a % b);
        case "<":
          return new JBool(a < b);
        case ">":
          return new JBool(a > b);
        case ">=":
          return new JBool(a >= b);
        case "<=":
          return new JBool(a <= b);
      }
    }
    if (left instanceof JArray && right instanceof JArray) {
      if (op === "+") return new JArray([...left.items, ...right.items]);
    } else if (right instanceof JArray) {
      if (op === "in") return new JBool(member());
      if (op === "not in") return new JBool(!member());
    }
    if ((left instanceof JString || right instanceof JString) && (op === "~" || op === "+")) {
      return new JString(asString(left) + asString(right));
    }
    if (
      op === "*" &&
      ((left instanceof JString && right instanceof JInt) ||
        (left instanceof JInt && right instanceof JString))
    ) {
      const s = left instanceof JString ? left.value : (right as JString).value;
      const n = left instanceof JInt ? left.value : (right as JInt).value;
      checkMadeSize(s.length * n, "a repeated string");
      return new JString(n <= 0 ? "" : s.repeat(n));
    }
    if (left instanceof JString && right instanceof JString) {
      if (op === "in") return new JBool(member());
      if (op === "not in") return new JBool(!member());
    }
    if (right instanceof JObject) {
      if (op === "in") return new JBool(member());
      if (op === "not in") return new JBool(!member());
    }
    throw new JinjaRuntimeError(`Unknown operator "${op}" between ${left.type} and ${right.type}`);
  }

  #builtin(ctx: Context, name: string, input: JValue, undefinedIfMissing: boolean): JValue {
    if (ctx.collectStats) markOp(input, name);
    const fn = bindBuiltin(input, name);
    if (fn) return fn;
    if (undefinedIfMissing) return new JUndefined(name);
    throw new JinjaRuntimeError(`Unknown (built-in) filter '${name}' for type ${input.type}`);
  }

  #applyFilter(filter: Node, input: JValue, ctx: Context): JValue {
    const alias = (id: string) =>
      id === "count"
        ? "length"
        : id === "d"
        ? "default"
        : id === "e"
        ? "escape"
        : id === "trim"
        ? "strip"
        : id;
    if (filter.kind === "identifier") {
      const id = alias(filter.name);
      if (
        !(input instanceof JUndefined) && !(input instanceof JString) &&
        ["capitalize", "lower", "replace", "strip", "title", "upper", "wordcount"].includes(id)
      ) {
        input = new JString(asString(input));
      }
      return invoke(this.#builtin(ctx, id, input, false) as JFunc, [], ctx);
    }
    if (filter.kind === "call") {
      if (filter.callee.kind !== "identifier") {
        throw new JinjaRuntimeError("Filter callee must be an identifier");
      }
      const id = alias(filter.callee.name);
      const args = filter.args.map((a) => this.exec(a, ctx));
      return invoke(this.#builtin(ctx, id, input, false) as JFunc, args, ctx);
    }
    throw new JinjaRuntimeError("Invalid filter expression");
  }

  #test(node: Extract<Node, { kind: "test" }>, ctx: Context): JValue {
    const input = this.exec(node.operand, ctx);
    const args: JValue[] = [input];
    let id: string;
    if (node.test.kind === "identifier") id = node.test.name;
    else if (node.test.kind === "call" && node.test.callee.kind === "identifier") {
      id = node.test.callee.name;
      for (const a of node.test.args) args.push(this.exec(a, ctx));
    } else throw new JinjaRuntimeError("Invalid test expression");
    const name = `test_is_${id}`;
    const fn = Object.hasOwn(GLOBALS, name) ? GLOBALS[name] : undefined;
    if (fn === undefined) throw new JinjaRuntimeError(`Unknown test '${id}'`);
    if (ctx.collectStats) markOp(input, name);
    const result = fn({ args, ctx, name });
    return node.negate ? new JBool(!asBool(result)) : result;
  }

  #member(node: Extract<Node, { kind: "member" }>, ctx: Context): JValue {
    const object = this.exec(node.object, ctx);
    let property: JValue;
    if (node.computed) {
      if (node.property.kind === "slice") {
        const s = node.property;
        const size = object instanceof JArray
          ? object.items.length
          : object instanceof JString
          ? object.value.length
          : 0;
        const step = s.step ? this.exec(s.step, ctx) : new JInt(1);
        const stepInt = step instanceof JInt || step instanceof JFloat
          ? Math.trunc(step.value)
          : asInt(step);
        const start = s.start ? this.exec(s.start, ctx) : new JInt(stepInt < 0 ? size - 1 : 0);
        const stop = s.stop ? this.exec(s.stop, ctx) : new JInt(stepInt < 0 ? -1 : size);
        const fn = this.#builtin(ctx, "slice", object, false) as JFunc;
        return invoke(fn, [start, stop, step], ctx);
      }
      property = this.exec(node.property, ctx);
    } else if (node.property.kind === "int") {
      property = new JInt(node.property.value);
    } else {
      if (node.property.kind !== "identifier") {
        throw new JinjaRuntimeError("Static member property must be an identifier");
      }
      property = new JString(node.property.name);
      const fn = this.#builtin(ctx, node.property.name, object, true);
      if (!(fn instanceof JUndefined)) return fn;
    }

    let value: JValue = new JUndefined("object_property");
    if (property instanceof JUndefined) return value;
    if (!isHashable(property)) {
      throw new JinjaRuntimeError(`Type: ${property.type} is not allowed as object key`);
    }
    if (object instanceof JUndefined) return value;
    if (object instanceof JObject) {
      hashKey(property);
      value = object.get(property) ?? new JUndefined("object_property");
      if (value instanceof JUndefined) value = this.#builtin(ctx, asString(property), object, true);
    } else if (object instanceof JArray || object instanceof JString) {
      if (property instanceof JInt) {
        let i = property.value;
        if (object instanceof JArray) {
          if (i < 0) i += object.items.length;
          if (i >= 0 && i < object.items.length) value = object.items[i]!;
        } else if (i >= 0 && i < object.value.length) {
          value = new JString(object.value[i]!);
        }
      } else if (property instanceof JString) {
        value = this.#builtin(ctx, property.value, object, true);
      } else {
        throw new JinjaRuntimeError(
          `Cannot access property with non-string/non-number: got ${property.type}`,
        );
      }
    } else {
      if (!(property instanceof JString)) {
        throw new JinjaRuntimeError(`Cannot access property with non-string: got ${property.type}`);
      }
      value = this.#builtin(ctx, property.value, object, true);
    }
    if (ctx.collectStats) {
      markUsed(value);
      markUsed(object);
      markUsed(property);
      if (property instanceof JInt) markOp(object, "array_access");
      else if (property instanceof JString) markOp(object, "object_access");
    }
    return value;
  }

  #for(node: Extract<Node, { kind: "for" }>, ctx: Context): JValue {
    const scope = ctx.child();
    const select = node.iterable.kind === "select" ? node.iterable : undefined;
    let iterable = this.exec(select ? select.value : node.iterable, scope);
    if (ctx.collectStats) markOp(iterable, "array_access");
    if (iterable instanceof JUndefined) iterable = new JArray([]);
    if (!(iterable instanceof JArray) && !(iterable instanceof JObject)) {
      throw new JinjaRuntimeError(
        `Expected iterable or object type in for loop: got ${iterable.type}`,
      );
    }
    const isObject = iterable instanceof JObject;
    const items: JValue[] = iterable instanceof JObject
      ? [...iterable.entries.values()].map(([k, v]) => new JArray([k, v], true))
      : [...iterable.items];
    if (ctx.collectStats) markOp(iterable, isObject ? "object_access" : "array_access");

    const target = node.target;
    const bind = (scopeCtx: Context, item: JValue) => {
      if (target.kind === "identifier") {
        scopeCtx.set(target.name, isObject ? (item as JArray).items[0]! : item);
      } else if (target.kind === "tuple") {
        const values = (item as JArray).items;
        target.items.forEach((t, j) => {
          if (t.kind !== "identifier") {
            throw new JinjaRuntimeError(`Cannot unpack non-identifier type: ${t.kind}`);
          }
          scopeCtx.set(t.name, values[j]!);
        });
      }
    };
    const kept: JValue[] = [];
    for (const item of items) {
      const loopScope = scope.child();
      if (target.kind === "identifier") {
        // bound below
      } else if (target.kind === "tuple") {
        if (!(item instanceof JArray)) {
          throw new JinjaRuntimeError(`Cannot unpack non-iterable type: ${item.type}`);
        }
        if (target.items.length !== item.items.length) {
          throw new JinjaRuntimeError(
            `Too ${target.items.length > item.items.length ? "few" : "many"} items to unpack`,
          );
        }
      } else {
        throw new JinjaRuntimeError(`Invalid loop variable(s): ${target.kind}`);
      }
      if (select) {
        bind(loopScope, item);
        if (!asBool(this.exec(select.test, loopScope))) continue;
      }
      kept.push(item);
    }

    const out: string[] = [];
    let noIteration = true;
    for (let i = 0; i < kept.length; i++) {
      const current = isObject ? (kept[i] as JArray).items[0]! : kept[i]!;
      const loop = new JObject();
      loop.hasBuiltins = false;
      loop.set("index", new JInt(i + 1));
      loop.set("index0", new JInt(i));
      loop.set("revindex", new JInt(kept.length - i));
      loop.set("revindex0", new JInt(kept.length - i - 1));
      loop.set("first", new JBool(i === 0));
      loop.set("last", new JBool(i === kept.length - 1));
      loop.set("length", new JInt(kept.length));
      const prev = i > 0 ? kept[i - 1]! : new JUndefined("previtem");
      const next = i < kept.length - 1 ? kept[i + 1]! : new JUndefined("nextitem");
      loop.set("previtem", isObject && prev instanceof JArray ? prev.items[0]! : prev);
      loop.set("nextitem", isObject && next instanceof JArray ? next.items[0]! : next);
      scope.set("loop", loop);
      bind(scope, kept[i]!);
      void current;
      try {
        for (const stmt of node.body) gather(this.exec(stmt, scope), out);
      } catch (error) {
        if (error instanceof ContinueSignal) continue;
        if (error instanceof BreakSignal) break;
        throw error;
      }
      noIteration = false;
    }
    if (noIteration) { for (const stmt of node.otherwise) gather(this.exec(stmt, ctx), out); }
    return new JString(out.join(""));
  }

  #set(node: Extract<Node, { kind: "set" }>, ctx: Context): void {
    const value = node.value ? this.exec(node.value, ctx) : this.block(node.body, ctx);
    const target = node.target;
    if (target.kind === "identifier") {
      ctx.set(target.name, value);
    } else if (target.kind === "tuple") {
      if (!(value instanceof JArray)) {
        throw new JinjaRuntimeError(`Cannot unpack non-iterable type in set: ${value.type}`);
      }
      if (value.items.length !== target.items.length) {
        throw new JinjaRuntimeError(
          `Too ${target.items.length > value.items.length ? "few" : "many"} items to unpack in set`,
        );
      }
      target.items.forEach((t, i) => {
        if (t.kind !== "identifier") {
          throw new JinjaRuntimeError(`Cannot unpack to non-identifier in set: ${t.kind}`);
        }
        ctx.set(t.name, value.items[i]!);
      });
    } else if (target.kind === "member") {
      if (target.computed) throw new JinjaRuntimeError("Cannot assign to computed member");
      if (target.property.kind !== "identifier") {
        throw new JinjaRuntimeError("Cannot assign to member with non-identifier property");
      }
      const object = this.exec(target.object, ctx);
      if (!(object instanceof JObject)) {
        throw new JinjaRuntimeError("Cannot assign to member of non-object");
      }
      object.set(target.property.name, value);
    } else {
      throw new JinjaRuntimeError(`Invalid LHS inside assignment expression: ${target.kind}`);
    }
  }

  #bind(name: string, params: readonly Node[], call: CallArgs, scope: Context): void {
    const callCtx = call.ctx as Context;
    params.forEach((param, i) => {
      if (i < call.args.length) {
        const key = param.kind === "identifier"
          ? param.name
          : param.kind === "kwarg" && param.key.kind === "identifier"
          ? param.key.name
          : undefined;
        if (key === undefined) throw new JinjaRuntimeError(`Invalid parameter type in '${name}'`);
        scope.set(key, kwargOrPosition(call, key, i));
      } else if (param.kind === "kwarg" && param.key.kind === "identifier") {
        scope.set(param.key.name, this.exec(param.value, callCtx));
      } else {
        throw new JinjaRuntimeError(`Not enough arguments provided to '${name}'`);
      }
    });
  }

  #macro(node: Extract<Node, { kind: "macro" }>, ctx: Context): void {
    if (node.name.kind !== "identifier") {
      throw new JinjaRuntimeError("Macro name must be an identifier");
    }
    const name = node.name.name;
    ctx.set(
      name,
      new JFunc(name, (call) => {
        const scope = (call.ctx as Context).child();
        this.#bind(name, node.params, call, scope);
        return this.block(node.body, scope);
      }),
    );
  }

  #callBlock(node: Extract<Node, { kind: "callblock" }>, ctx: Context): JValue {
    const call = node.call as Extract<Node, { kind: "call" }>;
    const callee = this.exec(call.callee, ctx);
    if (!(callee instanceof JFunc)) {
      throw new JinjaRuntimeError(`Callee is not a function: got ${callee.type}`);
    }
    const callerScope = ctx.child();
    const caller = new JFunc("caller", (args) => {
      const scope = callerScope.child();
      this.#bind("caller", node.callerParams, args, scope);
      return this.block(node.body, scope);
    });
    const callCtx = ctx.child();
    callCtx.set("caller", caller);
    const args = call.args.map((a) => this.exec(a, ctx));
    return invoke(callee, args, callCtx);
  }
}

function asInt(v: JValue): number {
  if (v instanceof JBool) return v.value ? 1 : 0;
  throw new JinjaRuntimeError(`${v.type} is not an int value`);
}

function kwargOrPosition(call: CallArgs, key: string, i: number): JValue {
  for (const arg of call.args) if (arg instanceof JKwarg && arg.key === key) return arg.value;
  const arg = call.args[i];
  return arg !== undefined && !(arg instanceof JKwarg) ? arg : new JUndefined();
}

function invoke(fn: JFunc, args: JValue[], ctx: Context): JValue {
  const all = fn.self !== undefined ? [fn.self, ...args] : args;
  return fn.fn({ args: all, ctx, name: fn.name });
}

/**
 * Runs a template.
 *
 * @param program The parsed template.
 * @param ctx The global context.
 * @returns The rendered text.
 * @throws {JinjaRenderError} When the template raises an error or fails.
 * @example
 * ```ts
 * const ctx = new Context(undefined, {});
 * ctx.setJson({ name: "x" });
 * render(parseTemplate("Hi {{ name }}"), ctx); // "Hi x"
 * ```
 */
export function render(program: Program, ctx: Context): string {
  const interpreter = new Interpreter(program.source);
  const out: string[] = [];
  try {
    for (const node of program.body) gather(interpreter.exec(node, ctx), out);
  } catch (error) {
    if (error instanceof BreakSignal || error instanceof ContinueSignal) {
      throw new JinjaRenderError("break or continue outside of a loop", "top level", false);
    }
    throw error;
  }
  return out.join("");
}

export { NotImplementedError, RaisedException };
