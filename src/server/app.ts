/**
 * The HTTP application: the Host/Origin policy, auth, routing, the JSON content-type rule, CORS,
 * the error boundary and request metrics, as one `Request → Response` function (tests call it
 * in-process; `shimmy serve` hands it to the connection guard). Checks run in that order, so
 * nothing about routes is revealed to a request that fails an earlier one.
 *
 * @module
 */

import { runtimeInfo } from "../engine/diagnostics.ts";
import { LLAMA_CPP_VERSION, VERSION } from "../version.ts";
import type { LoadedModel } from "../engine/loaded_model.ts";
import { promptTokenCache } from "../engine/prompt_token_cache.ts";
import type { ServerContext } from "./context.ts";
import { errorResponse, type ErrorShape, HttpError } from "./http_error.ts";
import { countTokens, messages } from "./anthropic.ts";
import { applyTemplate } from "./apply_template.ts";
import {
  getLora,
  getLoraAdapters,
  loadModel,
  MODEL_ACTION_ROUTE,
  modelAction,
  setLora,
  setLoraAdapters,
  unloadModel,
} from "./models_api.ts";
import { apiGenerate, apiModels, discoverApiModels, wsGenerate } from "./native.ts";
import { chatCompletions, completions, listModels, MODEL_ROUTE, retrieveModel } from "./openai.ts";
import {
  CANCEL_ROUTE,
  cancelResponse,
  createResponse,
  deleteResponse,
  RESPONSE_ROUTE,
  retrieveResponse,
} from "./responses.ts";
import {
  conversationIdOf,
  deleteStream,
  getStream,
  keepStream,
  lookupStreams,
} from "./stream_sessions.ts";
import { INPUT_ITEMS_ROUTE, listInputItems } from "./responses_input_items.ts";
import {
  hostAllowed,
  isWellFormedHost,
  originAllowed,
  type OriginPolicy,
} from "./origin_policy.ts";
import { embeddings } from "./embeddings.ts";
import { llamaEmbedding } from "./llama_embedding.ts";
import { serveWebui } from "./webui.ts";
import { rerank } from "./rerank.ts";
import {
  isOllamaClient,
  OLLAMA_BASE_PATH,
  OLLAMA_ROOT_ROUTES,
  OLLAMA_ROUTES,
  ollamaSubpath,
} from "./ollama/routes.ts";
import type { ServedRequest } from "./served_request.ts";
import { detokenize, tokenize } from "./tokenize.ts";
import { llamaCompletion } from "./llama_completion.ts";
import { infill } from "./infill.ts";
import { props } from "./props.ts";
import { chatInputTokens, responsesInputTokens } from "./input_tokens.ts";
import { SLOT_ROUTE, slotAction, slots } from "./slots.ts";
import { chatControl } from "./chat_control.ts";

/**
 * A route handler. `clientGone` aborts when the client disconnects before the response is
 * fully delivered; generating handlers tie their generation to it.
 */
export type Handler = (
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
) => Response | Promise<Response>;

const ROUTES: Record<string, Partial<Record<string, Handler>>> = {
  "/health": { GET: health },
  "/v1/health": { GET: health },
  "/props": { GET: props },
  "/slots": { GET: slots },
  "/v1/models": { GET: listModels },
  "/v1/chat/completions": { POST: chatCompletions },
  "/v1/completions": { POST: completions },
  "/v1/responses": { POST: createResponse },
  "/v1/responses/input_tokens": { POST: responsesInputTokens },
  "/v1/chat/completions/input_tokens": { POST: chatInputTokens },
  "/v1/chat/completions/control": { POST: chatControl },
  "/v1/embeddings": { POST: embeddings },
  "/embedding": { POST: llamaEmbedding },
  "/v1/rerank": { POST: rerank },
  "/v1/reranking": { POST: rerank },
  // The OpenAI routes also answer without the /v1 prefix (clients whose base URL lacks it).
  "/models": { GET: listModels },
  "/chat/completions": { POST: chatCompletions },
  "/completions": { POST: completions },
  "/responses": { POST: createResponse },
  "/responses/input_tokens": { POST: responsesInputTokens },
  "/chat/completions/input_tokens": { POST: chatInputTokens },
  "/chat/completions/control": { POST: chatControl },
  "/embeddings": { POST: embeddings },
  "/rerank": { POST: rerank },
  "/reranking": { POST: rerank },
  // Anthropic's Messages API, with and without /v1 like the OpenAI routes.
  "/v1/messages": { POST: messages },
  "/v1/messages/count_tokens": { POST: countTokens },
  "/messages": { POST: messages },
  "/messages/count_tokens": { POST: countTokens },
  "/apply-template": { POST: applyTemplate },
  "/completion": { POST: llamaCompletion },
  "/infill": { POST: infill },
  "/tokenize": { POST: tokenize },
  "/detokenize": { POST: detokenize },
  "/api/generate": { POST: apiGenerate },
  "/api/models": { GET: apiModels },
  "/api/models/load": { POST: loadModel },
  "/api/models/discover": { POST: discoverApiModels },
  "/api/models/unload": { POST: unloadModel },
  "/api/lora": { GET: getLora, POST: setLora },
  "/lora-adapters": { GET: getLoraAdapters, POST: setLoraAdapters },
  "/ws/generate": { GET: wsGenerate },
  "/v1/stream": { GET: getStream, DELETE: deleteStream },
  "/v1/streams/lookup": { POST: lookupStreams },
  "/metrics": { GET: metrics },
  "/diag": { GET: diag },
  // Ollama's routes that do not collide with Shimmy's own answer at the root too.
  ...Object.fromEntries(OLLAMA_ROOT_ROUTES.map((path) => [path, OLLAMA_ROUTES[path] ?? {}])),
};

