/**
 * `POST /apply-template`: the same route and shape as llama-server's. A chat request goes in
 * (`model`, `messages`, `tools`, `chat_template_kwargs`, `reasoning_effort`,
 * `add_generation_prompt`), `{"prompt": "..."}` comes out: the exact text the model would be
 * given, rendered with its chat template (or `--chat-template`), nothing generated. It is the
 * way to see and debug a template.
 *
 * @module
 */

import { renderChatPrompt } from "../engine/prompt.ts";
import type { ServerContext } from "./context.ts";
import { templateOptions } from "./generation_bridge.ts";
import { badRequest } from "./http_error.ts";
import { chatMessages, Fields, readRequestJson, templateFields } from "./request_body.ts";
import { checkTemplateFields } from "./generation_request_fields.ts";
import type { ServedRequest } from "./served_request.ts";

/**
 * `POST /apply-template`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns `{"prompt": "..."}`.
 * @throws {HttpError} 400 for a malformed request; a template that fails is a 400 too.
 */
export async function applyTemplate(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  checkTemplateFields(body);
  const fields = new Fields(body);
  const tools = fields.raw("tools");
  if (tools !== undefined && !Array.isArray(tools)) {
    throw badRequest('"tools" must be an array', "tools");
  }
  const messages = chatMessages(body.messages);
  const template = templateFields(fields);
  using lease = await ctx.registry.acquire(fields.string("model"));
  const rendered = await renderChatPrompt(
    lease.model.model,
    messages,
    ctx.settings.chatTemplate,
    tools,
    { signal: clientGone, ...templateOptions(ctx, template) },
  );
  return Response.json({ prompt: rendered.prompt });
}
