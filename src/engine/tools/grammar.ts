/**
 * Grammars that force tool calls (`tool_choice` `required` or a named function): the output
 * must be one call (or, with `parallel_tool_calls`, up to eight) in the model family's format,
 * to one of the allowed tools, with arguments that the tool's parameter schema accepts. Each
 * tool's schema goes through the JSON-Schema converter on its own (so its `$ref`s resolve in
 * its own document) and its rules are renamed apart; XML formats get one value per parameter.
 * A schema with keywords the converter cannot honour (`format: "uri"`, `uniqueItems`…) is
 * loosened by leaving them out (`schema_loosen.ts`), as OpenAI's and Anthropic's APIs accept
 * such schemas for tools that are not `strict`; a `strict` tool's schema must convert. The
 * tools of one request share one budget for their patterns' automata, as one schema's patterns
 * do: 128 tools with hard patterns had taken 5 s of the event loop, each with a budget of its own.
 *
 * @module
 */

import { gbnfLiteral } from "../structured/charset.ts";
import { SchemaError, StructuredOutputError } from "../structured/errors.ts";
import { DEFAULT_GRAMMAR_LIMITS } from "../gbnf.ts";
import { AUTOMATON_WORK, type WorkBudget } from "../structured/dfa.ts";
import { jsonSchemaToGrammar } from "../structured/json_schema.ts";
import { literalTrie } from "../structured/literal_trie.ts";
import { looseSchemaGrammar } from "../structured/schema_loosen.ts";
import type { ToolFormat } from "./formats.ts";
import type { ToolSpec } from "./tool_types.ts";

/**
 * Renames every rule of a grammar by prefixing it, leaving literals and classes alone.
 *
 * @param grammar GBNF text.
 * @param prefix E.g. `t0-`.
 * @returns The renamed grammar.
 */
