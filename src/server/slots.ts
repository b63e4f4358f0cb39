/**
 * `GET /slots`: llama-server's view of its slots, which load balancers and dashboards poll: each
 * slot's `id`, `n_ctx` and `is_processing`, and for a busy one how far its request is
 * (`n_prompt_tokens`, `n_prompt_tokens_processed`, `n_prompt_tokens_cache`, `next_token`). The
 * requests' prompts and outputs are not shown (llama-server shows them; here one client never
 * reads another's). `?fail_on_no_slot=1` answers 503 when every slot is busy. `?model=NAME` picks
 * a model; without it, the one a request that names none gets. A model not loaded has no slots
 * yet: an empty list, never a load.
 *
 * @module
 */

import type { ServerContext } from "./context.ts";
import { HttpError } from "./http_error.ts";
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
  const entry = ctx.registry.resolve(query.get("model") ?? undefined);
  const copies = ctx.registry.replicas().get(entry.name)?.copies ?? [];
  let first = 0;
  const views = copies.flatMap((copy) => {
    const nCtx = copy.scheduler.slotContext;
    const offset = first;
    const own = copy.scheduler.slotViews();
    first += own.length;
    return own.map(({ id, request }) => ({
      id: offset + id,
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
