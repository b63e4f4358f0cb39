/**
 * JSON Schema → GBNF for a tool that is not `strict`: OpenAI's and Anthropic's APIs take any
 * schema for such tools and do not hold the arguments to it, while Shimmy's grammar holds them
 * to what the converter can express. Where the converter cannot honour a keyword (`format:
 * "uri"`, `uniqueItems`, a fractional bound…), the keyword is left out of that sub-schema and
 * the conversion tried again, so the rest of the schema (its properties, required members and
 * types) still holds; a sub-schema that fails without a keyword to leave out allows any value.
 *
 * @module
 */

import { AUTOMATON_WORK, type WorkBudget } from "./dfa.ts";
import { SchemaError } from "./errors.ts";
import { jsonSchemaToGrammar } from "./json_schema.ts";
import { isObject } from "./schema_merge.ts";

/** Conversions tried before the schema is given up for any JSON value. */
const MAX_TRIES = 32;

/**
 * Converts a schema, leaving out the keywords the converter cannot honour.
 *
 * @param schema A JSON schema.
 * @param budget The work its patterns' automata may take, shared by every try (see
 *   `jsonSchemaToGrammar`). Default: a fresh `AUTOMATON_WORK`.
 * @returns GBNF text with start rule `root`.
 * @example
 * ```ts
 * looseSchemaGrammar({ type: "string", format: "uri" }); // the grammar of { type: "string" }
 * ```
 */
export function looseSchemaGrammar(
  schema: unknown,
  budget: WorkBudget = { left: AUTOMATON_WORK },
): string {
  let current = schema;
  for (let tries = 0; tries < MAX_TRIES; tries++) {
    try {
      return jsonSchemaToGrammar(current, budget);
    } catch (error) {
      if (!(error instanceof SchemaError)) throw error;
      const steps = error.path === ""
        ? []
        : error.path.slice(1).split("/").map((step) =>
          step.replaceAll("~1", "/").replaceAll("~0", "~")
        );
      const loosened = withoutKeyword(current, steps, error.keyword);
      if (loosened === undefined) break;
      current = loosened;
    }
  }
  return jsonSchemaToGrammar({});
}

/**
 * A copy of the document with `keyword` left out of the sub-schema that `steps` (a JSON
 * pointer's steps) lead to, or that sub-schema allowing anything where it has no such keyword;
 * none where the steps lead nowhere or it already allows anything.
 */
function withoutKeyword(doc: unknown, steps: readonly string[], keyword: string): unknown {
  if (steps.length === 0) {
    if (!isObject(doc)) return undefined;
    if (keyword !== "" && keyword in doc) {
      const { [keyword]: _left, ...rest } = doc;
      return rest;
    }
    return Object.keys(doc).length === 0 ? undefined : {};
  }
  const [step, ...rest] = steps as [string, ...string[]];
  if (Array.isArray(doc)) {
    const index = Number(step);
    if (!Number.isInteger(index) || index < 0 || index >= doc.length) return undefined;
    const inner = withoutKeyword(doc[index], rest, keyword);
    return inner === undefined ? undefined : doc.map((item, i) => i === index ? inner : item);
  }
  if (!isObject(doc) || !(step in doc)) return undefined;
  const inner = withoutKeyword(doc[step], rest, keyword);
  return inner === undefined ? undefined : { ...doc, [step]: inner };
}
