/**
 * Structured output requested by a client, turned into the one grammar a generation runs
 * under. OpenAI's `response_format` (`text`, `json_object`, `json_schema` with
 * `json_schema.schema`), and llama-server's spellings: `json_schema` at the top level of the
 * request, `response_format.schema`. A raw GBNF `grammar` is passed through. Sending a grammar
 * together with a schema, an unknown `response_format.type`, or a schema the converter cannot
 * honour raises a {@link StructuredOutputError} naming the request field.
 *
 * @module
 */

import { SchemaError, StructuredOutputError } from "./errors.ts";
import { jsonObjectGrammar, jsonSchemaToGrammar } from "./json_schema.ts";
import { isObject } from "./schema_merge.ts";

/** The request fields that ask for structured output, as sent (unvalidated). */
export interface StructuredOutputFields {
  /** `grammar`: GBNF text. */
  grammar?: unknown;
  /** `response_format`: OpenAI's object. */
  responseFormat?: unknown;
  /** `json_schema`: llama-server's top-level schema. */
  jsonSchema?: unknown;
}

function fieldError(param: string, reason: string): StructuredOutputError {
  return new StructuredOutputError(param, reason);
}

/** Converts a schema, naming the request field in the error. */
function fromSchema(schema: unknown, param: string): string {
  if (!isObject(schema) && typeof schema !== "boolean") {
    throw fieldError(param, `"${param}" must be a JSON schema object`);
  }
  try {
    return jsonSchemaToGrammar(schema);
  } catch (error) {
    if (error instanceof SchemaError) error.param = param;
    throw error;
  }
}

/** The grammar a `response_format` asks for; undefined for plain text. */
function responseFormatGrammar(format: unknown): string | undefined {
  const param = "response_format";
  if (!isObject(format) || typeof format.type !== "string") {
    throw fieldError(param, `"response_format" must be an object with a "type"`);
  }
  switch (format.type) {
    case "text":
      return undefined;
    case "json_object":
      return format.schema === undefined || format.schema === null
        ? jsonObjectGrammar()
        : fromSchema(format.schema, param);
    case "json_schema": {
      const spec = format.json_schema;
      if (spec !== undefined && spec !== null && !isObject(spec)) {
        throw fieldError(param, `"response_format.json_schema" must be an object`);
      }
      const schema = spec?.schema ?? format.schema;
      if (schema === undefined || schema === null) {
        throw fieldError(param, `"response_format.json_schema.schema" is missing`);
      }
      if (spec?.strict !== undefined && spec.strict !== null && typeof spec.strict !== "boolean") {
        throw fieldError(param, `"response_format.json_schema.strict" must be a boolean`);
      }
      return fromSchema(schema, param);
    }
    default:
      throw fieldError(
        param,
        `Unsupported response_format type ${JSON.stringify(format.type)}; ` +
          `use "text", "json_object" or "json_schema"`,
      );
  }
}

/**
 * The grammar for a request's structured-output fields.
 *
 * @param fields `grammar`, `response_format` and `json_schema` as sent.
 * @returns GBNF text, or undefined when the output is free text.
 * @throws {StructuredOutputError} for a malformed field, a conflict, or a schema the converter cannot
 *   honour; `param` names the field.
 * @example
 * ```ts
 * structuredOutputGrammar({
 *   responseFormat: { type: "json_schema", json_schema: { name: "x", schema: { type: "boolean" } } },
 * }); // 'root ::= boolean\nboolean ::= "true" | "false"\n'
 * ```
 */
export function structuredOutputGrammar(fields: StructuredOutputFields): string | undefined {
  const { grammar, responseFormat, jsonSchema } = fields;
  if (grammar !== undefined && grammar !== null && typeof grammar !== "string") {
    throw fieldError("grammar", `"grammar" must be a string`);
  }
  const fromFormat = responseFormat === undefined || responseFormat === null
    ? undefined
    : responseFormatGrammar(responseFormat);
  const fromTop = jsonSchema === undefined || jsonSchema === null
    ? undefined
    : fromSchema(jsonSchema, "json_schema");
  const given = [
    grammar ? "grammar" : undefined,
    fromFormat !== undefined ? "response_format" : undefined,
    fromTop !== undefined ? "json_schema" : undefined,
  ].filter((x) => x !== undefined);
  if (given.length > 1) {
    throw fieldError(
      given[1]!,
      `Send only one of ${given.map((g) => `"${g}"`).join(" and ")}: each constrains the output`,
    );
  }
  return (grammar as string | undefined) || fromFormat || fromTop;
}
