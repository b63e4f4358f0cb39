/**
 * Counting a request's input tokens without generating: OpenAI's `POST /v1/responses/input_tokens`
 * (the SDK's `responses.inputTokens.count`) and llama-server's
 * `POST /v1/chat/completions/input_tokens`. The body is a Responses or chat completion request;
 * the answer, `{"object": "response.input_tokens", "input_tokens": N}`, counts the prompt the
 * model would be given: its messages (and tools) rendered with its chat template, tokenized.
 *
 * @module
 */

import { chatPrompt } from "../engine/prompt.ts";
import type { ServerContext } from "./context.ts";
import { templateOptions } from "./generation_bridge.ts";
import { type PromptParts, promptParts, readPromptRequest } from "./apply_template.ts";
import { Fields, readRequestJson } from "./request_body.ts";
import { readResponsesRequest } from "./responses_request.ts";
import { storeOf } from "./responses.ts";
import type { ServedRequest } from "./served_request.ts";

/**
 * `POST /v1/responses/input_tokens`.
 *
 * @param ctx Server state.
 * @param request The HTTP request (a Responses request: `model`, `input`, `instructions`,
 *   `previous_response_id`, `tools`…).
 * @param clientGone Aborts when the client disconnects.
 * @returns The count.
 * @throws {HttpError} 400 as `POST /v1/responses` would refuse the request.
 */
export async function responsesInputTokens(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  const read = readResponsesRequest(body, storeOf(ctx));
  return await countAnswer(
    ctx,
    promptParts(new Fields(read.chat), read.messages, false),
    clientGone,
  );
}

/**
 * `POST /v1/chat/completions/input_tokens`.
 *
 * @param ctx Server state.
 * @param request The HTTP request (a chat completion request).
 * @param clientGone Aborts when the client disconnects.
 * @returns The count.
 * @throws {HttpError} 400 for a malformed request or a field a chat completion does not read.
 */
export async function chatInputTokens(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  return await countAnswer(ctx, await readPromptRequest(ctx, request), clientGone);
}

/** Renders and tokenizes the prompt a chat request would get, and answers its size. */
async function countAnswer(
  ctx: ServerContext,
  parts: PromptParts,
  clientGone: AbortSignal,
): Promise<Response> {
  using lease = await ctx.registry.acquire(parts.model);
  parts.checkFields?.(lease.model.model.nVocab);
  const prepared = await chatPrompt(
    lease.model.model,
    parts.messages,
    ctx.settings.chatTemplate,
    parts.tools,
    { signal: clientGone, ...templateOptions(ctx, parts.template) },
  );
  return Response.json({ object: "response.input_tokens", input_tokens: prepared.tokens.length });
}
