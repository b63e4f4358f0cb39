/**
 * JSON Schema → GBNF. The converter walks the schema once and writes a grammar whose every
 * output is a JSON text the schema accepts. Objects list their properties in the schema's
 * order (required ones always, optional ones maybe), with commas placed by a chain of rules;
 * arrays follow `prefixItems`/`items` within `minItems`/`maxItems`; `anyOf`/`oneOf` become
 * alternatives (`oneOf` branches should not overlap), `allOf` branches merge into one schema;
 * `$ref` targets become named rules, so recursive schemas work. Strings honour
 * `minLength`/`maxLength`, `pattern` or `format`; numbers their bounds. Whitespace between
 * tokens is at most one space, tab or newline plus 20 spaces or tabs, so a model cannot spin
 * in it. Where the schema leaves something open the grammar may be stricter, never looser:
 * an object with `properties` and no `additionalProperties` gets no extra properties, and
 * unbounded integers get at most 16 digits. A keyword the converter cannot honour raises a
 * {@link SchemaError} naming it; annotations (`title`, `description`, `default`…) are ignored.
 *
 * @module
 */

import { charSet, complement, gbnfLiteral, jsonCharSetExpr, jsonCharText } from "./charset.ts";
import { SchemaError } from "./errors.ts";
import { FORMATS } from "./formats.ts";
import {
  INTEGER_EXPR,
  integerRange,
  MAX_INT_DIGITS,
  NUMBER_EXPR,
  numberRange,
  type WholeBound,
} from "./numbers.ts";
import { literalTrie } from "./literal_trie.ts";
import { AUTOMATON_WORK, type LengthBounds, type WorkBudget } from "./dfa.ts";
import { patternMatcher } from "./pattern_match.ts";
import { patternToGbnf } from "./regex.ts";
import { RecentMap } from "../../util/recent_map.ts";
import { oneOf, repeat, RuleSet } from "./rules.ts";
import {
  ARRAY_KEYWORDS,
  checkKeywords,
  constraints,
  isObject,
  jsonEqual,
  mergeAllOf,
  NUMBER_KEYWORDS,
  OBJECT_KEYWORDS,
  resolveRef,
  type SchemaObject,
  STRING_KEYWORDS,
} from "./schema_merge.ts";

/** Deepest nesting of schemas (and `$ref` hops) the converter follows. */
export const MAX_SCHEMA_DEPTH = 64;

/**
 * Most sub-schemas one conversion visits. Merging `allOf` and `$ref`s with siblings inlines their
 * targets, so a small schema can ask for exponentially many visits (properties that each refer,
 * through `allOf`, to the next level: 3.5 KB took 34 s at 21 levels, on the event loop).
 */
export const MAX_SCHEMA_VISITS = 20_000;

/**
 * Most values of an `enum`. OpenAI's strict mode allows 1,000; 10,000 short strings convert in
 * some 30 ms, and a trie of more would pass the grammar's 60,000 characters anyway (40,000 values
 * had taken 20 s to find out, on the event loop).
 */
export const MAX_ENUM_VALUES = 10_000;

/**
 * Longest property name that extra members' names are kept apart from (one rule per character,
 * made recursively: 5,000 characters overflowed the stack).
 */
const MAX_EXCLUDED_NAME_LENGTH = 256;

const QUOTE = gbnfLiteral('"');
const JSON_TYPES = ["string", "number", "integer", "boolean", "null", "object", "array"];
/** Largest magnitude written for a bound; larger bounds are clamped (outputs stay valid). */
const BOUND_LIMIT = 10n ** BigInt(MAX_INT_DIGITS) - 1n;

/** Names of the shared rules for JSON text. */
type Primitive =
  | "ws"
  | "char"
  | "string"
  | "number"
  | "integer"
  | "boolean"
  | "null"
  | "value"
  | "object"
  | "member"
  | "array";

/** Shared rules for JSON text, written once when first used; `r` names the others. */
const PRIMITIVES: Readonly<Record<Primitive, (r: (name: Primitive) => string) => string>> = {
  ws: () => "([ \\t\\n] [ \\t]{0,20})?",
  // Listed, not negated, so that bytes that decode past U+10FFFF or to surrogates never fit.
  char: () =>
    `[\\x20-\\x21\\x23-\\x5b\\x5d-\\ud7ff\\ue000-\\U0010ffff] | "\\x5c" ([\\x22\\x5c/bfnrt] | "u" ` +
    `([0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))`,
  string: (r) => `${QUOTE} ${r("char")}* ${QUOTE}`,
  number: () => NUMBER_EXPR,
  integer: () => INTEGER_EXPR,
  boolean: () => `"true" | "false"`,
  null: () => `"null"`,
  value: (r) =>
    [r("object"), r("array"), r("string"), r("number"), r("boolean"), r("null")].join(" | "),
  object: (r) => `"{" ${r("ws")} (${r("member")} ("," ${r("ws")} ${r("member")})* ${r("ws")})? "}"`,
  member: (r) => `${r("string")} ${r("ws")} ":" ${r("ws")} ${r("value")}`,
  array: (r) => `"[" ${r("ws")} (${r("value")} ("," ${r("ws")} ${r("value")})* ${r("ws")})? "]"`,
};

