/**
 * `GET /props`: llama-server's description of the model it serves, which its clients read to size
 * their prompts (SillyTavern's llama.cpp mode reads `default_generation_settings.n_ctx`): the
 * context of one slot, the slots, the default generation settings, the chat template, BOS and EOS.
 * `?model=NAME` picks a model (loading it, as a request would); without it, the model a request
 * that names none gets. Changing settings through `POST /props` is not offered (405), as
 * llama-server refuses it unless started with `--props`.
 *
 * @module
 */

import { LLAMA_CPP_VERSION, VERSION } from "../version.ts";
import type { ServerContext } from "./context.ts";
import { generationSettings } from "./llama_completion.ts";
import type { ServedRequest } from "./served_request.ts";

/**
 * `GET /props`.
 *
 * @param ctx Server state.
 * @param request The HTTP request (`?model=NAME`).
 * @returns The model's properties, in llama-server's shape.
 * @throws {ModelNotFoundError} / {ModelRequiredError} (404 / 400) as a generation would.
 */
export async function props(ctx: ServerContext, request: ServedRequest): Promise<Response> {
  const name = new URL(request.url).searchParams.get("model") ?? undefined;
  using lease = await ctx.registry.acquire(name);
  const { entry, model: loaded } = lease;
  const model = loaded.model;
  const override = ctx.settings.chatTemplate;
  // A built-in family (`--chat-template chatml`) has no Jinja source to show.
  const template = override
    ? ("template" in override ? override.template : "")
    : model.chatTemplate();
  const token = (id: number) => id >= 0 ? model.tokenText(id) : "";
  const defaults = { sampling: {}, stop: [], ignoreEos: false, stream: false };
  // As there: the settings without the per-request lists (stop words, grammar, DRY's breakers).
  const { stop: _stop, grammar: _grammar, dry_sequence_breakers: _breakers, ...params } =
    generationSettings(defaults);
  return Response.json({
    default_generation_settings: {
      params,
      n_ctx: loaded.scheduler.slotContext,
    },
    total_slots: loaded.scheduler.stats().slots,
    model_alias: entry.name,
    model_path: entry.path,
    modalities: { vision: false, video: false, audio: false },
    endpoint_slots: true,
    endpoint_props: false,
    endpoint_metrics: true,
    chat_template: template ?? "",
    bos_token: token(model.bos),
    eos_token: token(model.eos),
    build_info: `shimmy ${VERSION} (llama.cpp ${LLAMA_CPP_VERSION})`,
    is_sleeping: false,
  });
}
