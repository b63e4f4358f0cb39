/**
 * Ollama's embeddings: `POST /api/embed` (`input` a string or strings, `embeddings` back with
 * the prompt's token count and durations) and the older `POST /api/embeddings` (`prompt`, one
 * `embedding` back). Both run on the model's embeddings context like `/v1/embeddings`, with
 * unit-length vectors. `truncate` (default true, as in Ollama) cuts an input that is longer
 * than the context to fit; `false` makes it a 400.
 *
 * @module
 */

import type { ServerContext } from "../context.ts";
import {
  checkDimensions,
  checkPooling,
  inputTokens,
  withDimensions,
  withEmbedder,
} from "../embeddings.ts";
import { badRequest } from "../http_error.ts";
import { Fields, readRequestJson } from "../request_body.ts";
import { resolveOllamaModel } from "./models.ts";
import { ollamaFields } from "./options.ts";
import { checkFields } from "./request_checks.ts";
import type { ServedRequest } from "../served_request.ts";

/**
 * `POST /api/embed`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns `{model, embeddings, total_duration, load_duration, prompt_eval_count}`.
 * @throws {HttpError} 400 for a bad field or a model that makes no embeddings; 404 for an
 *   unknown model.
 * @example
 * ```ts
 * const { embeddings } = await (await ollamaEmbed(ctx, request, signal)).json();
 * ```
 */
export async function ollamaEmbed(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const arrivedAt = performance.now();
  const body = await readRequestJson(request, ctx.settings);
  checkFields(
    body,
    ["model", "input", "truncate", "dimensions", "keep_alive", "options"],
    "/api/embed",
  );
  const fields = new Fields(body);
  const input = fields.raw("input");
  const inputs = typeof input === "string" ? [input] : input;
  if (
    !Array.isArray(inputs) || inputs.length === 0 || !inputs.every((s) => typeof s === "string")
  ) {
    throw badRequest('"input" must be a string or a non-empty array of strings', "input");
  }
  const dimensions = fields.number("dimensions", { min: 1, integer: true });
  const run = await embedTexts(ctx, body, inputs, fields.boolean("truncate") ?? true, clientGone);
  checkDimensions(dimensions, run.vectors[0]?.length ?? 0, run.model);
  return Response.json({
    model: run.model,
    embeddings: withDimensions(run.vectors, dimensions).map((v) => Array.from(v)),
    total_duration: Math.round((performance.now() - arrivedAt) * 1e6),
    load_duration: Math.round(run.loadMs * 1e6),
    prompt_eval_count: run.tokens,
  });
}

/**
 * `POST /api/embeddings` (Ollama's older endpoint).
 *
 * @param ctx Server state.
 * @param request The HTTP request (`{"model", "prompt"}`).
 * @param clientGone Aborts when the client disconnects.
 * @returns `{embedding}`.
 * @throws {HttpError} 400 for a bad field, 404 for an unknown model.
 * @example
 * ```ts
 * const { embedding } = await (await ollamaEmbeddings(ctx, request, signal)).json();
 * ```
 */
export async function ollamaEmbeddings(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  checkFields(body, ["model", "prompt", "keep_alive", "options"], "/api/embeddings");
  const prompt = new Fields(body).string("prompt");
  if (!prompt) throw badRequest('"prompt" must be a non-empty string', "prompt");
  const run = await embedTexts(ctx, body, [prompt], true, clientGone);
  return Response.json({ embedding: Array.from(run.vectors[0] ?? []) });
}

/** Embeds texts with the request's model and applies its `keep_alive`. */
async function embedTexts(
  ctx: ServerContext,
  body: Record<string, unknown>,
  texts: string[],
  truncate: boolean,
  signal: AbortSignal,
) {
  const entry = resolveOllamaModel(ctx, body.model);
  const mapped = ollamaFields({ keep_alive: body.keep_alive }, entry.name);
  const options = new Fields(body).object("options");
  if (options && Object.keys(options).length > 0) {
    throw badRequest(
      `"options" are not used for embeddings (got ${Object.keys(options).join(", ")}); remove them`,
      "options",
    );
  }
  const wasLoaded = ctx.registry.state(entry.name) === "loaded";
  const out = await withEmbedder(ctx, entry.name, async (lease) => {
    checkPooling(lease);
    const fitted: Int32Array[] = [];
    for (const [i, text] of texts.entries()) {
      if (text === "") throw badRequest(`Input ${i} is empty`, "input");
      const tokens = truncate
        ? await lease.loaded.model.tokenizeAsync(text, { signal })
        : await inputTokens(lease, text, `Input ${i}`, signal);
      fitted.push(tokens.subarray(0, lease.embedder.contextSize));
    }
    const vectors = await lease.embedder.embed(fitted, { signal });
    return { vectors, tokens: fitted.reduce((n, t) => n + t.length, 0) };
  });
  if (mapped.keepAliveMs !== undefined) ctx.registry.setKeepAlive(entry.name, mapped.keepAliveMs);
  return {
    model: entry.name,
    ...out,
    loadMs: wasLoaded ? 0 : ctx.registry.loadTimes.get(entry.name) ?? 0,
  };
}
