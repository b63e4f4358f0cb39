/**
 * An id taken from a request's path (`/v1/models/{id}`, `/v1/responses/{id}`), percent-decoded.
 *
 * @module
 */

import { HttpError } from "./http_error.ts";

/**
 * The first group of `route` in `path`, percent-decoded.
 *
 * @param path The request's path.
 * @param route The route's pattern; its first group is the id.
 * @param param The id's name in an error (`model`, `response_id`).
 * @returns The id; "" when the route has none.
 * @throws {HttpError} 400 when the id is not valid percent-encoding (`%ZZ`).
 * @example
 * ```ts
 * pathId("/v1/models/a%2Fb", /^\/v1\/models\/(.+)$/, "model"); // "a/b"
 * ```
 */
export function pathId(path: string, route: RegExp, param: string): string {
  const raw = route.exec(path)?.[1] ?? "";
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, `The ${param} in the path, "${raw}", is not valid percent-encoding`, {
      param,
    });
  }
}
