/**
 * Ollama's way to load or unload a model without generating: a chat with no messages or a
 * generate with no prompt loads the model (`done_reason: "load"`), or with `keep_alive: 0`
 * unloads it (`done_reason: "unload"`).
 *
 * @module
 */

import type { ServerContext } from "../context.ts";
import { NDJSON_HEADERS } from "./ndjson.ts";
import type { OllamaFields } from "./options.ts";

/**
 * Loads or unloads a model, answering in the endpoint's shape.
 *
 * @param ctx Server state.
 * @param model The resolved model name.
 * @param request The request's mapped fields (`keep_alive`).
 * @param kind The endpoint: its reply has `message` (chat) or `response` (generate).
 * @returns The one `done` object (a one-line NDJSON stream when `stream` is on).
 * @throws {ModelUnavailableError} (503) when it cannot be loaded, or is busy when unloading.
 * @example
 * ```ts
 * await loadOrUnload(ctx, "tiny-f32", { ...fields, keepAliveMs: 0 }, "generate");
 * ```
 */
export async function loadOrUnload(
  ctx: ServerContext,
  model: string,
  request: OllamaFields,
  kind: "chat" | "generate",
): Promise<Response> {
  let reason: "load" | "unload";
  if (request.keepAliveMs === 0) {
    await ctx.registry.unload(model);
    reason = "unload";
  } else {
    (await ctx.registry.acquire(model)).release();
    if (request.keepAliveMs !== undefined) ctx.registry.setKeepAlive(model, request.keepAliveMs);
    reason = "load";
  }
  const empty = kind === "chat"
    ? { message: { role: "assistant", content: "" } }
    : { response: "" };
  const reply = {
    model,
    created_at: new Date().toISOString(),
    ...empty,
    done: true,
    done_reason: reason,
  };
  // Streamed, it is a stream of that one line.
  return request.stream
    ? new Response(JSON.stringify(reply) + "\n", { headers: NDJSON_HEADERS })
    : Response.json(reply);
}