/** The JSON text of a string, number, boolean or null of a `const` or `enum`. */
function scalarText(value: unknown, path: string): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new SchemaError("const", path, "is not a JSON value");
  return text;
}

/** One conversion; not reusable. */
class Converter {
  readonly rules = new RuleSet();
  /** Work left for the automata of the schema's patterns (shared by a request's tools). */
  readonly #automatonWork: WorkBudget;
  /** A test of text against each pattern beside a `const` or `enum`, by the pattern's text. */
  readonly #patternMatchers = new Map<string, (text: string) => boolean>();
  /** The rule of each pattern and lengths written so far (see `#patternString`). */
  readonly #patternStrings = new Map<string, string>();
  readonly #root: unknown;
  readonly #refs = new Map<string, string>();
  readonly #primitives = new Map<string, string>();
  #depth = 0;
  #visits = 0;

  constructor(root: unknown, budget: WorkBudget) {
    this.#root = root;
    this.#automatonWork = budget;
    this.rules.reserve("root");
  }

  /** The name of a shared rule, defining it (and what it uses) on first use. */
  primitive(name: Primitive): string {
    const known = this.#primitives.get(name);
    if (known !== undefined) return known;
    const reserved = this.rules.reserve(name);
    this.#primitives.set(name, reserved);
    this.rules.define(reserved, PRIMITIVES[name]((other) => this.primitive(other)));
    return reserved;
  }

  /**
   * GBNF for a schema.
   *
   * @param schema The (sub)schema.
   * @param path Its JSON pointer.
   * @param hint A name hint for rules made for it.
   */
  visit(schema: unknown, path: string, hint: string): string {
    if (++this.#depth > MAX_SCHEMA_DEPTH) {
      throw new SchemaError("", path, `is nested more than ${MAX_SCHEMA_DEPTH} levels deep`);
    }
    if (++this.#visits > MAX_SCHEMA_VISITS) {
      throw new SchemaError(
        "",
        path,
        `needs more than ${MAX_SCHEMA_VISITS} sub-schemas visited once its allOf and $ref ` +
          "siblings are merged in; refer to shared definitions with a bare $ref instead",
      );
    }
    try {
      return this.#visit(schema, path, hint);
    } finally {
      this.#depth--;
    }
  }

