/**
 * `GET /v1/responses/{id}/input_items`: the input items of a stored response, as OpenAI lists
 * them (`client.responses.inputItems.list`): a page of items, each with an id, newest first by
 * default, with `limit`, `order`, `after` and `before`. A response's input items get their ids
 * when it is stored (`withItemIds`), so a later request can also name them in an
 * `item_reference`.
 *
 * @module
 */

import type { ServerContext } from "./context.ts";
import { badRequest } from "./http_error.ts";
import { storedResponse } from "./responses.ts";
import type { ServedRequest } from "./served_request.ts";

/** `/v1/responses/{id}/input_items` (and without `/v1`). */
export const INPUT_ITEMS_ROUTE = /^\/(?:v1\/)?responses\/([^/]+)\/input_items$/;

/** Most items one page may hold (`limit`), and the default. */
const MAX_LIMIT = 100;
const DEFAULT_LIMIT = 20;

/**
 * `GET /v1/responses/{id}/input_items`.
 *
 * @param ctx Server state.
 * @param request The request: `limit` (1–100, default 20), `order` (`desc`, the default, or
 *   `asc`), `after` and `before` (item ids bounding the page).
 * @returns `{object: "list", data, first_id, last_id, has_more}`.
 * @throws {HttpError} 404 for an unknown response, 400 for a bad parameter or an unknown item id.
 */
export function listInputItems(ctx: ServerContext, request: ServedRequest): Response {
  const { stored } = storedResponse(ctx, request, INPUT_ITEMS_ROUTE);
  const query = new URL(request.url).searchParams;
  for (const name of query.keys()) {
    if (!["limit", "order", "after", "before", "include"].includes(name)) {
      throw badRequest(`Unknown query parameter "${name}"`, name);
    }
  }
  if (query.getAll("include").length > 0) {
    throw badRequest('"include" has nothing to add: input items hold text only', "include");
  }
  const limit = Number(query.get("limit") ?? DEFAULT_LIMIT);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw badRequest(`"limit" must be an integer from 1 to ${MAX_LIMIT}`, "limit");
  }
  const order = query.get("order") ?? "desc";
  if (order !== "asc" && order !== "desc") {
    throw badRequest('"order" must be "asc" or "desc"', "order");
  }
  let items = order === "asc" ? stored.input : [...stored.input].reverse();
  const bound = (name: "after" | "before") => {
    const id = query.get(name);
    if (id === null) return undefined;
    const at = items.findIndex((item) => item.id === id);
    if (at < 0) throw badRequest(`"${name}": no input item "${id}" in this response`, name);
    return at;
  };
  const after = bound("after");
  const before = bound("before");
  items = items.slice(after === undefined ? 0 : after + 1, before);
  const data = items.slice(0, limit);
  return Response.json({
    object: "list",
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: items.length > data.length,
  });
}
