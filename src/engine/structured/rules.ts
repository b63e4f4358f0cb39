/**
 * A growing set of named GBNF rules: unique names made from hints, identical bodies shared
 * under one name, a size bound, and repetition written within llama.cpp's limits.
 *
 * @module
 */

import { SchemaError } from "./errors.ts";

/** Largest count written in `{m,n}`; the grammar validator refuses larger ones. */
export const MAX_REPEAT = 1000;

/** Largest grammar the converter writes, in characters (the validator allows 64 KiB). */
export const MAX_GRAMMAR_CHARS = 60_000;

/**
 * Rules of one grammar, written in order of creation with the root first.
 *
 * @example
 * ```ts
 * const rules = new RuleSet();
 * const digit = rules.add("digit", "[0-9]");
 * rules.define("root", `${digit}+`);
 * rules.toString(); // 'root ::= digit+\ndigit ::= [0-9]\n'
 * ```
 */
export class RuleSet {
  readonly #bodies = new Map<string, string | undefined>();
  readonly #byBody = new Map<string, string>();
  /** The next suffix to try for each base name: an automaton reserves hundreds of one base. */
  readonly #nextSuffix = new Map<string, number>();
  #chars = 0;

  /**
   * Reserves a unique rule name made from a hint (characters GBNF names cannot hold become `-`).
   *
   * @param hint E.g. a property name.
   * @returns The reserved name.
   */
  reserve(hint: string): string {
    const base = hint.replace(/[^a-zA-Z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40) ||
      "r";
    let name = base;
    let n = this.#nextSuffix.get(base) ?? 2;
    while (this.#bodies.has(name)) name = `${base}-${n++}`;
    this.#nextSuffix.set(base, n);
    this.#bodies.set(name, undefined);
    return name;
  }

  /**
   * Defines a reserved rule.
   *
   * @param name A name from {@link reserve}.
   * @param body The rule's alternatives.
   * @throws {SchemaError} when the grammar grows past {@link MAX_GRAMMAR_CHARS}.
   */
  define(name: string, body: string): void {
    this.#chars += name.length + body.length + 6;
    if (this.#chars > MAX_GRAMMAR_CHARS) {
      throw new SchemaError(
        "",
        "",
        `needs a grammar larger than ${MAX_GRAMMAR_CHARS} characters; simplify the schema`,
      );
    }
    this.#bodies.set(name, body);
    if (!this.#byBody.has(body)) this.#byBody.set(body, name);
  }

  /**
   * A rule with this body: an existing one with the same body, or a new one.
   *
   * @param hint Name hint for a new rule.
   * @param body The rule's alternatives.
   * @returns The rule's name.
   */
  add(hint: string, body: string): string {
    const existing = this.#byBody.get(body);
    if (existing !== undefined) return existing;
    const name = this.reserve(hint);
    this.define(name, body);
    return name;
  }

  /** Whether a rule of this name exists. */
  has(name: string): boolean {
    return this.#bodies.has(name);
  }

  /**
   * The grammar text.
   *
   * @param root The start rule, written first.
   * @returns GBNF, one rule a line.
   */
  toString(root = "root"): string {
    const lines: string[] = [];
    const rootBody = this.#bodies.get(root);
    if (rootBody !== undefined) lines.push(`${root} ::= ${rootBody}`);
    for (const [name, body] of this.#bodies) {
      if (name !== root && body !== undefined) lines.push(`${name} ::= ${body}`);
    }
    return lines.join("\n") + "\n";
  }
}

/**
 * Puts parentheses around an expression unless it is one item already.
 *
 * @param expr A GBNF expression.
 * @returns The expression as one item.
 */
export function group(expr: string): string {
  return /^([a-zA-Z0-9-]+|"([^"\\]|\\.)*"|\[([^\]\\]|\\.)*\])$/.test(expr) ? expr : `(${expr})`;
}

/**
 * Alternatives as one expression.
 *
 * @param alternatives GBNF expressions; at least one.
 * @returns `a | b | c` in parentheses, or the single one.
 */
export function oneOf(alternatives: readonly string[]): string {
  const unique = [...new Set(alternatives)];
  return unique.length === 1 ? unique[0]! : `(${unique.join(" | ")})`;
}

/**
 * An item repeated `min` to `max` times, within llama.cpp's limits. A maximum above
 * {@link MAX_REPEAT} is lowered to it (every output still satisfies the schema, the longest
 * are only shorter); a minimum above it is refused.
 *
 * @param item A GBNF expression.
 * @param min Fewest repeats.
 * @param max Most repeats; undefined for no limit.
 * @param keyword The schema keyword the bound came from, for errors.
 * @param path Where in the schema.
 * @returns The repetition, or "" for exactly zero.
 * @throws {SchemaError} when `min` is above {@link MAX_REPEAT}.
 */
export function repeat(
  item: string,
  min: number,
  max: number | undefined,
  keyword: string,
  path: string,
): string {
  if (min > MAX_REPEAT) {
    throw new SchemaError(keyword, path, `of ${min} is above the supported ${MAX_REPEAT}`);
  }
  const top = max === undefined ? undefined : Math.min(max, MAX_REPEAT);
  const g = group(item);
  if (top === 0) return '""';
  if (min === top) return min === 1 ? g : `${g}{${min}}`;
  if (top === undefined) return min === 0 ? `${g}*` : min === 1 ? `${g}+` : `${g}{${min},}`;
  if (min === 0 && top === 1) return `${g}?`;
  return `${g}{${min},${top}}`;
}