  #visit(schema: unknown, path: string, hint: string): string {
    if (schema === true) return this.primitive("value");
    if (schema === false) throw new SchemaError("", path, "is false, which no value satisfies");
    if (!isObject(schema)) throw new SchemaError("", path, "must be an object or a boolean");
    checkKeywords(schema, path);
    if (schema.$ref !== undefined) {
      const { $ref, ...rest } = schema;
      if (Object.keys(constraints(rest)).length === 0) return this.#ref($ref, path);
      return this.visit(mergeAllOf([this.#resolved($ref, path), rest], path), path, hint);
    }
    if (schema.allOf !== undefined) {
      const { allOf, ...rest } = schema;
      const branches = this.#schemaList(allOf, "allOf", path);
      // `{"allOf": [{"$ref": …}], "description": …}` (how pydantic refers to a model) is the
      // reference itself: one named rule, not a copy of its target at every use.
      if (branches.length === 1 && Object.keys(constraints(rest)).length === 0) {
        return this.#visit(branches[0], `${path}/allOf/0`, hint);
      }
      const merged = mergeAllOf([
        rest,
        ...branches.map((b, i) => this.#flatten(b, `${path}/allOf/${i}`)),
      ], path);
      return this.visit(merged, path, hint);
    }
    if (schema.anyOf !== undefined && schema.oneOf !== undefined) {
      throw new SchemaError(
        "oneOf",
        path,
        "together with anyOf in one schema is not supported; nest one in allOf",
      );
    }
    const choice = schema.anyOf !== undefined
      ? "anyOf"
      : schema.oneOf !== undefined
      ? "oneOf"
      : undefined;
    if (choice !== undefined) {
      const { [choice]: list, ...rest } = schema;
      const branches = this.#schemaList(list, choice, path);
      const shared = Object.keys(constraints(rest)).length > 0;
      return oneOf(branches.map((branch, i) => {
        const where = `${path}/${choice}/${i}`;
        return shared
          ? this.visit(mergeAllOf([rest, this.#flatten(branch, where)], where), where, hint)
          : this.visit(branch, where, hint);
      }));
    }
    const types = this.#types(schema, path);
    if (schema.const !== undefined || schema.enum !== undefined) {
      const matches = (pattern: string, text: string) => this.#matches(pattern, text, path);
      return this.#literals(literalValues(schema, types, path, matches), path, hint);
    }
    if (types === undefined) return this.primitive("value");
    return oneOf(types.map((type) => this.#typed(type, schema, path, hint)));
  }

  /** Whether text (a `const` or `enum` value) matches a pattern, by the pattern's automaton. */
  #matches(pattern: string, text: string, path: string): boolean {
    let matcher = this.#patternMatchers.get(pattern);
    if (matcher === undefined) {
      matcher = patternMatcher(pattern, path, this.#automatonWork);
      this.#patternMatchers.set(pattern, matcher);
    }
    return matcher(text);
  }

  /** A `$ref`'s target as a named rule (made once, so recursion works). */
  #ref(ref: unknown, path: string): string {
    const { target, pointer } = resolveRef(this.#root, ref, path);
    const known = this.#refs.get(pointer);
    if (known !== undefined) return known;
    const name = this.rules.reserve(pointer.split("/").at(-1) || "schema");
    this.#refs.set(pointer, name);
    this.rules.define(name, this.visit(target, pointer, name));
    return name;
  }

  /** A `$ref`'s target as a schema object, its own `$ref`s resolved. */
  #resolved(ref: unknown, path: string): SchemaObject {
    const { target, pointer } = resolveRef(this.#root, ref, path);
    return this.#flatten(target, pointer);
  }

  /**
   * A schema object without a top-level `$ref` (its target merged in). Its keywords are checked
   * first: merging a schema of many keys the converter refuses would be work thrown away.
   */
  #flatten(schema: unknown, path: string): SchemaObject {
    if (schema === true) return {};
    if (!isObject(schema)) throw new SchemaError("", path, "must be an object or true here");
    checkKeywords(schema, path);
    if (schema.$ref === undefined) return schema;
    if (++this.#depth > MAX_SCHEMA_DEPTH) {
      throw new SchemaError("$ref", path, `chains more than ${MAX_SCHEMA_DEPTH} references`);
    }
    try {
      const { $ref, ...rest } = schema;
      return mergeAllOf([this.#resolved($ref, path), rest], path);
    } finally {
      this.#depth--;
    }
  }

  #schemaList(value: unknown, keyword: string, path: string): unknown[] {
    if (!Array.isArray(value) || value.length === 0) {
      throw new SchemaError(keyword, path, "must be a non-empty array of schemas");
    }
    return value;
  }

  /** Exactly one JSON value; objects and arrays may hold whitespace like any other. */
  /**
   * The values of a `const` or `enum`. Strings, numbers, booleans and null share their common
   * beginnings (a trie: `"\"item_" ("1" ... | "2" ...)`), so that llama.cpp follows one stack
   * through a prefix that many values share, not one per value: a 1,000-value enum cost up to
   * 3.6 s per token with a stack per value at each token's start.
   */
  #literals(values: readonly unknown[], path: string, hint: string): string {
    const texts: string[] = [];
    const composite: string[] = [];
    for (const value of values) {
      if (value !== null && typeof value === "object") composite.push(this.#literal(value, path));
      else texts.push(scalarText(value, path));
    }
    const entries = [...new Set(texts)].map((text) => ({ text, tail: "" }));
    const addRule = (body: string) => this.rules.add(hint || "enum", body);
    const trie = texts.length > 0 ? [literalTrie(entries, addRule)] : [];
    return oneOf([...trie, ...composite]);
  }

  #literal(value: unknown, path: string, depth = 0): string {
    const ws = () => this.primitive("ws");
    if ((Array.isArray(value) || isObject(value)) && depth >= MAX_SCHEMA_DEPTH) {
      throw new SchemaError(
        "const",
        path,
        `holds a value nested more than ${MAX_SCHEMA_DEPTH} deep`,
      );
    }
    if (Array.isArray(value)) {
      if (value.length === 0) return `"[" ${ws()} "]"`;
      const items = value.map((v) => this.#literal(v, path, depth + 1)).join(` "," ${ws()} `);
      return `"[" ${ws()} ${items} ${ws()} "]"`;
    }
    if (isObject(value)) {
      const members = Object.entries(value).map(([k, v]) =>
        `${gbnfLiteral(JSON.stringify(k))} ${ws()} ":" ${ws()} ${this.#literal(v, path, depth + 1)}`
      );
      if (members.length === 0) return `"{" ${ws()} "}"`;
      return `"{" ${ws()} ${members.join(` "," ${ws()} `)} ${ws()} "}"`;
    }
    return gbnfLiteral(scalarText(value, path));
  }

  /** The JSON types a schema allows: declared, or implied by its keywords; undefined for any. */
  #types(schema: SchemaObject, path: string): string[] | undefined {
    let types: string[];
    if (schema.type !== undefined) {
      types = Array.isArray(schema.type) ? schema.type.map(String) : [String(schema.type)];
      for (const t of types) {
        if (!JSON_TYPES.includes(t)) {
          throw new SchemaError("type", path, `${JSON.stringify(t)} is not a JSON type`);
        }
      }
      if (types.length === 0) throw new SchemaError("type", path, "is an empty list");
    } else {
      types = [];
      const uses = (keys: readonly string[]) => keys.some((k) => schema[k] !== undefined);
      if (uses(OBJECT_KEYWORDS)) types.push("object");
      if (uses(ARRAY_KEYWORDS)) types.push("array");
      if (uses(STRING_KEYWORDS)) types.push("string");
      if (uses(NUMBER_KEYWORDS)) types.push("number");
      if (types.length === 0) return undefined;
    }
    if (schema.nullable === true && !types.includes("null")) types.push("null");
    if (types.includes("number")) types = types.filter((t) => t !== "integer");
    return [...new Set(types)];
  }

  #typed(type: string, schema: SchemaObject, path: string, hint: string): string {
    switch (type) {
      case "string":
        return this.#string(schema, path, hint);
      case "integer":
        return this.#integer(schema, path);
      case "number":
        return this.#number(schema, path);
      case "boolean":
        return this.primitive("boolean");
      case "null":
        return this.primitive("null");
      case "object":
        return this.#object(schema, path, hint);
      default:
        return this.#array(schema, path, hint);
    }
  }

  #count(schema: SchemaObject, keyword: string, path: string): number | undefined {
    const value = schema[keyword];
    if (value === undefined) return undefined;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
      throw new SchemaError(keyword, path, "must be a non-negative integer");
    }
    return value;
  }

  #string(schema: SchemaObject, path: string, hint: string): string {
    const min = this.#count(schema, "minLength", path);
    const max = this.#count(schema, "maxLength", path);
    const lengths = min !== undefined || max !== undefined;
    if (min !== undefined && max !== undefined && min > max) {
      throw new SchemaError("minLength", path, `${min} is above maxLength ${max}`);
    }
    const { format, pattern } = schema;
    if (pattern !== undefined && typeof pattern !== "string") {
      throw new SchemaError("pattern", path, "must be a string");
    }
    const patterns: string[] = [];
    if (format !== undefined) {
      const formatPattern = typeof format === "string" ? FORMATS[format] : undefined;
      // A format Shimmy does not write, beside a pattern, is the pattern's name: zod writes
      // `format: "nanoid"` or `"e164"` with the pattern that defines it.
      if (formatPattern !== undefined) patterns.push(formatPattern);
      else if (pattern === undefined || typeof format !== "string") {
        throw new SchemaError(
          "format",
          path,
          `${JSON.stringify(format)} is not supported; supported: ${
            Object.keys(FORMATS).join(", ")
          }, or any beside a pattern`,
        );
      }
    }
    if (pattern !== undefined) patterns.push(pattern);
    if (patterns.length > 0) {
      const hintOf = format !== undefined && pattern === undefined
        ? `${format}`
        : `${hint}-pattern`;
      const keyword = pattern !== undefined ? "pattern" : "format";
      return this.#patternString(patterns, keyword, { min, max }, path, hintOf);
    }
    if (!lengths) return this.primitive("string");
    const chars = repeat(
      this.primitive("char"),
      min ?? 0,
      max,
      min !== undefined && min > 1000 ? "minLength" : "maxLength",
      path,
    );
    return this.rules.add(`string-${min ?? 0}-${max ?? "more"}`, `${QUOTE} ${chars} ${QUOTE}`);
  }

  /**
   * A string of patterns (a format's, a schema's, or both) and lengths. Each patterns and lengths
   * make one rule, shared by every member that uses them: a format's automaton has dozens of rules.
   */
  #patternString(
    patterns: readonly string[],
    keyword: string,
    lengths: LengthBounds,
    path: string,
    hint: string,
  ): string {
    const key = JSON.stringify([patterns, lengths.min, lengths.max]);
    const known = this.#patternStrings.get(key);
    if (known !== undefined) return known;
    const inside = patternToGbnf(patterns, {
      lengths,
      rules: this.rules,
      hint,
      budget: this.#automatonWork,
      anyChar: () => this.primitive("char"),
      path,
      keyword,
    });
    const name = this.rules.add(`${hint}-string`, `${QUOTE} ${inside} ${QUOTE}`);
    this.#patternStrings.set(key, name);
    return name;
  }

  /** The lower and upper bound of a number schema, as given. */
  #bounds(schema: SchemaObject, path: string) {
    const read = (keyword: string): number | undefined => {
      const value = schema[keyword];
      if (value === undefined || typeof value === "boolean") return undefined;
      if (typeof value !== "number" || !Number.isFinite(value)) {
        throw new SchemaError(keyword, path, "must be a finite number");
      }
      return value;
    };
    const lower: { value: number; exclusive: boolean; keyword: string }[] = [];
    const upper: { value: number; exclusive: boolean; keyword: string }[] = [];
    const minimum = read("minimum");
    const maximum = read("maximum");
    const exMin = read("exclusiveMinimum");
    const exMax = read("exclusiveMaximum");
    if (minimum !== undefined) {
      lower.push({
        value: minimum,
        exclusive: schema.exclusiveMinimum === true,
        keyword: "minimum",
      });
    }
    if (exMin !== undefined) {
      lower.push({ value: exMin, exclusive: true, keyword: "exclusiveMinimum" });
    }
    if (maximum !== undefined) {
      upper.push({
        value: maximum,
        exclusive: schema.exclusiveMaximum === true,
        keyword: "maximum",
      });
    }
    if (exMax !== undefined) {
      upper.push({ value: exMax, exclusive: true, keyword: "exclusiveMaximum" });
    }
    const tightest = (list: typeof lower, sign: number) =>
      list.sort((a, b) =>
        sign * (b.value - a.value) || Number(b.exclusive) - Number(a.exclusive)
      )[0];
    return { lower: tightest(lower, 1), upper: tightest(upper, -1) };
  }

  #integer(schema: SchemaObject, path: string): string {
    const { lower, upper } = this.#bounds(schema, path);
    if (!lower && !upper) return this.primitive("integer");
    let min: bigint | undefined;
    let max: bigint | undefined;
    if (lower) {
      const v = lower.exclusive ? Math.floor(lower.value) + 1 : Math.ceil(lower.value);
      min = BigInt(v);
      if (min > BOUND_LIMIT) {
        throw new SchemaError(
          lower.keyword,
          path,
          `of ${lower.value} is above the supported ${BOUND_LIMIT}`,
        );
      }
      if (min < -BOUND_LIMIT) min = -BOUND_LIMIT;
    }
    if (upper) {
      const v = upper.exclusive ? Math.ceil(upper.value) - 1 : Math.floor(upper.value);
      max = BigInt(v);
      if (max < -BOUND_LIMIT) {
        throw new SchemaError(
          upper.keyword,
          path,
          `of ${upper.value} is below the supported ${-BOUND_LIMIT}`,
        );
      }
      if (max > BOUND_LIMIT) max = BOUND_LIMIT;
    }
    const expr = integerRange(min, max);
    if (expr === undefined) {
      throw new SchemaError(lower!.keyword, path, "leaves no integer within the bounds");
    }
    return this.rules.add(
      `int-${min ?? "min"}-${max ?? "max"}`.replaceAll("-", "-").replace(/--/g, "-neg"),
      expr,
    );
  }

