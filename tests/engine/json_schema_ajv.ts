/**
 * A real JSON Schema validator for tests: ajv (draft 2020-12 or draft-07) with ajv-formats'
 * full format checks.
 *
 * @module
 */

import Ajv07 from "ajv";
import Ajv2020 from "ajv/dist/2020";
import addFormats from "ajv-formats";

type Validate = ((value: unknown) => boolean) & { errors?: unknown };

// deno-lint-ignore no-explicit-any
const make = (Ctor: any) => {
  // deno-lint-ignore no-explicit-any
  const ajv = new Ctor({ strict: false, allErrors: true }) as any;
  // deno-lint-ignore no-explicit-any
  ((addFormats as any).default ?? addFormats)(ajv);
  return ajv;
};

const validators = {
  "2020": make((Ajv2020 as unknown as { default?: unknown }).default ?? Ajv2020),
  "07": make((Ajv07 as unknown as { default?: unknown }).default ?? Ajv07),
};

/**
 * Compiles a schema with ajv.
 *
 * @param schema The schema.
 * @param draft The dialect. Default "2020".
 * @returns A validating function; after a failure its `errors` say why.
 */
export function compileSchema(schema: unknown, draft: "07" | "2020" = "2020"): Validate {
  return validators[draft].compile(schema) as Validate;
}
