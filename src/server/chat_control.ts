/**
 * llama-server's `POST /v1/chat/completions/control`: `{"id": "chatcmpl-…", "action":
 * "reasoning_end"}` ends the thinking of a chat completion that is being generated now, so that
 * it answers (a chat page's "stop thinking" button). The completion must have been asked with
 * `reasoning_control: true` (a thinking budget that this can end; see `reasoning_budget.ts`).
 * The answer is llama-server's: `{"success": true}`, or `{"success": false, "message": …}` for a
 * completion that is not running or was not asked that way.
 *
 * @module
 */

import type { ServerContext } from "./context.ts";
import { badRequest } from "./http_error.ts";
import { Fields, readRequestJson, refuseUnknownFields } from "./request_body.ts";
import type { ServedRequest } from "./served_request.ts";

/** A running completion that asked for `reasoning_control`. */
interface Controlled {
  end: AbortController;
  /** Whether its template writes thinking blocks (else there is nothing to end). */
  thinks: boolean;
}

/** The chat completions that can be told to end their thinking, by completion id. */
export class ReasoningControls {
  readonly #running = new Map<string, Controlled>();

  /**
   * Registers a completion while it runs.
   *
   * @param id Its completion id.
   * @returns The signal its thinking budget heeds, a setter for whether it thinks at all (known
   *   once its prompt is rendered), and the disposer that forgets it once it ends.
   */
  open(id: string): { signal: AbortSignal; thinks(yes: boolean): void } & Disposable {
    const entry: Controlled = { end: new AbortController(), thinks: true };
    this.#running.set(id, entry);
    return {
      signal: entry.end.signal,
      thinks: (yes) => void (entry.thinks = yes),
      [Symbol.dispose]: () => void this.#running.delete(id),
    };
  }

  /**
   * Ends a running completion's thinking.
   *
   * @param id Its completion id.
   * @returns llama-server's answer.
   */
  endReasoning(id: string): { success: boolean; message?: string } {
    const entry = this.#running.get(id);
    if (!entry) return { success: false, message: "no active completion for this id" };
    if (!entry.thinks) {
      return { success: false, message: "reasoning control not enabled for this completion" };
    }
    entry.end.abort();
    return { success: true };
  }
}

/** The server's controls, made on first use. */
export function reasoningControls(ctx: ServerContext): ReasoningControls {
  return ctx.reasoningControls ??= new ReasoningControls();
}

const CONTROL_FIELDS = new Set(["id", "action"]);

/**
 * `POST /v1/chat/completions/control` (also without `/v1`).
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @returns `{"success": …}`, with a `message` when it did nothing.
 * @throws {HttpError} 400 without an `id`, or for an action other than `reasoning_end`.
 */
export async function chatControl(ctx: ServerContext, request: ServedRequest): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  refuseUnknownFields(body, CONTROL_FIELDS, "/v1/chat/completions/control");
  const fields = new Fields(body);
  const id = fields.string("id") ?? "";
  if (id === "") throw badRequest('"id" is required: the chat completion\'s id', "id");
  if (fields.string("action") !== "reasoning_end") {
    throw badRequest('"action" must be "reasoning_end"', "action");
  }
  return Response.json(reasoningControls(ctx).endReasoning(id));
}