  #number(schema: SchemaObject, path: string): string {
    const { lower, upper } = this.#bounds(schema, path);
    if (!lower && !upper) return this.primitive("number");
    const whole = (b: typeof lower): WholeBound | undefined => {
      if (!b) return undefined;
      if (!Number.isInteger(b.value)) {
        throw new SchemaError(
          b.keyword,
          path,
          `of ${b.value} on a number is not supported: only whole-number bounds are`,
        );
      }
      const value = BigInt(b.value);
      if (value > BOUND_LIMIT || value < -BOUND_LIMIT) {
        throw new SchemaError(
          b.keyword,
          path,
          `of ${b.value} is beyond the supported ±${BOUND_LIMIT}`,
        );
      }
      return { value, exclusive: b.exclusive };
    };
    const expr = numberRange(whole(lower), whole(upper));
    if (expr === undefined) {
      throw new SchemaError(
        lower?.keyword ?? "maximum",
        path,
        "leaves no number within the bounds",
      );
    }
    return this.rules.add("bounded-number", expr);
  }

  /** A key that is none of the given names. */
  #otherKey(names: readonly string[], hint: string, path: string): string {
    const long = names.find((name) => name.length > MAX_EXCLUDED_NAME_LENGTH);
    if (long !== undefined) {
      throw new SchemaError(
        "properties",
        path,
        `has a property name of ${long.length} characters beside other members; names of at ` +
          `most ${MAX_EXCLUDED_NAME_LENGTH} characters can be kept apart from the others'`,
      );
    }
    interface Node {
      end: boolean;
      next: Map<number, Node>;
    }
    const root: Node = { end: false, next: new Map() };
    for (const name of names) {
      let node = root;
      for (const ch of name) {
        const code = ch.codePointAt(0)!;
        let child = node.next.get(code);
        if (!child) node.next.set(code, child = { end: false, next: new Map() });
        node = child;
      }
      node.end = true;
    }
    const char = this.primitive("char");
    const write = (node: Node): string => {
      const alternatives: string[] = [];
      if (!node.end) alternatives.push(QUOTE);
      const others = complement(charSet([...node.next.keys()].map((c) => [c, c] as const)));
      alternatives.push(`${jsonCharSetExpr(others)} ${char}* ${QUOTE}`);
      for (const [code, child] of node.next) {
        alternatives.push(`${gbnfLiteral(jsonCharText(code))} ${write(child)}`);
      }
      return this.rules.add(`${hint}-key`, alternatives.join(" | "));
    };
    return `${QUOTE} ${write(root)}`;
  }

  #object(schema: SchemaObject, path: string, hint: string): string {
    const ws = this.primitive("ws");
    const minProps = this.#count(schema, "minProperties", path) ?? 0;
    const maxProps = this.#count(schema, "maxProperties", path);
    if (maxProps !== undefined && minProps > maxProps) {
      throw new SchemaError(
        "minProperties",
        path,
        `${minProps} is above maxProperties ${maxProps}`,
      );
    }
    let { entries, additional } = this.#objectEntries(schema, path);
    const requiredCount = entries.filter((e) => e.required).length;
    if (maxProps !== undefined && maxProps < requiredCount) {
      throw new SchemaError(
        "maxProperties",
        path,
        `${maxProps} is below the ${requiredCount} required properties`,
      );
    }
    if (maxProps !== undefined && maxProps === requiredCount) {
      // Room for the required properties only (stricter, still valid).
      entries = entries.filter((e) => e.required);
      additional = false;
    }
    const kvs = entries.map((e) => {
      const where = `${path}/properties/${e.name.replaceAll("~", "~0").replaceAll("/", "~1")}`;
      return `${gbnfLiteral(JSON.stringify(e.name))} ${ws} ":" ${ws} ${
        this.visit(e.schema, where, e.name)
      }`;
    });
    const extra = additional === false
      ? undefined
      : this.#extraMember(schema, additional, entries, path, hint);
    let list: string;
    let canBeEmpty: boolean;
    if (entries.length === 0) {
      if (extra === undefined || maxProps === 0) {
        if (minProps > 0) {
          throw new SchemaError(
            "minProperties",
            path,
            `is ${minProps}, but the schema allows no member, so no object satisfies it`,
          );
        }
        return this.rules.add("empty-object", `"{" ${ws} "}"`);
      }
      const more = repeat(
        `"," ${ws} ${extra}`,
        Math.max(minProps - 1, 0),
        maxProps === undefined ? undefined : maxProps - 1,
        "maxProperties",
        path,
      );
      list = more === '""' ? extra : `${extra} ${more}`;
      canBeEmpty = minProps === 0;
    } else {
      const fits = maxProps === undefined || (extra === undefined && maxProps >= entries.length);
      if (!fits || minProps > requiredCount) {
        throw new SchemaError(
          fits ? "minProperties" : "maxProperties",
          path,
          "is supported only on objects without properties, or where the properties alone meet it",
        );
      }
      list = this.#members(kvs, entries.map((e) => e.required), extra, hint);
      canBeEmpty = requiredCount === 0;
    }
    const body = canBeEmpty ? `"{" ${ws} (${list} ${ws})? "}"` : `"{" ${ws} ${list} ${ws} "}"`;
    return this.rules.add(hint || "object", body);
  }

  /**
   * The members an object schema declares, in order, and what it allows beyond them. Without
   * `properties` an object allows any members; with them, none beyond them unless
   * `additionalProperties` says so (stricter than JSON Schema, still valid). A property whose
   * schema is false is left out; a required name that `properties` lacks takes the
   * `additionalProperties` schema.
   */
  #objectEntries(schema: SchemaObject, path: string) {
    const properties = schema.properties ?? {};
    if (!isObject(properties)) throw new SchemaError("properties", path, "must be an object");
    const required = schema.required ?? [];
    if (!Array.isArray(required) || !required.every((r) => typeof r === "string")) {
      throw new SchemaError("required", path, "must be an array of strings");
    }
    const declared = Object.keys(properties);
    // Listed properties, even none (`"properties": {}`, a tool without arguments), close the
    // object unless `additionalProperties` opens it.
    const additional = schema.additionalProperties ??
      (schema.properties === undefined && required.length === 0);
    const entries: { name: string; schema: unknown; required: boolean }[] = [];
    for (const name of declared) {
      const isRequired = required.includes(name);
      if (properties[name] === false && isRequired) {
        throw new SchemaError(
          "required",
          path,
          `names ${JSON.stringify(name)}, whose schema is false`,
        );
      }
      if (properties[name] !== false) {
        entries.push({ name, schema: properties[name], required: isRequired });
      }
    }
    for (const name of new Set(required)) {
      if (declared.includes(name)) continue;
      if (additional === false) {
        throw new SchemaError(
          "required",
          path,
          `names ${JSON.stringify(name)}, which properties lacks and additionalProperties forbids`,
        );
      }
      entries.push({ name, schema: additional, required: true });
    }
    return { entries, additional };
  }

  /** The rule of one member beyond the declared ones: its key and its value. */
  #extraMember(
    schema: SchemaObject,
    additional: unknown,
    entries: readonly { name: string }[],
    path: string,
    hint: string,
  ): string {
    const ws = this.primitive("ws");
    const value = this.visit(additional, `${path}/additionalProperties`, `${hint}-value`);
    let key: string;
    if (schema.propertyNames !== undefined) {
      if (entries.length > 0) {
        throw new SchemaError(
          "propertyNames",
          path,
          "is supported only on objects without properties",
        );
      }
      const names = isObject(schema.propertyNames) ? schema.propertyNames : {};
      key = this.visit({ ...names, type: "string" }, `${path}/propertyNames`, `${hint}-name`);
    } else if (entries.length > 0) key = this.#otherKey(entries.map((e) => e.name), hint, path);
    else key = this.primitive("string");
    return this.rules.add(`${hint}-member`, `${key} ${ws} ":" ${ws} ${value}`);
  }

  /**
   * Members in order: required ones always, optional ones maybe, extras after them. A chain
   * of rules places the commas: `rest-i` follows a written member, `from-i` starts the list.
   */
  #members(kvs: string[], required: boolean[], extra: string | undefined, hint: string): string {
    const ws = this.primitive("ws");
    const n = kvs.length;
    const rest: string[] = new Array(n + 1);
    rest[n] = extra === undefined ? "" : `("," ${ws} ${extra})*`;
    for (let i = n - 1; i >= 1; i--) {
      const part = required[i] ? `"," ${ws} ${kvs[i]}` : `("," ${ws} ${kvs[i]})?`;
      const text = rest[i + 1] === "" ? part : `${part} ${rest[i + 1]}`;
      rest[i] = i + 1 === n ? text : this.rules.add(`${hint}-rest`, text);
    }
    // `from` is the list from member i on, when nothing was written before it.
    let from: string | undefined = extra === undefined ? undefined : `${extra} ${rest[n]}`;
    let alternatives = false;
    const own = (i: number) => rest[i + 1] === "" ? kvs[i]! : `${kvs[i]} ${rest[i + 1]}`;
    const firstRequired = required.indexOf(true);
    if (firstRequired >= 0) from = own(firstRequired);
    for (let i = (firstRequired >= 0 ? firstRequired : n) - 1; i >= 0; i--) {
      if (from === undefined) from = own(i);
      else {
        const later: string = alternatives ? this.rules.add(`${hint}-from`, from) : `(${from})`;
        [from, alternatives] = [`${own(i)} | ${later}`, true];
      }
    }
    return alternatives ? this.rules.add(`${hint}-from`, from!) : from!;
  }

  #array(schema: SchemaObject, path: string, hint: string): string {
    const ws = this.primitive("ws");
    const tuple = Array.isArray(schema.prefixItems)
      ? schema.prefixItems
      : Array.isArray(schema.items)
      ? schema.items
      : [];
    if (schema.prefixItems !== undefined && !Array.isArray(schema.prefixItems)) {
      throw new SchemaError("prefixItems", path, "must be an array of schemas");
    }
    const rest = Array.isArray(schema.items)
      ? schema.additionalItems
      : schema.prefixItems !== undefined
      ? schema.items
      : schema.items;
    const min = this.#count(schema, "minItems", path) ?? 0;
    let max = this.#count(schema, "maxItems", path);
    if (rest === false) max = Math.min(max ?? tuple.length, tuple.length);
    if (max !== undefined && min > max) {
      throw new SchemaError(
        "minItems",
        path,
        `${min} is above ${rest === false ? "the number of prefixItems" : "maxItems"} ${max}`,
      );
    }
    if (max === 0) return this.rules.add("empty-array", `"[" ${ws} "]"`);
    const item = rest === false
      ? undefined
      : this.visit(rest ?? true, `${path}/items`, `${hint}-item`);
    const k = Math.min(tuple.length, max ?? tuple.length);
    let tail = "";
    if (item !== undefined && (max === undefined || max > k)) {
      tail = repeat(
        `"," ${ws} ${item}`,
        Math.max(min - k - (k === 0 ? 1 : 0), 0),
        max === undefined ? undefined : max - k - (k === 0 ? 1 : 0),
        "maxItems",
        path,
      );
      if (k === 0) tail = tail === '""' ? item : `${item} ${tail}`;
    }
    for (let i = k - 1; i >= 0; i--) {
      const element = this.visit(tuple[i], `${path}/prefixItems/${i}`, `${hint}-${i}`);
      const segment = [i === 0 ? "" : `"," ${ws}`, element, tail].filter((s) => s !== "").join(" ");
      tail = i === 0 || i < min ? segment : `(${segment})?`;
    }
    const body = min === 0 ? `"[" ${ws} (${tail} ${ws})? "]"` : `"[" ${ws} ${tail} ${ws} "]"`;
    return this.rules.add(hint ? `${hint}-array` : "array", body);
  }
}

