/**
 * Shimmy's native API, kept from the original: `POST /api/generate` (JSON, or SSE with one
 * `data:` event per piece and a final `data: [DONE]`), `GET /ws/generate` (WebSocket),
 * `GET /api/models`. (`GET /api/tags` and `GET /api/ps` answer in Ollama's shape: see
 * `ollama/routes.ts`.)
 *
 * SSE framing of `/api/generate`: each piece is one event; a piece containing line breaks is
 * sent as several `data:` lines, which SSE clients join back with "\n" (CR and CRLF arrive as
 * "\n"). As in the original Shimmy, `stream` defaults to true here (false on the OpenAI
 * endpoints), and `max_tokens` to {@link NATIVE_MAX_TOKENS} on both native endpoints.
 *
 * WebSocket protocol: the first text frame is the same JSON body as `/api/generate`; then one
 * text frame per piece; then a final `{"done":true,"finish_reason",usage,timings}` frame. A
 * client frame `{"stop":true}` cancels (the final frame then has `"stopped":true`). Bad JSON
 * gets an `{"error":{…}}` frame and a close with code 1003 (not JSON) or 1008 (bad request, or a
 * second request while the first generates); a message larger than the body limit, 1009 (the
 * connection guard refuses it from its frame header: see `websocket_frames.ts`); a stream that a
 * server shutdown cuts off, an error frame (`shutting_down`) and 1001 (going away); a full queue
 * or a busy model (503), 1013 (try again later); another failure, 1011.
 *
 * @module
 */

import { basename } from "node:path";
import type { ModelEntry } from "../models/registry.ts";
import type { ServerContext } from "./context.ts";
import {
  finishReasonOf,
  type PromptSource,
  startGeneration,
  timingsOf,
  usageOf,
} from "./generation_bridge.ts";
import { badRequest, errorBody, HttpError, toHttpError } from "./http_error.ts";
import {
  BODY_TIMEOUT_MS,
  chatMessages,
  Fields,
  parseJsonObject,
  readRequestJson,
} from "./request_body.ts";
import { SSE_DONE, sseEvent, sseResponse } from "./sse.ts";
import { followClient } from "./stream_body.ts";
import { closeReason } from "./websocket_frames.ts";
import { checkNativeFields } from "./generation_request_fields.ts";
import type { ServedRequest } from "./served_request.ts";

function promptOf(fields: Fields, body: Record<string, unknown>): PromptSource {
  const system = fields.string("system");
  const withSystem = (messages: PromptSource & { kind: "chat" }) =>
    system
      ? {
        kind: "chat" as const,
        messages: [{ role: "system", content: system }, ...messages.messages],
      }
      : messages;
  if (body.messages !== undefined && body.messages !== null) {
    return withSystem({ kind: "chat", messages: chatMessages(body.messages) });
  }
  const prompt = fields.string("prompt");
  if (prompt === undefined) throw badRequest('Send "prompt" or "messages"', "prompt");
  if (fields.boolean("raw") || !system) return { kind: "raw", prompt };
  return withSystem({ kind: "chat", messages: [{ role: "user", content: prompt }] });
}

/**
 * Tokens a native request generates when it names no limit: the original Shimmy's default, which
 * scripts written for it rely on (the OpenAI endpoints generate to the end of the context).
 */
export const NATIVE_MAX_TOKENS = 256;

function begin(ctx: ServerContext, request: Record<string, unknown>, signal: AbortSignal) {
  checkNativeFields(request);
  const limited = ["max_tokens", "max_completion_tokens", "n_predict"]
    .some((key) => request[key] !== undefined && request[key] !== null);
  const body = {
    ...request,
    stream: request.stream ?? true,
    ...(limited ? {} : { max_tokens: NATIVE_MAX_TOKENS }),
  };
  const fields = new Fields(body);
  return startGeneration(ctx, fields, promptOf(fields, body), signal);
}

/**
 * `POST /api/generate`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns `{response, …}` JSON, or an SSE stream of pieces.
 */
