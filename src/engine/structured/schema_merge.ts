/**
 * The schema-level pieces of the JSON-Schema converter: which keywords it honours and which
 * it may ignore, `$ref` resolution inside the request's schema, and `allOf` merging (the
 * branches become one schema: properties united, bounds tightened, types intersected, and
 * where a branch forbids additional properties only the properties it lists survive).
 *
 * @module
 */

import { SchemaError } from "./errors.ts";

/** A JSON schema object. */
export type SchemaObject = Record<string, unknown>;

/** Keywords that only describe, and never constrain, a value. */
export const ANNOTATIONS: ReadonlySet<string> = new Set([
  "title",
  "description",
  "$schema",
  "$id",
  "$comment",
  "$defs",
  "definitions",
  "default",
  "examples",
  "example",
  "deprecated",
  "readOnly",
  "writeOnly",
  "contentMediaType",
  "contentEncoding",
  "discriminator",
  "strict",
]);

/** Keywords that only objects take (a schema without `type` that uses one is an object). */
export const OBJECT_KEYWORDS: readonly string[] = [
  "properties",
  "required",
  "additionalProperties",
  "propertyNames",
  "minProperties",
  "maxProperties",
];
/** Keywords that only arrays take. */
export const ARRAY_KEYWORDS: readonly string[] = [
  "items",
  "prefixItems",
  "additionalItems",
  "minItems",
  "maxItems",
];
/** Keywords that only strings take. */
export const STRING_KEYWORDS: readonly string[] = ["minLength", "maxLength", "pattern", "format"];
/** Keywords that only numbers take. */
export const NUMBER_KEYWORDS: readonly string[] = [
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
];

/** Keywords the converter honours. */
export const SUPPORTED: ReadonlySet<string> = new Set([
  "type",
  "nullable",
  "enum",
  "const",
  "$ref",
  "allOf",
  "anyOf",
  "oneOf",
  ...OBJECT_KEYWORDS,
  ...ARRAY_KEYWORDS,
  "uniqueItems",
  ...STRING_KEYWORDS,
  ...NUMBER_KEYWORDS,
]);

/** Whether a value is a JSON object (not an array, not null). */
export function isObject(value: unknown): value is SchemaObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Checks that a schema holds only keywords the converter honours or may ignore.
 *
 * @param schema A schema object.
 * @param path Its JSON pointer.
 * @throws {SchemaError} naming the first keyword it cannot honour.
 */
export function checkKeywords(schema: SchemaObject, path: string): void {
  for (const key of Object.keys(schema)) {
    if (SUPPORTED.has(key) || ANNOTATIONS.has(key)) continue;
    throw new SchemaError(key, path, "is not supported; remove it or express it another way");
  }
  if (schema.uniqueItems === true) {
    throw new SchemaError("uniqueItems", path, "is not supported (a grammar cannot enforce it)");
  }
}

/** The keywords of a schema that constrain values (annotations left out). */
export function constraints(schema: SchemaObject): SchemaObject {
  return Object.fromEntries(Object.entries(schema).filter(([k]) => !ANNOTATIONS.has(k)));
}

/**
 * Resolves a local `$ref` (`#`, `#/$defs/Name`, `#/definitions/Name`, any JSON pointer).
 *
 * @param root The request's whole schema.
 * @param ref The reference.
 * @param path Where the reference sits, for errors.
 * @returns The target schema and its pointer.
 * @throws {SchemaError} for remote references and pointers that lead nowhere.
 */
export function resolveRef(
  root: unknown,
  ref: unknown,
  path: string,
): { target: unknown; pointer: string } {
  if (typeof ref !== "string" || !ref.startsWith("#")) {
    throw new SchemaError(
      "$ref",
      path,
      `${
        JSON.stringify(ref)
      } is not supported: only references inside the schema ("#/$defs/Name") are`,
    );
  }
  let pointer: string;
  try {
    pointer = decodeURIComponent(ref.slice(1));
  } catch {
    throw new SchemaError("$ref", path, `${JSON.stringify(ref)} is not a valid reference`);
  }
  if (pointer !== "" && !pointer.startsWith("/")) {
    throw new SchemaError("$ref", path, `${JSON.stringify(ref)}: anchors are not supported`);
  }
  let target: unknown = root;
  for (const raw of pointer === "" ? [] : pointer.slice(1).split("/")) {
    const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    const next = isObject(target) || Array.isArray(target)
      ? (target as Record<string, unknown>)[key]
      : undefined;
    if (next === undefined || !Object.hasOwn(target as object, key)) {
      throw new SchemaError("$ref", path, `${JSON.stringify(ref)} points to nothing`);
    }
    target = next;
  }
  return { target, pointer };
}

/**
 * Deep equality of JSON values (object key order ignored).
 *
 * @param a A JSON value.
 * @param b Another.
 * @returns Whether they are the same value.
 * @example
 * ```ts
 * jsonEqual({ a: 1, b: [2] }, { b: [2], a: 1 }); // true
 * ```
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length &&
      keys.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

/**
 * A JSON value's text with object keys sorted, the same for values that {@link jsonEqual} finds
 * equal.
 */
