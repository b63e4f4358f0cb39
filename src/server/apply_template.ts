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
import type { TemplateMessage } from "../engine/templates.ts";
import type { ServerContext } from "./context.ts";
import { templateOptions } from "./generation_bridge.ts";
import { chatContinuation } from "./chat_continuation.ts";
import { badRequest } from "./http_error.ts";
import {
  chatMessages,
  checkTokenIds,
  Fields,
  generationFields,
  readRequestJson,
  type TemplateFields,
  templateFields,
} from "./request_body.ts";
import { checkTemplateFields } from "./generation_request_fields.ts";
import { chatOutputRequest } from "./tool_calls.ts";
import type { ServedRequest } from "./served_request.ts";

/** What decides a chat request's prompt: its model, messages, tools and template settings. */
export interface PromptParts {
  /** The model named (the default one when undefined). */
  model: string | undefined;
  messages: TemplateMessage[];
  tools: unknown[] | undefined;
  template: TemplateFields;
  /**
   * Checks the request's other fields as a chat completion would (sampling, limits, tools and
   * tool choice, response format), against the model's vocabulary once it is known; where absent,
   * the request was checked whole when read.
   */
  checkFields?: (nVocab: number) => void;
}

/**
 * The prompt's parts of a chat request's fields.
 *
 * @param fields The chat request's fields.
 * @param messages Its messages, read.
 * @param prefill Whether a last message from the assistant is continued (see
 *   `chatContinuation`).
 * @returns The parts.
 * @throws {HttpError} 400 when `tools` is not an array, or a template field is malformed.
 */
export function promptParts(
  fields: Fields,
  messages: TemplateMessage[],
  prefill: boolean,
): PromptParts {
  const tools = fields.raw("tools");
  if (tools !== undefined && !Array.isArray(tools)) {
    throw badRequest('"tools" must be an array', "tools");
  }
  const continuation = chatContinuation(fields, messages, prefill);
  return {
    model: fields.string("model"),
    messages,
    tools,
    template: {
      ...templateFields(fields),
      ...(continuation ? { continueFinal: continuation.part } : {}),
    },
  };
}

/**
 * Reads a chat completion request body for its prompt alone (its other fields are checked, not
 * used).
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @returns The prompt's parts.
 * @throws {HttpError} 400 for a malformed body or a field a chat completion does not read.
 */
export async function readPromptRequest(
  ctx: ServerContext,
  request: ServedRequest,
): Promise<PromptParts> {
  const body = await readRequestJson(request, ctx.settings);
  checkTemplateFields(body);
  const fields = new Fields(body);
  const parts = promptParts(
    fields,
    chatMessages(body.messages),
    ctx.settings.prefillAssistant ?? true,
  );
  return {
    ...parts,
    checkFields: (nVocab) => {
      checkTokenIds(generationFields(fields), nVocab);
      chatOutputRequest(fields);
    },
  };
}

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
  const parts = await readPromptRequest(ctx, request);
  using lease = await ctx.registry.acquire(parts.model);
  parts.checkFields?.(lease.model.model.nVocab);
  const rendered = await renderChatPrompt(
    lease.model.model,
    parts.messages,
    ctx.settings.chatTemplate,
    parts.tools,
    { signal: clientGone, ...templateOptions(ctx, parts.template) },
  );
  return Response.json({ prompt: rendered.prompt });
}
