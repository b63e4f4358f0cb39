/**
 * `GET /slots`: llama-server's view of its slots, which load balancers and dashboards poll: each
 * slot's `id`, `n_ctx` and `is_processing`, and for a busy one how far its request is
 * (`n_prompt_tokens`, `n_prompt_tokens_processed`, `n_prompt_tokens_cache`, `next_token`). The
 * requests' prompts and outputs are not shown (llama-server shows them; here one client never
 * reads another's). `?fail_on_no_slot=1` answers 503 when every slot is busy. `?model=NAME` picks
 * a model; without it, the one a request that names none gets. A model not loaded has no slots
 * yet: an empty list, never a load. `POST /slots/N?action=erase` empties slot N's cache (once
 * its request ends, as llama-server waits for it), so the next request there evaluates its whole
 * prompt: what benchmarks and agents use for cold runs. Saving a slot's cache to a file and
 * restoring it (`save`, `restore`) are not offered: 501.
 *
 * @module
 */

import type { ServerContext } from "./context.ts";
import { badRequest, HttpError } from "./http_error.ts";
import type { LoadedModel } from "../engine/loaded_model.ts";
import type { ServedRequest } from "./served_request.ts";

/**
 * `GET /slots`.
 *
 * @param ctx Server state.
 * @param request The HTTP request (`?model=NAME`, `?fail_on_no_slot=1`).
 * @returns The slots, in llama-server's shape (every copy's, numbered on from the first's).
 * @throws {HttpError} 503 `no_slot_available` with `fail_on_no_slot` when none is idle.
 */
export function slots(ctx: ServerContext, request: ServedRequest): Response {
  const query = new URL(request.url).searchParams;
  const views = loadedCopies(ctx, query).flatMap(({ copy, first }) => {
    const nCtx = copy.scheduler.slotContext;
    return copy.scheduler.slotViews().map(({ id, request }) => ({
      id: first + id,
      n_ctx: nCtx,
      speculative: false,
      is_processing: request !== undefined,
      ...(request
        ? {
          n_prompt_tokens: request.promptTokens,
          n_prompt_tokens_processed: request.promptDone - request.cachedTokens,
          n_prompt_tokens_cache: request.cachedTokens,
          next_token: [{
            has_next_token: request.remaining > 0,
            n_remain: request.remaining,
            n_decoded: request.generated,
          }],
        }
        : {}),
    }));
  });
  if (query.get("fail_on_no_slot") && views.length > 0 && views.every((v) => v.is_processing)) {
    throw new HttpError(503, "No slot is available: every slot is busy", {
      code: "no_slot_available",
    });
  }
  return Response.json(views);
}

/** The path of `POST /slots/N`. */
export const SLOT_ROUTE = /^\/slots\/([^/]+)$/;

/**
 * `POST /slots/N?action=erase`: empties slot N's cache, once its request (if any) has ended.
 *
 * @param ctx Server state.
 * @param request The HTTP request (`?action=erase`, `?model=NAME`).
 * @returns `{"id_slot": N, "n_erased": tokens}` (0 for a model not loaded: it caches nothing).
 * @throws {HttpError} 400 for a slot number the model does not have or another action, 501 for
 *   `save` and `restore`.
 */
export async function slotAction(ctx: ServerContext, request: ServedRequest): Promise<Response> {
  const url = new URL(request.url);
  const id = Number(SLOT_ROUTE.exec(url.pathname.replace(/\/+$/, ""))?.[1]);
  const action = url.searchParams.get("action");
  if (action === "save" || action === "restore") {
    throw new HttpError(
      501,
      `Slot "${action}" is not supported: a slot's cache is not kept in files`,
      {
        code: "not_supported",
      },
    );
  }
  if (action !== "erase") throw badRequest('"action" must be "erase"', "action");
  const copies = loadedCopies(ctx, url.searchParams);
  const slotCount = copies.reduce((sum, { copy }) => sum + copy.scheduler.stats().slots, 0);
  if (!Number.isInteger(id) || id < 0 || (copies.length > 0 && id >= slotCount)) {
    throw badRequest(
      `No slot ${url.pathname.slice(7)}: the slots are 0 to ${slotCount - 1}`,
      "id_slot",
    );
  }
  const owner = copies.findLast(({ first }) => first <= id);
  const erased = owner ? await owner.copy.scheduler.eraseSlot(id - owner.first) : 0;
  return Response.json({ id_slot: id, n_erased: erased });
}

/** A model's loaded copies, each with the number its first slot has in the server's list. */
function loadedCopies(
  ctx: ServerContext,
  query: URLSearchParams,
): { copy: LoadedModel; first: number }[] {
  const entry = ctx.registry.resolve(query.get("model") ?? undefined);
  let first = 0;
  return (ctx.registry.replicas().get(entry.name)?.copies ?? []).map((copy) => {
    const numbered = { copy, first };
    first += copy.scheduler.stats().slots;
    return numbered;
  });
}