export function prefixRules(grammar: string, prefix: string): string {
  let out = "";
  let i = 0;
  while (i < grammar.length) {
    const c = grammar[i]!;
    if (c === '"' || c === "[") {
      const close = c === '"' ? '"' : "]";
      let j = i + 1;
      while (j < grammar.length && grammar[j] !== close) j += grammar[j] === "\\" ? 2 : 1;
      out += grammar.slice(i, j + 1);
      i = j + 1;
    } else if (c === "{") {
      const j = grammar.indexOf("}", i);
      out += grammar.slice(i, j + 1);
      i = j + 1;
    } else if (/[a-zA-Z]/.test(c)) {
      const m = /^[a-zA-Z0-9-]+/.exec(grammar.slice(i))!;
      out += prefix + m[0];
      i += m[0].length;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/**
 * A converted schema: its rules (renamed apart) and the name of its start rule. A schema with
 * keywords the converter cannot honour is refused for a strict tool, else loosened.
 */
function schemaRules(schema: unknown, prefix: string, strict: boolean, budget: WorkBudget): {
  rules: string;
  root: string;
} {
  let grammar: string;
  try {
    grammar = jsonSchemaToGrammar(schema, budget);
  } catch (error) {
    if (!(error instanceof SchemaError)) throw error;
    error.param = "tools";
    if (strict) throw error;
    grammar = looseSchemaGrammar(schema, budget);
  }
  return { rules: prefixRules(grammar, prefix), root: `${prefix}root` };
}

/** The XML parameters of one tool as a GBNF expression (Qwen3-Coder, GLM). */
function xmlParams(
  tool: ToolSpec,
  prefix: string,
  xml: NonNullable<ToolFormat["grammar"]["xml"]>,
  rules: string[],
  budget: WorkBudget,
): string {
  const params = tool.parameters;
  const props = (params.properties ?? {}) as Record<string, Record<string, unknown>>;
  const required = new Set(Array.isArray(params.required) ? params.required as string[] : []);
  const parts: string[] = [];
  Object.entries(props).forEach(([key, schema], k) => {
    const strict = tool.strict === true;
    const value = xmlValueExpr(schema, params, `${prefix}p${k}-`, strict, rules, budget);
    const one = `${gbnfLiteral(xml.open(key))} ${value} ${gbnfLiteral(xml.close)}`;
    parts.push(required.has(key) ? one : `(${one})?`);
  });
  return parts.length ? parts.join(" ") : '""';
}

/** A parameter's value in XML formats: raw text for strings, JSON for the rest. */
function xmlValueExpr(
  schema: Record<string, unknown>,
  parent: Record<string, unknown>,
  prefix: string,
  strict: boolean,
  rules: string[],
  budget: WorkBudget,
): string {
  const isStringType = schema.type === "string";
  const isStringEnum = schema.type === undefined && Array.isArray(schema.enum) &&
    schema.enum.every((v) => typeof v === "string");
  if (Array.isArray(schema.enum) && (isStringType || isStringEnum)) {
    return `(${(schema.enum as string[]).map(gbnfLiteral).join(" | ")})`;
  }
  if (isStringType && schema.pattern === undefined && schema.format === undefined) {
    const min = typeof schema.minLength === "number" ? schema.minLength : 0;
    const max = typeof schema.maxLength === "number" ? Math.min(schema.maxLength, 1000) : undefined;
    return `[^<\\n]{${min},${max ?? ""}}`;
  }

  // Everything else as JSON, with the parent's definitions so `$ref`s resolve.
  const withDefs = {
    ...schema,
    ...(parent.$defs ? { $defs: parent.$defs } : {}),
    ...(parent.definitions ? { definitions: parent.definitions } : {}),
  };
  const converted = schemaRules(withDefs, prefix, strict, budget);
  rules.push(converted.rules);
  return converted.root;
}

/**
 * The grammar that forces calls to the given tools in a format.
 *
 * @param format The model family's format.
 * @param tools The tools the output may call (all offered, or the one named).
 * @param parallel Whether several calls may follow each other.
 * @returns GBNF text with start rule `root`.
 * @throws {SchemaError} (param `tools`) when a strict tool's parameter schema cannot be
 *   converted.
 * @example
 * ```ts
 * forcedToolGrammar(TOOL_FORMATS.hermes, [{ name: "f", parameters: { type: "object" } }], false);
 * ```
 */
export function forcedToolGrammar(
  format: ToolFormat,
  tools: readonly ToolSpec[],
  parallel: boolean,
): string {
  const rules: string[] = [];
  const budget: WorkBudget = { left: AUTOMATON_WORK };
  const calls = tools.map((tool, i) => {
    const prefix = `t${i}-`;
    let args: string;
    if (format.grammar.xml) {
      args = xmlParams(tool, prefix, format.grammar.xml, rules, budget);
    } else {
      const converted = schemaRules(tool.parameters, prefix, tool.strict === true, budget);
      rules.push(converted.rules);
      args = converted.root;
    }
    // Past the limit after some tools, building the rest would only be thrown away (128 tools of
    // 29 KB each took seconds of the event loop before the grammar's check refused them).
    if (rules.reduce((sum, rule) => sum + rule.length, 0) > DEFAULT_GRAMMAR_LIMITS.maxBytes) {
      throw new StructuredOutputError(
        "tools",
        `The tools' parameters make a call grammar longer than the limit of ` +
          `${DEFAULT_GRAMMAR_LIMITS.maxBytes} bytes (after ${i + 1} of ${tools.length} tools); ` +
          "offer fewer tools or smaller parameter schemas",
      );
    }
    const { lead, rest } = format.grammar.call(tool.name, args, tool);
    return { text: lead, tail: rest };
  });
  // The tools' leads share their beginnings (`<tool_call>\n{"name": "get_`…): one parse stack
  // follows them instead of one per tool.
  const branches: string[] = [];
  const addBranch = (body: string) => {
    branches.push(`call-${branches.length} ::= ${body}`);
    return `call-${branches.length - 1}`;
  };
  const call = `call ::= ${literalTrie(calls, addBranch)}`;
  return [`root ::= ${format.grammar.wrap("call", parallel)}`, call, ...branches, ...rules]
    .join("\n") + "\n";
}
