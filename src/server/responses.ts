/**
 * OpenAI's Responses API: `POST /v1/responses`, `GET /v1/responses/{id}`,
 * `DELETE /v1/responses/{id}`, `POST /v1/responses/{id}/cancel` (background responses,
 * `responses_background.ts`). A request is read into the same chat request as
 * `/v1/chat/completions` (responses_request.ts) and generated through the one generation path
 * (generation_bridge.ts); its output is read with the chat output reader (tool calls,
 * reasoning) and turned into Responses items (responses_output.ts). Streams are server-sent
 * events with an `event:` name per type and a `sequence_number`, from `response.created` to
 * `response.completed` (or `response.incomplete`); a failure after the stream began is an
 * `error` event followed by `response.failed`. Finished responses are kept in the server's
 * {@link ResponseStore} unless the request says `store: false`.
 *
 * @module
 */

import { pathId } from "./path_segment.ts";
import type { ServerContext } from "./context.ts";
import {
  type PromptSource,
  reasoningTokenCount,
  type StartedGeneration,
  startGeneration,
  usageOf,
} from "./generation_bridge.ts";
import { badRequest, HttpError } from "./http_error.ts";
import { Fields, readRequestJson, templateFields } from "./request_body.ts";
import { itemsSize, ResponseStore, type StoredResponse } from "./response_store.ts";
import { mebibytes } from "../util/bytes.ts";
import { type EmitEvent, itemId, ResponseOutput } from "./responses_output.ts";
import { readResponsesRequest, type ResponsesRequest } from "./responses_request.ts";
import { type Item, withItemIds } from "./responses_items.ts";
import { sseEvent, sseResponse } from "./sse.ts";
import { readChatGeneration } from "./chat_stream.ts";
import { chatOutputRequest } from "./tool_calls.ts";
import { followClient, type SendChunk } from "./stream_body.ts";
import { BackgroundRun } from "./responses_background.ts";
import type { ServedRequest } from "./served_request.ts";

/** The path of one stored response (also without `/v1`); the id is its last segment. */
export const RESPONSE_ROUTE = /^\/(?:v1\/)?responses\/([^/]+)$/;

/** `POST /v1/responses/{id}/cancel` (also without `/v1`). */
export const CANCEL_ROUTE = /^\/(?:v1\/)?responses\/([^/]+)\/cancel$/;

/**
 * The server's response store, created on first use when the context has none.
 *
 * @param ctx Server state.
 * @returns Its store.
 */
export function storeOf(ctx: ServerContext): ResponseStore {
  return ctx.responses ??= new ResponseStore();
}

/**
 * `POST /v1/responses`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns The response object as JSON, or its stream of events.
 * @throws {HttpError} 400 for what cannot be honoured, 404 for an unknown
 *   `previous_response_id`, and the generation path's errors.
 */
export async function createResponse(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  const store = storeOf(ctx);
  const asked = readResponsesRequest(body, store);
  if (asked.store) checkStorable(store, asked);
  const fields = new Fields(asked.chat);
  // A background response goes on when its client hangs up, until it is cancelled.
  const abort = asked.background ? new AbortController() : followClient(clientGone);
  const started = await start(ctx, fields, chatSource(asked, fields), abort.signal);
  const envelope = {
    id: itemId("resp"),
    created_at: Math.floor(Date.now() / 1000),
    model: started.entry.name,
  };
  const snapshot = (status: string, output: Item[], extra: Record<string, unknown> = {}) =>
    responseObject(envelope, asked, { status, output, ...extra });
  const input = withItemIds(asked.input);
  let output: ResponseOutput | undefined;
  const run = asked.background
    ? new BackgroundRun(
      abort,
      ctx.activity.begin(),
      () => snapshot("in_progress", output?.items ?? []),
    )
    : undefined;
  const keep = (response: Record<string, unknown>, output: Item[]) => {
    if (!asked.store) return;
    const items = [...asked.history, ...input, ...output];
    store.put(envelope.id, { response, input, items, ...(run ? { run } : {}) });
  };

  // One path, streamed or not: without a stream the events go nowhere.
  const finish = async (output: ResponseOutput, streaming: boolean) => {
    const final = await generate(started, output, streaming);
    const cancelled = asked.background && abort.signal.aborted;
    return snapshot(cancelled ? "cancelled" : final.status, output.items, final.extra);
  };
  // Kept after its last event: a background response's events are counted with it in the store.
  const keepEnded = (response: Record<string, unknown>, output: Item[]) => {
    if (!abort.signal.aborted || response.status === "cancelled") keep(response, output);
  };
  const summarize = { summarize: asked.summarize };
  if (!asked.stream && !asked.background) {
    const output = new ResponseOutput(() => {}, summarize);
    const response = await finish(output, false);
    keepEnded(response, output.items);
    return Response.json(response);
  }

  let sequence = 0;
  const event = (type: string, fields: Record<string, unknown>) =>
    sseEvent(JSON.stringify({ type, sequence_number: sequence++, ...fields }), type);
  const produce = async (send: SendChunk) => {
    const emit: EmitEvent = (type, fields) => send(event(type, fields));
    emit("response.created", { response: snapshot("in_progress", []) });
    emit("response.in_progress", { response: snapshot("in_progress", []) });
    output = new ResponseOutput(emit, summarize);
    const response = await finish(output, true);
    // A cancelled response's stream just ends: the API has no event for it.
    if (response.status !== "cancelled") emit(`response.${response.status}`, { response });
    keepEnded(response, output.items);
  };
  const fail = (error: HttpError, send: SendChunk) => {
    const { message, code, param } = error;
    const failed = snapshot("failed", output?.items ?? [], {
      error: { code: code ?? "server_error", message },
    });
    send(event("error", { code, message, param }));
    send(event("response.failed", { response: failed }));
    if (asked.background) keep(failed, output?.items ?? []);
  };
  if (!run) return sseResponse(produce, abort, fail);
  keep(snapshot("in_progress", []), []);
  void run.drive(produce, fail);
  return asked.stream
    ? await run.stream(-1, clientGone)
    : Response.json(snapshot("in_progress", []));
}