/** The methods of one stored response's path. */
const RESPONSE_METHODS: Partial<Record<string, Handler>> = {
  GET: retrieveResponse,
  DELETE: deleteResponse,
};

/** Options of {@link createApp}. */
export interface AppOptions {
  /**
   * Serve Ollama's API at the root, before Shimmy's routes (the `--ollama-bind` listener).
   * Default false: Ollama's API is under `/ollama`.
   */
  ollamaRoot?: boolean;
  /** The address this listener is bound to, for the Host check. Default the policy's. */
  boundHost?: string;
}

/**
 * The methods of a path: Ollama's under `/ollama` (or at the root of Ollama's listener), a
 * fixed route, one model's route, or one stored response's.
 */
function routeOf(path: string, ollamaRoot: boolean): Partial<Record<string, Handler>> | undefined {
  const sub = ollamaSubpath(path);
  if (sub !== undefined) return OLLAMA_ROUTES[sub];
  if (ollamaRoot && OLLAMA_ROUTES[path]) return OLLAMA_ROUTES[path];
  if (ROUTES[path]) return ROUTES[path];
  if (MODEL_ROUTE.test(path)) return { GET: retrieveModel };
  if (MODEL_ACTION_ROUTE.test(path)) {
    return path.endsWith("/status") ? { GET: modelAction } : { POST: modelAction };
  }
  if (SLOT_ROUTE.test(path)) return { POST: slotAction };
  if (INPUT_ITEMS_ROUTE.test(path)) return { GET: listInputItems };
  if (CANCEL_ROUTE.test(path)) return { POST: cancelResponse };
  return RESPONSE_ROUTE.test(path) ? RESPONSE_METHODS : undefined;
}

/** A path's label in the request metrics: its route, with ids as placeholders. */
function routeLabel(path: string, ollamaRoot: boolean): string {
  const sub = ollamaSubpath(path);
  if (sub !== undefined) return OLLAMA_ROUTES[sub] ? path : "other";
  if (ollamaRoot && OLLAMA_ROUTES[path]) return path;
  if (ROUTES[path]) return path;
  if (path === "/") return "/";
  if (path.startsWith("/webui/")) return "/webui/{file}";
  if (MODEL_ROUTE.test(path)) return "/v1/models/{id}";
  if (MODEL_ACTION_ROUTE.test(path)) {
    return path.replace(MODEL_ACTION_ROUTE, "/api/models/{name}/$2");
  }
  if (SLOT_ROUTE.test(path)) return "/slots/{id}";
  if (INPUT_ITEMS_ROUTE.test(path)) return "/v1/responses/{id}/input_items";
  if (CANCEL_ROUTE.test(path)) return "/v1/responses/{id}/cancel";
  return RESPONSE_ROUTE.test(path) ? "/v1/responses/{id}" : "other";
}

/** Paths whose errors take Anthropic's shape (everything under `messages`, known or not). */
const ANTHROPIC_PATH = /^\/(?:v1\/)?messages(?:\/|$)/;

/** The error body's family for a path. */
function errorShapeOf(path: string, ollamaRoot: boolean): ErrorShape {
  if (ANTHROPIC_PATH.test(path)) return "anthropic";
  if (ollamaSubpath(path) !== undefined || OLLAMA_ROOT_ROUTES.includes(path)) return "ollama";
  return ollamaRoot && (path === "/" || path.startsWith("/api/")) ? "ollama" : "openai";
}

