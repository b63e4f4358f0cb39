/**
 * OpenAI-compatible endpoints: `POST /v1/chat/completions`, `POST /v1/completions`,
 * `GET /v1/models`. Non-streaming JSON or SSE in OpenAI's chunk format, `usage` always real.
 *
 * @module
 */

import type { ServerContext } from "./context.ts";
import {
  finishReasonOf,
  type PromptSource,
  startGeneration,
  timingsOf,
  usageOf,
} from "./generation_bridge.ts";
import { badRequest } from "./http_error.ts";
import { chatMessages, Fields, readJsonBody, templateFields } from "./request_body.ts";
import { SSE_DONE, sseEvent, sseResponse } from "./sse.ts";

type Kind = "chat" | "text";

function completionId(kind: Kind): string {
  const random = crypto.randomUUID().replaceAll("-", "").slice(0, 24);
  return `${kind === "chat" ? "chatcmpl" : "cmpl"}-${random}`;
}

/**
 * `POST /v1/chat/completions`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns JSON or an SSE stream.
 */
export function chatCompletions(
  ctx: ServerContext,
  request: Request,
  clientGone: AbortSignal,
): Promise<Response> {
  return complete(ctx, request, clientGone, "chat");
}

/**
 * `POST /v1/completions`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns JSON or an SSE stream.
 */
export function completions(
  ctx: ServerContext,
  request: Request,
  clientGone: AbortSignal,
): Promise<Response> {
  return complete(ctx, request, clientGone, "text");
}

function promptOf(fields: Fields, kind: Kind, body: Record<string, unknown>): PromptSource {
  if (kind === "chat") {
    const tools = fields.raw("tools");
    if (tools !== undefined && !Array.isArray(tools)) {
      throw badRequest('"tools" must be an array', "tools");
    }
    return {
      kind: "chat",
      messages: chatMessages(body.messages),
      ...(tools ? { tools } : {}),
      template: templateFields(fields),
    };
  }
  const prompt = fields.raw("prompt");
  if (typeof prompt === "string") return { kind: "raw", prompt };
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === "string") {
    return { kind: "raw", prompt: prompt[0] };
  }
  throw badRequest('"prompt" must be a string (one prompt per request)', "prompt");
}

async function complete(
  ctx: ServerContext,
  request: Request,
  clientGone: AbortSignal,
  kind: Kind,
): Promise<Response> {
  const body = await readJsonBody(request, { timeoutMs: ctx.settings.bodyTimeoutMs });
  const fields = new Fields(body);
  const source = promptOf(fields, kind, body);
  const abort = new AbortController();
  clientGone.addEventListener("abort", () => abort.abort(), { once: true });
  const started = await startGeneration(ctx, fields, source, abort.signal);
  const gen = started.fields;
  const entry = started.entry;
  const id = completionId(kind);
  const created = Math.floor(Date.now() / 1000);
  const model = entry.name;

  if (!gen.stream) {
    for await (const _ of started.generation) { /* collect via result */ }
    const result = await started.result;
    const choice = kind === "chat"
      ? {
        index: 0,
        message: { role: "assistant", content: result.text },
        logprobs: null,
        finish_reason: finishReasonOf(result),
      }
      : { index: 0, text: result.text, logprobs: null, finish_reason: finishReasonOf(result) };
    return Response.json({
      id,
      object: kind === "chat" ? "chat.completion" : "text_completion",
      created,
      model,
      choices: [choice],
      usage: usageOf(result),
      timings: timingsOf(result),
    });
  }

  const object = kind === "chat" ? "chat.completion.chunk" : "text_completion";
  const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    sseEvent(JSON.stringify({
      id,
      object,
      created,
      model,
      choices: [choice],
      ...(gen.includeUsage ? { usage: null } : {}),
      ...extra,
    }));
  const piece = (text: string, finish: string | null) =>
    kind === "chat"
      ? { index: 0, delta: text === "" && finish ? {} : { content: text }, finish_reason: finish }
      : { index: 0, text, logprobs: null, finish_reason: finish };

  return sseResponse(async (send) => {
    if (kind === "chat") {
      send(chunk({ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }));
    }
    for await (const part of started.generation) send(chunk(piece(part.text, null)));
    const result = await started.result;
    send(chunk(piece("", finishReasonOf(result))));
    if (gen.includeUsage) {
      send(sseEvent(JSON.stringify({
        id,
        object,
        created,
        model,
        choices: [],
        usage: usageOf(result),
        timings: timingsOf(result),
      })));
    }
    send(SSE_DONE);
  }, abort);
}

/**
 * `GET /v1/models`: every known model, loaded ones marked.
 *
 * @param ctx Server state.
 * @returns The OpenAI list.
 */
export function listModels(ctx: ServerContext): Response {
  const created = Math.floor(Date.now() / 1000);
  return Response.json({
    object: "list",
    data: ctx.registry.list().map((entry) => ({
      id: entry.name,
      object: "model",
      created,
      owned_by: "shimmy",
      status: ctx.registry.state(entry.name),
    })),
  });
}