export async function apiGenerate(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  const abort = followClient(clientGone);
  const started = await begin(ctx, body, abort.signal);
  if (!started.fields.stream) {
    for await (const _ of started.generation) { /* the result carries the text */ }
    const result = await started.result;
    return Response.json({
      model: started.entry.name,
      response: result.text,
      done: true,
      finish_reason: finishReasonOf(result),
      usage: usageOf(result),
      timings: timingsOf(result),
    });
  }
  return sseResponse(async (send) => {
    for await (const part of started.generation) send(sseEvent(part.text));
    await started.result;
    send(SSE_DONE);
  }, abort);
}

/**
 * `GET /ws/generate`: upgrades to a WebSocket speaking the protocol in the module doc.
 *
 * @param ctx Server state.
 * @param request The upgrade request.
 * @returns The 101 response.
 */
export function wsGenerate(ctx: ServerContext, request: ServedRequest): Response {
  // The connection guard hands upgrades to Deno.serve, whose requests are `Request`s.
  if (
    !(request instanceof Request) || request.headers.get("upgrade")?.toLowerCase() !== "websocket"
  ) {
    throw new HttpError(426, "GET /ws/generate needs a WebSocket upgrade", {
      code: "upgrade_required",
      headers: { upgrade: "websocket" },
    });
  }
  if (!request.headers.get("sec-websocket-key")) {
    throw badRequest("A WebSocket upgrade needs a Sec-WebSocket-Key header");
  }
  let upgraded: ReturnType<typeof Deno.upgradeWebSocket>;
  try {
    upgraded = Deno.upgradeWebSocket(request);
  } catch (error) {
    // A header the handshake needs is missing or wrong (`Connection: Upgrade`, the version…).
    throw badRequest(`Not a valid WebSocket upgrade: ${(error as Error).message}`);
  }
  const { socket, response } = upgraded;
  const abort = new AbortController();
  const sessionEnded = ctx.activity.begin();
  let started = false;
  let stopped = false;
  const fail = (error: unknown, closeCode: number) => {
    if (socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify(errorBody(toHttpError(error))));
    socket.close(closeCode, closeReason(toHttpError(error).message));
  };
  // A socket that never sends its request would hold a connection for ever.
  const firstFrameMs = ctx.settings.bodyTimeoutMs ?? BODY_TIMEOUT_MS;
  const firstFrameTimer = setTimeout(() => {
    started = true;
    fail(
      new HttpError(408, `No request frame within ${firstFrameMs / 1000} s`, {
        code: "request_timeout",
      }),
      1008,
    );
  }, firstFrameMs);
  socket.onclose = () => {
    clearTimeout(firstFrameTimer);
    abort.abort();
    sessionEnded();
  };
  socket.onmessage = (event) => {
    clearTimeout(firstFrameTimer);
    if (started) {
      if (typeof event.data === "string" && isStopFrame(event.data)) {
        stopped = true;
        abort.abort();
        return;
      }
      abort.abort();
      return fail(
        new HttpError(
          400,
          'A socket carries one request: send {"stop":true} to cancel it, and open another ' +
            "socket for the next",
          { code: "request_in_progress" },
        ),
        1008,
      );
    }
    started = true;
    if (typeof event.data !== "string") {
      return fail(badRequest("The first frame must be a JSON text frame"), 1003);
    }
    let body: Record<string, unknown>;
    try {
      body = parseJsonObject(event.data);
    } catch (error) {
      return fail(error, 1003);
    }
    const run = async () => {
      const gen = await begin(ctx, body, abort.signal).catch((error) => {
        if (stopped) return undefined; // `{"stop":true}` came before the generation started
        throw error;
      });
      if (gen === undefined) {
        if (socket.readyState !== WebSocket.OPEN) return;
        socket.send(JSON.stringify({
          done: true,
          stopped: true,
          finish_reason: "stop",
          usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
        }));
        socket.close(1000, "done");
        return;
      }
      for await (const part of gen.generation) {
        if (socket.readyState === WebSocket.OPEN) socket.send(part.text);
      }
      const result = await gen.result;
      if (socket.readyState !== WebSocket.OPEN) return;
      const cancelled = stopped || result.finishReason === "cancelled";
      socket.send(JSON.stringify({
        done: true,
        stopped: cancelled,
        finish_reason: cancelled ? "stop" : finishReasonOf(result),
        usage: usageOf(result),
        timings: timingsOf(result),
      }));
      socket.close(1000, "done");
    };
    run().catch((error) => fail(error, closeCodeOf(toHttpError(error))));
  };
  return response;
}