/** Routes reachable without the API key: health (and llama-server's spelling of it), Ollama's liveness check. */
const PUBLIC_ROUTES = new Set(["/health", "/v1/health", OLLAMA_BASE_PATH]);

/** Content types a browser's POST may have: JSON only, so no HTML form can post here. */
const JSON_CONTENT_TYPE = /^application\/([\w.+-]+\+)?json\s*(;|$)/i;

/**
 * Creates the request handler.
 *
 * @param ctx Server state.
 * @param options Which listener it serves (Ollama's at the root, or the main one).
 * @returns The handler.
 * @example
 * ```ts
 * const handle = createApp(ctx);
 * const res = await handle(new Request("http://localhost/health"));
 * ```
 */
export function createApp(
  ctx: ServerContext,
  options: AppOptions = {},
): (request: ServedRequest, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  const mainListener = { ollamaRoot: options.ollamaRoot ?? false, boundHost: options.boundHost };
  const ollamaListener = { ollamaRoot: true, boundHost: options.boundHost };
  return async (request, info) => {
    // Ollama's own clients get Ollama's API at the root of any listener, its /api/generate too.
    const listener = isOllamaClient(request.headers.get("user-agent"))
      ? ollamaListener
      : mainListener;
    const { ollamaRoot } = listener;
    // Deno.serve hands over a Host that makes no URL as it came ("http://a b/x"), or one that
    // moves part of itself into the path (see isWellFormedHost).
    const url = URL.parse(request.url);
    const path = url?.pathname.replace(/\/+$/, "") || "/";
    const done = ctx.activity.begin();
    const origin = request.headers.get("origin"); // headers are gone after a WebSocket upgrade
    const gone = new AbortController();
    const abort = () => gone.abort();
    // Until the handler returns, the request's own signal tells that the client hung up (a
    // non-streaming generation); after that, `completed` rejects when it hangs up mid-stream.
    if (request.signal.aborted) abort();
    else request.signal.addEventListener("abort", abort, { once: true });
    if (info) info.completed.catch(abort).finally(done);
    let response: Response;
    try {
      if (url === null || !isWellFormedHost(request.headers.get("host") ?? "")) {
        throw new HttpError(400, "The request's Host header is not a host name and a port", {
          code: "invalid_host",
        });
      }
      response = await ctx.arrivals.track(() => route(ctx, request, path, gone.signal, listener));
    } catch (error) {
      response = errorResponse(error, errorShapeOf(path, ollamaRoot));
    } finally {
      request.signal.removeEventListener("abort", abort);
    }
    ctx.metrics.request(routeLabel(path, ollamaRoot), response.status);
    if (!info) done();
    return withCors(origin, response);
  };
}

async function route(
  ctx: ServerContext,
  request: ServedRequest,
  path: string,
  clientGone: AbortSignal,
  listener: { ollamaRoot: boolean; boundHost: string | undefined },
): Promise<Response> {
  const policy = listener.boundHost === undefined
    ? ctx.settings.policy
    : { ...ctx.settings.policy, boundHost: listener.boundHost };
  checkHostAndOrigin(request, policy);
  if (ctx.draining) {
    throw new HttpError(503, "The server is shutting down", {
      code: "shutting_down",
      headers: { connection: "close" },
    });
  }
  const methods = routeOf(path, listener.ollamaRoot);
  // A browser's CORS preflight cannot carry the key; it learns nothing about the routes.
  if (isPreflight(request)) return preflight(request);
  // The chat page's files are public static content; the API it calls still needs the key.
  const page = ctx.settings.webui && !listener.ollamaRoot
    ? await serveWebui(request, path)
    : undefined;
  if (page) return page;
  const isPublic = PUBLIC_ROUTES.has(path) || (listener.ollamaRoot && path === "/");
  if (ctx.settings.apiKey && !isPublic) checkApiKey(ctx.settings.apiKey, request);
  if (!methods) throw new HttpError(404, `No route for ${request.method} ${path}`);
  const handler = handlerOf(methods, request.method, path);
  if (!handler) {
    const allowed = Object.keys(methods).filter((m) => methods[m]);
    if (handlerOf(methods, "HEAD", path)) allowed.push("HEAD");
    throw new HttpError(405, `${path} does not accept ${request.method}`, {
      headers: { allow: [...new Set(allowed)].join(", ") },
    });
  }
  if (request.method === "HEAD") return headOf(await handler(ctx, request, clientGone));
  if (request.method === "POST") checkJsonContentType(request, ollamaSubpath(path) ?? path);
  const conversation = request.method === "POST" ? conversationIdOf(request) : undefined;
  if (conversation === undefined) return await handler(ctx, request, clientGone);
  return await resumable(ctx, request, handler, clientGone, conversation);
}