/**
 * The values of a schema's `const` or `enum` that meet its other keywords: `enum` beside `const`,
 * the type, and string and number bounds and `pattern`. Keywords of arrays and objects beside an
 * array or object value, and `format`, are refused rather than left unchecked.
 */
function literalValues(
  schema: SchemaObject,
  types: string[] | undefined,
  path: string,
  matches: PatternTest,
): unknown[] {
  const keyword = schema.const !== undefined ? "const" : "enum";
  if (schema.enum !== undefined && (!Array.isArray(schema.enum) || schema.enum.length === 0)) {
    throw new SchemaError("enum", path, "must be a non-empty array");
  }
  if (Array.isArray(schema.enum) && schema.enum.length > MAX_ENUM_VALUES) {
    throw new SchemaError(
      "enum",
      path,
      `has ${schema.enum.length} values; at most ${MAX_ENUM_VALUES} are supported, use a ` +
        "pattern or a plain string instead",
    );
  }
  const listed = schema.enum as unknown[] | undefined;
  const values = (schema.const !== undefined ? [schema.const] : listed ?? []).filter((value) =>
    (types === undefined || types.some((t) => hasType(value, t))) &&
    (schema.const === undefined || listed === undefined ||
      listed.some((v) => jsonEqual(v, value))) &&
    meetsLiteralBounds(value, schema, path, matches)
  );
  if (values.length === 0) {
    throw new SchemaError(keyword, path, "has no value that meets the schema's other keywords");
  }
  return values;
}