function isStopFrame(text: string): boolean {
  try {
    const value = JSON.parse(text);
    return typeof value === "object" && value !== null && value.stop === true;
  } catch {
    return false;
  }
}

/** The model families the original Shimmy told apart, by the words that name them. */
const ORIGINAL_FAMILIES = ["Llama", "Phi", "Gemma", "Mistral", "Qwen"];

/**
 * A model's family as the original Shimmy's `model_type` gave it: from its file name, as there,
 * else from its architecture (`qwen2` is Qwen).
 */
function modelFamily(entry: ModelEntry): string {
  for (const text of [basename(entry.path), entry.architecture ?? ""]) {
    const family = ORIGINAL_FAMILIES.find((f) => text.toLowerCase().includes(f.toLowerCase()));
    if (family !== undefined) return family;
  }
  return "Unknown";
}

/**
 * A parameter count as the original Shimmy wrote it (`7B`): billions from half a billion on
 * (`0.5B`, `1.5B`), else millions (`135M`) or thousands (`234K`), one decimal under 10.
 */
function sizeLabel(parameters: number | undefined): string | null {
  if (parameters === undefined || parameters <= 0) return null;
  const [unit, scale] = parameters >= 5e8
    ? ["B", 1e9]
    : parameters >= 1e6
    ? ["M", 1e6]
    : ["K", 1e3];
  const value = parameters / scale;
  return `${value >= 10 ? Math.round(value) : Number(value.toFixed(1))}${unit}`;
}

/** One model as `GET /api/models` and `POST /api/models/discover` list it. */
function modelInfo(ctx: ServerContext, entry: ModelEntry) {
  const parameters = entry.parameterCount ??
    ctx.registry.loaded().get(entry.name)?.model.nParams;
  return {
    name: entry.name,
    size_bytes: entry.sizeBytes,
    model_type: modelFamily(entry),
    parameter_count: sizeLabel(parameters),
    source: entry.registered ? "registered" : "discovered",
    source_detail: entry.source,
    path: entry.path,
    loaded: ctx.registry.state(entry.name) === "loaded",
  };
}

/**
 * `GET /api/models`, in the original Shimmy's shape with Shimmy's own fields beside it.
 *
 * @param ctx Server state.
 * @returns `{models:[{name, size_bytes, model_type, parameter_count, source, source_detail,
 *   path, loaded}]}`.
 */
export function apiModels(ctx: ServerContext): Response {
  return Response.json({ models: ctx.registry.list().map((entry) => modelInfo(ctx, entry)) });
}

/**
 * `POST /api/models/discover`: searches the model folders again, adds the models found since the
 * start, forgets those not loaded whose file is gone, and lists them all as `GET /api/models`
 * does, with how many there are.
 *
 * @param ctx Server state.
 * @returns `{discovered, added, removed, models}`.
 * @throws {HttpError} 501 where the server was started without a way to search (tests).
 */
export async function discoverApiModels(ctx: ServerContext): Promise<Response> {
  if (!ctx.discover) {
    throw new HttpError(501, "This server cannot search for models again", {
      code: "not_implemented",
    });
  }
  const { added, removed } = await ctx.registry.refresh(await ctx.discover());
  const models = ctx.registry.list().map((entry) => modelInfo(ctx, entry));
  return Response.json({
    discovered: models.length,
    added: added.map((e) => e.name),
    removed,
    models,
  });
}

/** The WebSocket close code for a request that failed with this error. */
function closeCodeOf(error: HttpError): number {
  if (error.code === "shutting_down") return 1001; // going away
  if (error.status === 503) return 1013; // try again later: the queue is full, or the model busy
  return error.status < 500 ? 1008 : 1011;
}
