/**
 * Typed errors of structured output: a request field, a JSON schema or a pattern that Shimmy
 * cannot turn into a grammar. Both are {@link GenerationError}s with code `invalid_request`, so
 * the server answers HTTP 400, and both name the request field at fault once it is known.
 *
 * @module
 */

import { GenerationError } from "../errors.ts";

/**
 * A structured-output request field that is malformed or conflicts with another.
 *
 * @example
 * ```ts
 * throw new StructuredOutputError("response_format", 'Unsupported response_format type "sound"');
 * ```
 */
export class StructuredOutputError extends GenerationError {
  /** The request field at fault (`response_format`, `json_schema`, `grammar`), once known. */
  param: string | undefined;

  /**
   * @param param The request field at fault, if known.
   * @param message What is wrong and what to do.
   */
  constructor(param: string | undefined, message: string) {
    super("invalid_request", message);
    this.name = "StructuredOutputError";
    this.param = param;
  }
}

/**
 * A schema keyword the converter cannot honour, or an invalid schema.
 *
 * @example
 * ```ts
 * throw new SchemaError("uniqueItems", "/properties/tags", "is not supported");
 * // message: 'Unsupported JSON schema: "uniqueItems" at /properties/tags is not supported'
 * ```
 */
export class SchemaError extends StructuredOutputError {
  /** The keyword at fault, e.g. `uniqueItems`; empty when the problem is the schema's shape. */
  readonly keyword: string;
  /** JSON pointer of the subschema at fault ("" for the root). */
  readonly path: string;

  /**
   * @param keyword The keyword at fault, or "".
   * @param path JSON pointer of the subschema ("" for the root).
   * @param reason What is wrong and what to do.
   */
  constructor(keyword: string, path: string, reason: string) {
    const where = path === "" ? "" : ` at ${path}`;
    const what = keyword === "" ? `the schema${where}` : `"${keyword}"${where}`;
    super(undefined, `Unsupported JSON schema: ${what} ${reason}`);
    this.name = "SchemaError";
    this.keyword = keyword;
    this.path = path;
  }
}