/** Whether text matches a pattern (JSON Schema's search: unanchored unless `^` or `$` say). */
type PatternTest = (pattern: string, text: string) => boolean;

/** Whether a `const` or `enum` value meets the schema's bounds and pattern (see literalValues). */
function meetsLiteralBounds(
  value: unknown,
  schema: SchemaObject,
  path: string,
  matches: PatternTest,
): boolean {
  if (schema.format !== undefined) {
    throw new SchemaError("format", path, "is not supported beside const or enum");
  }
  const bound = (key: string) => {
    const limit = schema[key];
    if (limit !== undefined && typeof limit !== "number") {
      throw new SchemaError(key, path, "must be a number beside const or enum");
    }
    return limit;
  };
  if (typeof value === "string") {
    const length = [...value].length;
    const [min, max] = [bound("minLength"), bound("maxLength")];
    if ((min !== undefined && length < min) || (max !== undefined && length > max)) return false;
    if (schema.pattern === undefined) return true;
    if (typeof schema.pattern !== "string") {
      throw new SchemaError("pattern", path, "must be a string");
    }
    return matches(schema.pattern, value);
  }
  if (typeof value === "number") {
    const [min, max] = [bound("minimum"), bound("maximum")];
    const [above, below] = [bound("exclusiveMinimum"), bound("exclusiveMaximum")];
    return !((min !== undefined && value < min) || (max !== undefined && value > max) ||
      (above !== undefined && value <= above) || (below !== undefined && value >= below));
  }
  if (Array.isArray(value) || isObject(value)) {
    const keywords = Array.isArray(value) ? ARRAY_KEYWORDS : OBJECT_KEYWORDS;
    const beside = keywords.find((k) => schema[k] !== undefined);
    if (beside !== undefined) {
      throw new SchemaError(beside, path, "is not supported beside a const or enum value");
    }
  }
  return true;
}

