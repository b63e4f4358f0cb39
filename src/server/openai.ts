/**
 * OpenAI-compatible endpoints: `POST /v1/chat/completions`, `POST /v1/completions`,
 * `GET /v1/models`. Non-streaming JSON or SSE in OpenAI's chunk format, `usage` always real.
 *
 * @module
 */

import { pathId } from "./path_segment.ts";
import { LLAMA_CPP_VERSION, VERSION } from "../version.ts";
import type { ServerContext } from "./context.ts";
import {
  finishReasonOf,
  type PromptSource,
  reasoningTokenCount,
  startChoices,
  type StartedGeneration,
  timingsOf,
  usageOf,
} from "./generation_bridge.ts";
import { chatContinuation } from "./chat_continuation.ts";
import { badRequest, HttpError } from "./http_error.ts";
import type { ModelEntry } from "../models/registry.ts";
import { chatMessages, Fields, readRequestJson, templateFields } from "./request_body.ts";
import { SSE_DONE, sseEvent, sseResponse } from "./sse.ts";
import type { ChatDelta } from "../engine/tools/output_stream.ts";
import type { GenerationChunk, GenerationResult } from "../engine/scheduler.ts";
import { readChatGeneration } from "./chat_stream.ts";
import { assistantMessage, chatOutputRequest } from "./tool_calls.ts";
import type { TokenLogprob } from "../engine/logprobs.ts";
import {
  chatLogprobs,
  chatLogprobsRequest,
  completionLogprobs,
  completionLogprobsRequest,
} from "./logprobs_wire.ts";
import { followClient } from "./stream_body.ts";
import { reasoningControls } from "./chat_control.ts";
import { foldForeignFields } from "./foreign_fields.ts";
import { checkOpenAiFields } from "./generation_request_fields.ts";
import type { ServedRequest } from "./served_request.ts";

type Kind = "chat" | "text";

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
  request: ServedRequest,
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
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  return complete(ctx, request, clientGone, "text");
}

/** Names the server and llama.cpp build behind an answer (OpenAI's `system_fingerprint`). */
const SYSTEM_FINGERPRINT = `shimmy-${VERSION}-llama.cpp-${LLAMA_CPP_VERSION}`;

/** Most prompts one `/v1/completions` request may carry (each is generated in its own slot). */
const MAX_PROMPTS = 64;

/**
 * The prompts of a request: the chat messages, or each prompt of `/v1/completions`, which takes
 * a string, token ids, or an array of either (one choice per prompt, in order). A chat whose last
 * message is the assistant's may continue it (`prefill`: the server's setting).
 */
function promptsOf(
  fields: Fields,
  kind: Kind,
  body: Record<string, unknown>,
  prefill: boolean,
): PromptSource[] {
  if (kind === "chat") return [chatSource(fields, body, prefill)];
  const sources = textPrompts(fields);
  const suffix = fields.string("suffix") ?? "";
  if (suffix === "") return sources;
  // OpenAI's insertion: each prompt is the text before the gap, `suffix` the text after it.
  return sources.map((source) => {
    if (source.kind !== "raw" || typeof source.prompt !== "string") {
      throw badRequest('"suffix" needs text prompts, not token ids', "suffix");
    }
    return { kind: "infill", parts: { prefix: source.prompt, suffix, middle: "", extra: [] } };
  });
}

/** `/v1/completions`' prompts: a string, token ids, or an array of either. */
function textPrompts(fields: Fields): PromptSource[] {
  const prompt = fields.raw("prompt");
  const wrong = () =>
    badRequest(
      '"prompt" must be a string, an array of token ids, or an array of strings or of token-id ' +
        "arrays",
      "prompt",
    );
  if (typeof prompt === "string") return [{ kind: "raw", prompt }];
  if (!Array.isArray(prompt) || prompt.length === 0) throw wrong();
  if (prompt.every(isTokenId)) return [{ kind: "raw", prompt: prompt as number[] }];
  if (prompt.length > MAX_PROMPTS) {
    throw badRequest(`At most ${MAX_PROMPTS} prompts per request (got ${prompt.length})`, "prompt");
  }
  return prompt.map((one) => {
    if (typeof one === "string") return { kind: "raw", prompt: one };
    if (Array.isArray(one) && one.length > 0 && one.every(isTokenId)) {
      return { kind: "raw", prompt: one as number[] };
    }
    throw wrong();
  });
}