/**
 * Runs a handler for a request that asks its stream to be kept (`X-Conversation-Id`): the work
 * follows the client until the handler answers; a streamed answer then goes to a session that
 * outlives the connection (`stream_sessions.ts`), anything else is returned as it is.
 */
async function resumable(
  ctx: ServerContext,
  request: ServedRequest,
  handler: Handler,
  clientGone: AbortSignal,
  conversation: string,
): Promise<Response> {
  const work = new AbortController();
  const follow = () => work.abort();
  if (clientGone.aborted) follow();
  else clientGone.addEventListener("abort", follow, { once: true });
  const response = await handler(ctx, request, work.signal);
  const streamed = response.status === 200 &&
    (response.headers.get("content-type") ?? "").startsWith("text/event-stream");
  if (!streamed || work.signal.aborted) return response;
  clientGone.removeEventListener("abort", follow);
  return keepStream(ctx, conversation, response, work);
}

/** GET routes a HEAD must not run: a WebSocket upgrade, and a kept stream its reader takes over. */
const NO_HEAD = new Set(["/ws/generate", "/v1/stream"]);

/** A route's handler for a method: its own, else for HEAD its GET's (see {@link headOf}). */
function handlerOf(
  methods: Partial<Record<string, Handler>>,
  method: string,
  path: string,
): Handler | undefined {
  const own = methods[method];
  if (own || method !== "HEAD" || NO_HEAD.has(path)) return own;
  return methods.GET;
}

/** A GET's answer as a HEAD's: the status and headers, the body dropped. */
async function headOf(response: Response): Promise<Response> {
  await response.body?.cancel();
  return new Response(null, { status: response.status, headers: response.headers });
}

function checkHostAndOrigin(request: ServedRequest, policy: OriginPolicy): void {
  const host = request.headers.get("host");
  if (!hostAllowed(host, policy)) {
    throw new HttpError(
      403,
      `Host "${host}" is not allowed; start the server with --allowed-hosts to serve it`,
      { code: "host_not_allowed" },
    );
  }
  const origin = request.headers.get("origin");
  if (!originAllowed(origin, host, policy)) {
    throw new HttpError(
      403,
      `Origin "${origin}" is not allowed; start the server with --cors ORIGIN to allow it`,
      { code: "origin_not_allowed" },
    );
  }
}

/**
 * The JSON rule: no HTML form can post here. A form's POST comes from a browser, which sends
 * `Origin` (and `Sec-Fetch-Site`) with it; a request with neither comes from no browser, and on a
 * route that changes nothing its body is read as JSON whatever its declared type, so the curl
 * lines of Ollama's and llama.cpp's documentation (`curl URL -d '{…}'`, sent as a form) work.
 * Routes that change the server's state take JSON only, from anyone.
 */
function checkJsonContentType(request: ServedRequest, route: string): void {
  const type = request.headers.get("content-type") ?? "";
  if (JSON_CONTENT_TYPE.test(type)) return;
  const fromBrowser = request.headers.has("origin") || request.headers.has("sec-fetch-site");
  if (!fromBrowser && !STATE_CHANGING_ROUTES.has(route)) return;
  throw new HttpError(
    415,
    `POST bodies must be JSON: send Content-Type: application/json` +
      (type ? ` (got "${type}")` : ""),
    { code: "unsupported_media_type" },
  );
}

/**
 * POST routes that change what the server holds (models loaded, adapters, stored responses, the
 * model store), as Shimmy's and Ollama's paths (the latter also under `/ollama`).
 */
const STATE_CHANGING_ROUTES = new Set([
  "/api/models/load",
  "/api/models/unload",
  "/api/lora",
  "/lora-adapters",
  "/v1/responses",
  "/responses",
  "/api/pull",
  "/api/push",
  "/api/create",
  "/api/copy",
]);

function isPreflight(request: ServedRequest): boolean {
  return request.method === "OPTIONS" && request.headers.has("origin") &&
    request.headers.has("access-control-request-method");
}