/**
 * Refuses, before anything is generated, a conversation (continued items and input) that alone is
 * more than the store keeps.
 */
function checkStorable(
  store: ResponseStore,
  asked: { history: Record<string, unknown>[]; input: Record<string, unknown>[] },
): void {
  const bytes = itemsSize(asked.history) + itemsSize(asked.input);
  if (bytes <= store.maxBytes) return;
  throw badRequest(
    `This conversation is ${mebibytes(bytes)} MiB, more than the ${
      mebibytes(store.maxBytes)
    } MiB the ` +
      "server keeps of stored responses; " +
      'send "store": false, or a shorter conversation',
    "store",
  );
}

/** Starts the generation; the grammar path's `response_format` errors name `text` here. */
async function start(
  ctx: ServerContext,
  fields: Fields,
  source: PromptSource,
  signal: AbortSignal,
): Promise<StartedGeneration> {
  try {
    return await startGeneration(ctx, fields, source, signal);
  } catch (error) {
    if (error instanceof HttpError && error.param === "response_format") {
      throw new HttpError(
        error.status,
        error.message.replaceAll("response_format", "text.format"),
        {
          param: "text",
          ...(error.code ? { code: error.code } : {}),
        },
      );
    }
    throw error;
  }
}

function chatSource(asked: ResponsesRequest, fields: Fields): PromptSource {
  const output = chatOutputRequest(fields);
  const tools = asked.chat.tools as unknown[];
  return {
    kind: "chat",
    messages: asked.messages,
    // tool_choice "none": the model is not told about the tools.
    ...(tools.length > 0 && output.choice !== "none" ? { tools } : {}),
    template: templateFields(fields),
    output,
  };
}

/**
 * Runs the generation into `output`, piece by piece when streaming.
 *
 * @returns The status, and the fields of the finished response (`usage`…).
 */
async function generate(started: StartedGeneration, output: ResponseOutput, streaming: boolean) {
  const { result, output: read } = await readChatGeneration(
    started,
    (delta) => output.push(delta),
    { streaming },
  );
  const truncated = result.finishReason === "length";
  output.finish({ completeCalls: read.toolCalls.length, truncated });
  const usage = usageOf(result);
  const reasoningTokens = await reasoningTokenCount(started, read.reasoning);
  return {
    status: truncated ? "incomplete" : "completed",
    extra: {
      ...(truncated
        ? { incomplete_details: { reason: "max_output_tokens" } }
        : { completed_at: Math.floor(Date.now() / 1000) }),
      usage: {
        input_tokens: usage.prompt_tokens,
        input_tokens_details: { cached_tokens: usage.prompt_tokens_details.cached_tokens },
        output_tokens: usage.completion_tokens,
        output_tokens_details: {
          reasoning_tokens: reasoningTokens,
        },
        total_tokens: usage.total_tokens,
      },
    },
  };
}