function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case "null":
      return value === null;
    case "integer":
      return Number.isInteger(value);
    case "array":
      return Array.isArray(value);
    case "object":
      return isObject(value);
    case "number":
      return typeof value === "number";
    case "string":
      return typeof value === "string";
    case "boolean":
      return typeof value === "boolean";
    default:
      return false;
  }
}

/**
 * Converts a JSON schema to a GBNF grammar whose start rule is `root`.
 *
 * @param schema The schema (an object or a boolean).
 * @param budget The work its patterns' automata may take, spent here; pass one budget to every
 *   schema of a request (a request's tools) so that together they take no more than one schema
 *   may. Default: a fresh {@link AUTOMATON_WORK}.
 * @returns The grammar.
 * @throws {SchemaError} naming a keyword the converter cannot honour, or an invalid schema.
 * @example
 * ```ts
 * const grammar = jsonSchemaToGrammar({
 *   type: "object",
 *   properties: { name: { type: "string", maxLength: 20 }, age: { type: "integer", minimum: 0 } },
 *   required: ["name"],
 * });
 * ```
 */
export function jsonSchemaToGrammar(
  schema: unknown,
  budget: WorkBudget = { left: AUTOMATON_WORK },
): string {
  const key = JSON.stringify(schema) ?? "undefined";
  let grammar = recentConversions.get(key);
  if (grammar === undefined) {
    // Past a budget that other schemas spent from, the result is not the schema's own.
    const whole = budget.left >= AUTOMATON_WORK;
    try {
      const converter = new Converter(schema, budget);
      converter.rules.define("root", converter.visit(schema, "", "schema"));
      grammar = converter.rules.toString("root");
    } catch (error) {
      if (!(error instanceof SchemaError)) throw error;
      grammar = error;
    }
    if (whole) recentConversions.set(key, grammar);
  }
  if (grammar instanceof SchemaError) throw grammar;
  return grammar;
}

/**
 * The latest conversions, by the schema's JSON: clients send the same tools and schemas with
 * every request, and a schema's patterns take up to some 40 ms of the event loop to convert.
 */
const recentConversions = new RecentMap<string | SchemaError>({
  maxEntries: 64,
  maxSize: 8 * 1024 * 1024,
  sizeOf: (key, grammar) => key.length + (typeof grammar === "string" ? grammar.length : 0),
});

/**
 * The grammar of any JSON object (`response_format: {"type": "json_object"}`).
 *
 * @returns The grammar.
 * @example
 * ```ts
 * const grammar = jsonObjectGrammar(); // root ::= object …
 * ```
 */
export function jsonObjectGrammar(): string {
  return jsonSchemaToGrammar({ type: "object" });
}