function canonicalJson(value: unknown): string {
  const sorted = (_key: string, v: unknown) =>
    isObject(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v;
  return JSON.stringify(value, sorted) ?? "undefined";
}

const LOWER_BOUNDS = new Set(["minimum", "minLength", "minItems", "minProperties"]);
const UPPER_BOUNDS = new Set(["maximum", "maxLength", "maxItems", "maxProperties"]);

function typeList(value: unknown): string[] {
  return Array.isArray(value) ? value.map(String) : [String(value)];
}

function intersectTypes(a: unknown, b: unknown, path: string): unknown {
  const left = typeList(a);
  const right = typeList(b);
  const out = new Set<string>();
  for (const t of left) {
    if (right.includes(t)) out.add(t);
    else if (t === "integer" && right.includes("number")) out.add("integer");
    else if (t === "number" && right.includes("integer")) out.add("integer");
  }
  if (out.size === 0) {
    throw new SchemaError("allOf", path, `combines types ${left} and ${right}, which no value has`);
  }
  return out.size === 1 ? [...out][0] : [...out];
}

/** Merges one keyword of two `allOf` branches. */
function mergeKeyword(key: string, a: unknown, b: unknown, path: string): unknown {
  if (jsonEqual(a, b) || ANNOTATIONS.has(key)) return a;
  if (LOWER_BOUNDS.has(key) && typeof a === "number" && typeof b === "number") {
    return Math.max(a, b);
  }
  if (UPPER_BOUNDS.has(key) && typeof a === "number" && typeof b === "number") {
    return Math.min(a, b);
  }
  if (key === "exclusiveMinimum" && typeof a === "number" && typeof b === "number") {
    return Math.max(a, b);
  }
  if (key === "exclusiveMaximum" && typeof a === "number" && typeof b === "number") {
    return Math.min(a, b);
  }
  switch (key) {
    case "type":
      return intersectTypes(a, b, path);
    case "required":
      return [...new Set([...(a as string[]), ...(b as string[])])];
    case "enum": {
      if (!Array.isArray(a) || !Array.isArray(b)) break;
      const inB = new Set(b.map(canonicalJson));
      const both = a.filter((x) => inB.has(canonicalJson(x)));
      if (both.length === 0) {
        throw new SchemaError("allOf", path, "combines enums with no value in common");
      }
      return both;
    }
    case "properties": {
      const out: SchemaObject = Object.assign(Object.create(null), a);
      for (const [name, schema] of Object.entries(b as SchemaObject)) {
        out[name] = Object.hasOwn(out, name) ? { allOf: [out[name], schema] } : schema;
      }
      return out;
    }
    case "additionalProperties":
      if (a === false || b === false) return false;
      if (a === true) return b;
      if (b === true) return a;
      return { allOf: [a, b] };
    case "items":
    case "propertyNames":
      if (isObject(a) && isObject(b)) return { allOf: [a, b] };
  }
  throw new SchemaError(
    key,
    path,
    "has different values in allOf branches, which cannot be combined",
  );
}

/**
 * Merges the branches of an `allOf` (each already free of `$ref`) into one schema.
 *
 * @param branches The branches, and the keywords beside `allOf`, as schema objects.
 * @param path Where the `allOf` sits.
 * @returns One schema that every branch's constraints hold in.
 * @throws {SchemaError} when branches conflict in a way the converter cannot combine.
 * @example
 * ```ts
 * mergeAllOf([{ properties: { a: {} } }, { properties: { b: {} }, required: ["b"] }], "");
 * // { properties: { a: {}, b: {} }, required: ["b"] }
 * ```
 */
export function mergeAllOf(branches: readonly SchemaObject[], path: string): SchemaObject {
  // Keys set one by one (a copy per key took 73 s for 20,000 keys); no prototype, so that a key
  // "__proto__" is a key like any other.
  let out: SchemaObject = Object.create(null);
  for (const branch of branches) {
    for (const [key, value] of Object.entries(branch)) {
      out[key] = Object.hasOwn(out, key) ? mergeKeyword(key, out[key], value, path) : value;
    }
  }
  // A branch that forbids additional properties allows only its own properties.
  const closed = branches.filter((b) => b.additionalProperties === false);
  if (closed.length > 0 && isObject(out.properties)) {
    const allowed = (name: string) =>
      closed.every((b) => isObject(b.properties) && Object.hasOwn(b.properties, name));
    const properties = Object.fromEntries(
      Object.entries(out.properties).filter(([n]) => allowed(n)),
    );
    const lost = ((out.required ?? []) as string[]).filter((n) => !allowed(n));
    if (lost.length > 0) {
      throw new SchemaError(
        "allOf",
        path,
        `requires ${
          JSON.stringify(lost[0])
        }, which a branch with additionalProperties: false forbids`,
      );
    }
    out = { ...out, properties };
  }
  return out;
}