/** A response object in OpenAI's shape. */
function responseObject(
  envelope: { id: string; created_at: number; model: string },
  asked: ResponsesRequest,
  state: { status: string; output: Item[] } & Record<string, unknown>,
): Record<string, unknown> {
  const text = state.output.flatMap((item) =>
    item.type === "message" && Array.isArray(item.content)
      ? item.content.map((part) => part.text as string)
      : []
  ).join("");
  return {
    id: envelope.id,
    object: "response",
    created_at: envelope.created_at,
    completed_at: null,
    error: null,
    incomplete_details: null,
    model: envelope.model,
    background: asked.background,
    ...asked.echo,
    store: asked.store,
    usage: null,
    ...state,
    output_text: text,
  };
}

/**
 * The stored response a request's path names.
 *
 * @param ctx Server state.
 * @param request The request.
 * @param route The path's pattern; its first group is the id. Default {@link RESPONSE_ROUTE}.
 * @returns The id and the stored response.
 * @throws {HttpError} 404 when the id is unknown, deleted or expired.
 */
export function storedResponse(
  ctx: ServerContext,
  request: ServedRequest,
  route: RegExp = RESPONSE_ROUTE,
): { id: string; stored: StoredResponse } {
  const path = new URL(request.url).pathname.replace(/\/+$/, "");
  const id = pathId(path, route, "response_id");
  const stored = storeOf(ctx).get(id);
  if (!stored) {
    throw new HttpError(
      404,
      `Response with id "${id}" not found: it was not stored (store: false), was deleted, or ` +
        "expired",
      { param: "response_id", code: "response_not_found" },
    );
  }
  return { id, stored };
}

/**
 * `GET /v1/responses/{id}`: a stored response (a background one as it stands while it runs);
 * with `stream=true`, a background response's events after `starting_after`, then live.
 *
 * @param ctx Server state.
 * @param request The request; the id is the path's last segment.
 * @param clientGone Aborts when the client hangs up: a stream's wait for an event not sent yet
 *   ends.
 * @returns The response object, or its events.
 * @throws {HttpError} 404 when the id is unknown, deleted or expired; 400 for a stream of a
 *   response that was not made in the background, or a bad `starting_after` (one past the last
 *   event of a response that has ended included).
 */
export async function retrieveResponse(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const { stored } = storedResponse(ctx, request);
  const query = new URL(request.url).searchParams;
  if (query.get("stream") === "true") {
    if (!stored.run) {
      throw badRequest(
        "Only a background response (background: true) can be streamed again",
        "stream",
      );
    }
    const after = query.get("starting_after") ?? "-1";
    if (!/^-1$|^\d{1,9}$/.test(after)) {
      throw badRequest('"starting_after" must be an event\'s sequence number', "starting_after");
    }
    return await stored.run.stream(Number(after), clientGone);
  }
  const live = stored.run && !stored.run.done ? stored.run.current() : stored.response;
  return Response.json(live);
}

/**
 * `POST /v1/responses/{id}/cancel`: stops a background response (status `cancelled`); one that
 * has ended is returned as it is.
 *
 * @param ctx Server state.
 * @param request The request.
 * @returns The response object.
 * @throws {HttpError} 404 for an unknown id; 400 for a response not made in the background.
 */
export async function cancelResponse(
  ctx: ServerContext,
  request: ServedRequest,
): Promise<Response> {
  const { stored } = storedResponse(ctx, request, CANCEL_ROUTE);
  if (!stored.run) {
    throw badRequest(
      "Only a background response (background: true) can be cancelled",
      "response_id",
    );
  }
  if (!stored.run.done) await stored.run.cancel();
  return Response.json(storedResponse(ctx, request, CANCEL_ROUTE).stored.response);
}

/**
 * `DELETE /v1/responses/{id}`: forgets a stored response (a background one still running is
 * cancelled first).
 *
 * @param ctx Server state.
 * @param request The request; the id is the path's last segment.
 * @returns `{id, object: "response.deleted", deleted: true}`.
 * @throws {HttpError} 404 when the id is unknown, deleted or expired.
 */
export async function deleteResponse(
  ctx: ServerContext,
  request: ServedRequest,
): Promise<Response> {
  const { id, stored } = storedResponse(ctx, request);
  // A background response still running is stopped first, then forgotten.
  if (stored.run && !stored.run.done) await stored.run.cancel();
  storeOf(ctx).delete(id);
  return Response.json({ id, object: "response.deleted", deleted: true });
}