/** A list of header names, as `Access-Control-Request-Headers` carries it. */
const HEADER_NAME_LIST = /^[!#$%&'*+.^_`|~0-9a-z-]+(\s*,\s*[!#$%&'*+.^_`|~0-9a-z-]+)*$/i;

/**
 * Answers a CORS preflight, the same for every path. Its origin was already checked, so it
 * allows the headers the browser asks for (the SDKs send `x-stainless-*`, `anthropic-version`,
 * `x-api-key`…); a malformed list gets the basic ones.
 */
function preflight(request: ServedRequest): Response {
  const asked = request.headers.get("access-control-request-headers")?.trim() ?? "";
  return new Response(null, {
    status: 204,
    headers: {
      "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
      "access-control-allow-headers": HEADER_NAME_LIST.test(asked)
        ? asked
        : "authorization, content-type",
      "access-control-max-age": "600",
      vary: "origin, access-control-request-headers",
    },
  });
}

/** Checks `Authorization: Bearer KEY`, or Anthropic's `x-api-key: KEY`. */
function checkApiKey(key: string, request: ServedRequest): void {
  const header = request.headers.get("authorization") ?? "";
  const given = /^Bearer\s+(.+)$/i.exec(header)?.[1] ?? request.headers.get("x-api-key");
  if (given === null || !constantTimeEqual(given, key)) {
    throw new HttpError(
      401,
      "Missing or invalid API key: send Authorization: Bearer KEY or x-api-key: KEY",
      {
        code: "invalid_api_key",
        headers: { "www-authenticate": "Bearer" },
      },
    );
  }
}

/**
 * Compares two strings in time that depends only on their lengths.
 *
 * @param a First string.
 * @param b Second string.
 * @returns Whether they are equal.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** Lets the browser read the response when the request came with an allowed `Origin`. */
function withCors(origin: string | null, response: Response): Response {
  if (origin === null || response.status === 101 || response.status === 403) return response;
  const headers = new Headers(response.headers);
  headers.set("access-control-allow-origin", origin);
  headers.append("vary", "origin");
  return new Response(response.body, { status: response.status, headers });
}

function health(ctx: ServerContext): Response {
  return Response.json({
    status: "ok",
    version: VERSION,
    uptime_seconds: Math.round((performance.now() - ctx.startedAt) / 1000),
    models: ctx.registry.list().map((e) => {
      const progress = ctx.registry.loadProgress.get(e.name);
      return {
        name: e.name,
        state: ctx.registry.state(e.name),
        ...(progress !== undefined ? { progress: Math.round(progress * 100) / 100 } : {}),
        ...(ctx.registry.waitingForRoom(e.name) ? { waiting_for_room: true } : {}),
      };
    }),
    ...(ctx.pulls ? { pulls: ctx.pulls.status() } : {}),
  });
}

function liveModels(ctx: ServerContext) {
  return [...ctx.registry.replicas()].map(([name, group]) => {
    const stats = group.stats();
    return {
      name,
      queued: stats.queued,
      busySlots: stats.busySlots,
      slots: stats.slots,
      steps: stats.steps,
      loadSeconds: (ctx.registry.loadTimes.get(name) ?? 0) / 1000,
      replicas: group.replicaInfo(),
    };
  });
}

function metrics(ctx: ServerContext): Response {
  return new Response(ctx.metrics.render({ models: liveModels(ctx) }), {
    headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
  });
}

/** One loaded copy of a model, as `/diag` shows it. */
function copyDiag(copy: LoadedModel) {
  return {
    backend: copy.devices.backend,
    devices: copy.deviceNames,
    load_params: copy.model.loadParams,
    offload: copy.model.offload,
    n_ctx: copy.context.nCtx,
    flash_attn: copy.context.flashAttn,
    attention_probe: copy.attentionProbe ?? null,
    kv_unified: copy.context.kvUnified,
    kv_cache_types: copy.kvCacheTypes,
    slot_context: copy.scheduler.slotContext,
    slots: copy.scheduler.stats(),
    prompt_token_cache: promptTokenCache(copy.model).stats(),
  };
}

function diag(ctx: ServerContext): Response {
  const loaded = [...ctx.registry.replicas()];
  const runtime = runtimeInfo();
  return Response.json({
    // The original Shimmy's three fields.
    os: Deno.build.os,
    cores: navigator.hardwareConcurrency,
    mem_total_mb: Math.round(Deno.systemMemoryInfo().total / 2 ** 20),
    version: VERSION,
    llama_cpp: LLAMA_CPP_VERSION,
    lib_dir: runtime.libDir,
    system_info: runtime.systemInfo,
    devices: runtime.devices,
    settings: { ...ctx.settings, apiKey: ctx.settings.apiKey ? "(set)" : null },
    // A model's own fields are its first copy's; `replicas` lists every copy (--replicas).
    models: loaded.map(([name, group]) => ({
      name,
      path: group.primary.model.path,
      description: group.primary.model.description,
      ...copyDiag(group.primary),
      replicas: group.copies.map((copy, index) => ({ index, ...copyDiag(copy) })),
    })),
  });
}
