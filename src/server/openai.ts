/**
 * OpenAI-compatible endpoints: `POST /v1/chat/completions`, `POST /v1/completions`,
 * `GET /v1/models`. Non-streaming JSON or SSE in OpenAI's chunk format, `usage` always real.
 *
 * @module
 */

import { LLAMA_CPP_VERSION, VERSION } from "../version.ts";
import type { ServerContext } from "./context.ts";
import {
  finishReasonOf,
  type PromptSource,
  startGeneration,
  timingsOf,
  usageOf,
} from "./generation_bridge.ts";
import { badRequest, HttpError } from "./http_error.ts";
import type { ModelEntry } from "../models/registry.ts";
import { chatMessages, Fields, readJsonBody, templateFields } from "./request_body.ts";
import { SSE_DONE, sseEvent, sseResponse } from "./sse.ts";
import { type ChatDelta, ChatOutputStream } from "../engine/tools/output_stream.ts";
import type { ChatOutputPlan } from "../engine/tools/plan.ts";
import type { GenerationResult } from "../engine/scheduler.ts";
import { assistantMessage, chatOutputRequest } from "./tool_calls.ts";

type Kind = "chat" | "text";

/** A reader of the output when the request has tools or the model reasons; else none. */
function outputReader(plan: ChatOutputPlan | undefined): ChatOutputStream | undefined {
  return plan && (plan.read.format || plan.read.reasoning)
    ? new ChatOutputStream(plan.read)
    : undefined;
}

/** `tool_calls` when the output holds complete calls and did not run out of tokens. */
function chatFinishReason(result: GenerationResult, calls: number): string {
  const base = finishReasonOf(result);
  return calls > 0 && base === "stop" ? "tool_calls" : base;
}

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

/** Names the server and llama.cpp build behind an answer (OpenAI's `system_fingerprint`). */
const SYSTEM_FINGERPRINT = `shimmy-${VERSION}-llama.cpp-${LLAMA_CPP_VERSION}`;

function promptOf(fields: Fields, kind: Kind, body: Record<string, unknown>): PromptSource {
  if (kind === "chat") {
    const tools = fields.raw("tools");
    const output = chatOutputRequest(fields);
    return {
      kind: "chat",
      messages: chatMessages(body.messages),
      // tool_choice "none": the model is not told about the tools.
      ...(Array.isArray(tools) && output.choice !== "none" ? { tools } : {}),
      template: templateFields(fields),
      output,
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
    const reader = kind === "chat" ? outputReader(started.output) : undefined;
    reader?.push(result.text);
    const output = reader?.finish(result.finishReason === "length").output;
    const choice = kind === "chat"
      ? {
        index: 0,
        message: output ? assistantMessage(output) : { role: "assistant", content: result.text },
        logprobs: null,
        finish_reason: chatFinishReason(result, output?.toolCalls.length ?? 0),
      }
      : { index: 0, text: result.text, logprobs: null, finish_reason: finishReasonOf(result) };
    return Response.json({
      id,
      object: kind === "chat" ? "chat.completion" : "text_completion",
      created,
      model,
      system_fingerprint: SYSTEM_FINGERPRINT,
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
      system_fingerprint: SYSTEM_FINGERPRINT,
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
    const reader = kind === "chat" ? outputReader(started.output) : undefined;
    const delta = (d: ChatDelta) => send(chunk({ index: 0, delta: d, finish_reason: null }));
    for await (const part of started.generation) {
      if (reader) reader.push(part.text).forEach(delta);
      else send(chunk(piece(part.text, null)));
    }
    const result = await started.result;
    if (reader) {
      const end = reader.finish(result.finishReason === "length");
      end.deltas.forEach(delta);
      send(chunk(piece("", chatFinishReason(result, end.output.toolCalls.length))));
    } else {
      send(chunk(piece("", finishReasonOf(result))));
    }
    if (gen.includeUsage) {
      send(sseEvent(JSON.stringify({
        id,
        object,
        created,
        model,
        system_fingerprint: SYSTEM_FINGERPRINT,
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
  return Response.json({
    object: "list",
    data: ctx.registry.list().map((e) => modelObject(ctx, e)),
  });
}

/**
 * `GET /v1/models/{id}`: one model in OpenAI's shape, or a 404 naming it.
 *
 * @param ctx Server state.
 * @param request The request; the id is the rest of the path after `models/`.
 * @returns The model object.
 * @throws {HttpError} 404 `model_not_found` when no model has that name.
 */
export function retrieveModel(ctx: ServerContext, request: Request): Response {
  const path = new URL(request.url).pathname.replace(/\/+$/, "");
  const id = decodeURIComponent(path.replace(/^\/(?:v1\/)?models\//, ""));
  const entry = ctx.registry.list().find((e) => e.name === id);
  if (!entry) {
    throw new HttpError(404, `The model "${id}" does not exist`, {
      code: "model_not_found",
      param: "model",
    });
  }
  return Response.json(modelObject(ctx, entry));
}

function modelObject(ctx: ServerContext, entry: ModelEntry) {
  return {
    id: entry.name,
    object: "model",
    created: Math.floor(Date.now() / 1000),
    owned_by: "shimmy",
    status: ctx.registry.state(entry.name),
  };
}