function isTokenId(value: unknown): boolean {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function chatSource(
  fields: Fields,
  body: Record<string, unknown>,
  prefill: boolean,
): PromptSource {
  const tools = fields.raw("tools");
  const output = chatOutputRequest(fields);
  const messages = chatMessages(body.messages);
  const continuation = chatContinuation(fields, messages, prefill);
  return {
    kind: "chat",
    messages,
    // tool_choice "none": the model is not told about the tools.
    ...(Array.isArray(tools) && output.choice !== "none" ? { tools } : {}),
    template: {
      ...templateFields(fields),
      ...(continuation ? { continueFinal: continuation.part } : {}),
    },
    output: { ...output, ...(continuation ? { echoContinued: continuation.echo } : {}) },
  };
}

/**
 * For a chat completion asked with `reasoning_control`: registers it under its id while it runs,
 * so that `POST /v1/chat/completions/control` can end its thinking, and gives its thinking budget
 * the signal to heed.
 */
function reasoningControlOf(ctx: ServerContext, id: string, sources: PromptSource[]) {
  const budget = sources[0]?.kind === "chat" ? sources[0].output?.thinkingBudget : undefined;
  if (!budget?.controlled) return undefined;
  const control = reasoningControls(ctx).open(id);
  budget.endNow = control.signal;
  return control;
}

async function complete(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
  kind: Kind,
): Promise<Response> {
  const read = await readRequestJson(request, ctx.settings);
  // SillyTavern's generic text-completion mode sends other backends' fields too.
  const body = kind === "text" ? foldForeignFields(read, "openai") : read;
  checkOpenAiFields(body, kind);
  const fields = new Fields(body);
  const sources = promptsOf(fields, kind, body, ctx.settings.prefillAssistant ?? true);
  const logprobs = kind === "chat"
    ? chatLogprobsRequest(fields)
    : completionLogprobsRequest(fields);
  const abort = followClient(clientGone);
  const id = completionId(kind);
  const control = reasoningControlOf(ctx, id, sources);
  // Choice i*n+j is the j-th of the n choices of prompt i.
  let all: StartedGeneration[];
  try {
    all = await startAll(ctx, fields, sources, abort, logprobs);
  } catch (error) {
    control?.[Symbol.dispose]();
    throw error;
  }
  const first = all[0] as StartedGeneration;
  const gen = first.fields;
  if (control) {
    control.thinks(first.output?.thinking !== undefined);
    void Promise.allSettled(all.map((started) => started.result)).finally(() =>
      control[Symbol.dispose]()
    );
  }
  const created = Math.floor(Date.now() / 1000);
  const model = first.entry.name;
  const envelope = { id, created, model, system_fingerprint: SYSTEM_FINGERPRINT };
  const bytesOf = (token: number) => first.loaded.model.tokenBytes(token);

  if (!gen.stream) {
    // Completions have no output plan: their output is the text, read the same way.
    const read = await Promise.all(
      all.map((started) => readChatGeneration(started, () => {}, { streaming: false })),
    );
    const results = read.map((r) => r.result);
    const reasoning = await Promise.all(
      read.map(({ output }, i) => reasoningTokenCount(all[i]!, output.reasoning)),
    );
    const choices = read.map(({ result, output }, index) => {
      if (kind !== "chat") {
        return {
          index,
          text: result.text,
          logprobs: result.logprobs ? completionLogprobs(bytesOf, result.logprobs) : null,
          finish_reason: finishReasonOf(result),
        };
      }
      return {
        index,
        message: assistantMessage(output),
        logprobs: result.logprobs
          ? { content: chatLogprobs(bytesOf, result.logprobs), refusal: null }
          : null,
        finish_reason: chatFinishReason(result, output.toolCalls.length),
      };
    });
    return Response.json({
      ...envelope,
      object: kind === "chat" ? "chat.completion" : "text_completion",
      choices,
      usage: kind === "chat" ? chatUsage(results, reasoning) : usageOf(...results),
      timings: timingsOf(results[0] as GenerationResult),
    });
  }

  const object = kind === "chat" ? "chat.completion.chunk" : "text_completion";
  const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    sseEvent(JSON.stringify({
      ...envelope,
      object,
      choices: [choice],
      ...(gen.includeUsage ? { usage: null } : {}),
      ...extra,
    }));

  return sseResponse(async (send) => {
    const reasoning: number[] = all.map(() => 0);
    // One generation per choice; their pieces interleave as they are generated.
    const results = await Promise.all(all.map(async (started, index) => {
      // Log-probabilities ride on the next chunk sent after their tokens.
      let pending: TokenLogprob[] = [];
      let textSent = 0;
      const logprobsOf = (text: string) => {
        if (logprobs === undefined) return null;
        const steps = pending;
        pending = [];
        const offset = textSent;
        textSent += text.length;
        return kind === "chat"
          ? { content: chatLogprobs(bytesOf, steps), refusal: null }
          : completionLogprobs(bytesOf, steps, offset);
      };
      const onChunk = (part: GenerationChunk) => {
        if (part.logprobs) pending.push(...part.logprobs);
      };
      if (kind === "chat") {
        send(chunk({ index, delta: { role: "assistant", content: "" }, finish_reason: null }));
        const delta = (d: ChatDelta, finish: string | null = null) =>
          send(chunk({ index, delta: d, logprobs: logprobsOf(""), finish_reason: finish }));
        const { result, output } = await readChatGeneration(started, delta, {
          streaming: true,
          onChunk,
        });
        delta({}, chatFinishReason(result, output.toolCalls.length));
        if (gen.includeUsage) {
          reasoning[index] = await reasoningTokenCount(started, output.reasoning);
        }
        return result;
      }
      const piece = (text: string, finish: string | null) =>
        send(chunk({ index, text, logprobs: logprobsOf(text), finish_reason: finish }));
      for await (const part of started.generation) {
        onChunk(part);
        piece(part.text, null);
      }
      const result = await started.result;
      piece("", finishReasonOf(result));
      return result;
    }));
    if (gen.includeUsage) {
      send(sseEvent(JSON.stringify({
        ...envelope,
        object,
        choices: [],
        usage: kind === "chat" ? chatUsage(results, reasoning) : usageOf(...results),
        timings: timingsOf(results[0] as GenerationResult),
      })));
    }
    send(SSE_DONE);
  }, abort);
}

/**
 * Chat's usage: the counts of {@link usageOf}, and how many of the completion's tokens were
 * reasoning (OpenAI's `completion_tokens_details`, which the AI SDK and LangChain report).
 */
function chatUsage(results: GenerationResult[], reasoning: readonly number[]) {
  const reasoning_tokens = reasoning.reduce((sum, n) => sum + n, 0);
  return { ...usageOf(...results), completion_tokens_details: { reasoning_tokens } };
}

/**
 * Starts every prompt's choices. If one cannot start, the others are cancelled and its error
 * is thrown.
 */
async function startAll(
  ctx: ServerContext,
  fields: Fields,
  sources: PromptSource[],
  abort: AbortController,
  logprobs: number | undefined,
): Promise<StartedGeneration[]> {
  // Several prompts take turns with other requests in the queue rather than all going first.
  const group = sources.length > 1 ? {} : undefined;
  const starts = sources.map((source) =>
    startChoices(ctx, fields, group ? { ...source, group } : source, abort.signal, logprobs)
  );
  const settled = await Promise.allSettled(starts);
  const failed = settled.find((s) => s.status === "rejected");
  if (failed) {
    abort.abort();
    throw failed.reason;
  }
  return settled.flatMap((s) => (s as PromiseFulfilledResult<StartedGeneration[]>).value);
}

/**
 * `GET /v1/models`: every known model, loaded ones marked, in a list that both OpenAI's and
 * Anthropic's SDKs read (Anthropic's `has_more`, `first_id`, `last_id` beside OpenAI's fields).
 *
 * @param ctx Server state.
 * @returns The list.
 */
export function listModels(ctx: ServerContext): Response {
  const data = ctx.registry.list().map((e) => modelObject(ctx, e));
  return Response.json({
    object: "list",
    data,
    has_more: false,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
  });
}

/** The path of `GET /v1/models/{id}` (also without `/v1`); the id is everything after `models/`. */
export const MODEL_ROUTE = /^\/(?:v1\/)?models\/(.+)$/;

/**
 * `GET /v1/models/{id}`: one model in OpenAI's shape, or a 404 naming it.
 *
 * @param ctx Server state.
 * @param request The request; the id is the rest of the path after `models/`.
 * @returns The model object.
 * @throws {HttpError} 404 `model_not_found` when no model has that name.
 */
export function retrieveModel(ctx: ServerContext, request: ServedRequest): Response {
  const path = new URL(request.url).pathname.replace(/\/+$/, "");
  const id = pathId(path, MODEL_ROUTE, "model");
  const entry = ctx.registry.list().find((e) => e.name === id);
  if (!entry) {
    throw new HttpError(404, `The model "${id}" does not exist`, {
      code: "model_not_found",
      param: "model",
    });
  }
  return Response.json(modelObject(ctx, entry));
}

/** A model in OpenAI's shape and Anthropic's (`type`, `display_name`, `created_at`) at once. */
function modelObject(ctx: ServerContext, entry: ModelEntry) {
  const created = Math.floor(Date.now() / 1000);
  return {
    id: entry.name,
    object: "model",
    created,
    owned_by: "shimmy",
    status: ctx.registry.state(entry.name),
    type: "model",
    display_name: entry.name,
    created_at: new Date(created * 1000).toISOString(),
  };
}
