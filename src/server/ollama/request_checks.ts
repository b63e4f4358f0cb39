/**
 * Checks every Ollama endpoint applies to its body: no field it cannot honour passes
 * silently, and images (vision) are refused with a message that says so.
 *
 * @module
 */

import { badRequest } from "../http_error.ts";
import { type Fields, refuseUnknownFields } from "../request_body.ts";

/**
 * Refuses fields an endpoint does not take.
 *
 * @param body The parsed body.
 * @param allowed The fields the endpoint honours.
 * @param route The route, for the message.
 * @throws {HttpError} 400 naming the first unknown field (`images` gets the vision message).
 * @example
 * ```ts
 * checkFields({ model: "x", raw: true }, ["model"], "/api/embed"); // throws: "raw" …
 * ```
 */
export function checkFields(
  body: Record<string, unknown>,
  allowed: readonly string[],
  route: string,
): void {
  refuseImages(body.images, "images");
  refuseUnknownFields(body, new Set(allowed), route);
}

/**
 * Refuses images: Shimmy does not run vision models yet.
 *
 * @param value An `images` field.
 * @param where Where it was, for the message.
 * @throws {HttpError} 400 when it holds any image.
 * @example
 * ```ts
 * refuseImages(undefined, "images"); // fine
 * ```
 */
export function refuseImages(value: unknown, where: string): void {
  if (value === undefined || value === null) return;
  if (Array.isArray(value) && value.length === 0) return;
  throw badRequest(
    `"${where}": vision is not supported yet; Shimmy serves text models only, so send text`,
    "images",
  );
}

/**
 * The model a request names by `model` or by the older `name`, both checked to be strings.
 *
 * @param fields The body's fields.
 * @returns `model`, else `name`; undefined when neither is given.
 * @throws {HttpError} 400 naming a field that is not a string, even one the other hides.
 * @example
 * ```ts
 * modelOrName(new Fields({ name: "llama3" })); // "llama3"
 * ```
 */
export function modelOrName(fields: Fields): string | undefined {
  const model = fields.string("model");
  const name = fields.string("name");
  return model ?? name;
}
