/**
 * Runs a started generation to its end as Ollama replies: one JSON object, or NDJSON chunks
 * and a last `"done": true` chunk. The text is read by the shared chat reader (content,
 * thinking, tool calls), whatever the endpoint; each endpoint only says how a piece and the
 * final output look in its chunks (`response` for generate, `message` for chat). The last
 * chunk carries `done_reason` and Ollama's counters, durations in nanoseconds. `options.num_ctx`
 * bounds prompt and answer together (the bridge's `contextTokens`); `keep_alive` is applied once
 * the answer is out (0 unloads the model).
 *
 * @module
 */

import type { GenerationResult } from "../../engine/scheduler.ts";
import type { TokenLogprob } from "../../engine/logprobs.ts";
import { chatLogprobs } from "../logprobs_wire.ts";
import type { ChatDelta, ChatOutput } from "../../engine/tools/output_stream.ts";
import { readChatGeneration } from "../chat_stream.ts";
import type { ServerContext } from "../context.ts";
import { type PromptSource, startGeneration } from "../generation_bridge.ts";
import { ndjsonResponse } from "./ndjson.ts";
import type { OllamaFields } from "./options.ts";
import { followClient } from "../stream_body.ts";

/** How one endpoint's chunks show the output. */
export interface ReplyShape {
  /** The fields of a chunk for one delta; undefined sends no chunk. */
  piece(delta: ChatDelta): Record<string, unknown> | undefined;
  /** The fields of the last streamed chunk (what it adds to the pieces). */
  last(output: ChatOutput): Record<string, unknown>;
  /** The fields of the whole reply when not streamed. */
  whole(output: ChatOutput): Record<string, unknown>;
}

/** One Ollama generating request. */
export interface ReplyRequest {
  /** The resolved model name, reported in every chunk. */
  model: string;
  /** The request's mapped fields. */
  request: OllamaFields;
  /** What to generate from. */
  source: PromptSource;
  /** `performance.now()` when the request arrived (for `total_duration`). */
  arrivedAt: number;
}

/**
 * Generates and replies in Ollama's shape.
 *
 * @param ctx Server state.
 * @param reply The request.
 * @param shape How chunks show the output.
 * @param clientGone Aborts when the client disconnects.
 * @returns The JSON reply, or an NDJSON stream.
 * @throws {HttpError} 400 for a prompt that fills `options.num_ctx`; engine errors are mapped
 *   by the error boundary.
 * @example
 * ```ts
 * return await ollamaReply(ctx, { model, request, source, arrivedAt }, shape, clientGone);
 * ```
 */
export async function ollamaReply(
  ctx: ServerContext,
  reply: ReplyRequest,
  shape: ReplyShape,
  clientGone: AbortSignal,
): Promise<Response> {
  const { model, request } = reply;
  const wasLoaded = ctx.registry.state(model) === "loaded";
  const abort = followClient(clientGone);
  const source = request.numCtx === undefined
    ? reply.source
    : { ...reply.source, contextTokens: request.numCtx };
  const started = await startGeneration(
    ctx,
    request.fields,
    source,
    abort.signal,
    request.logprobs,
  );
  const bytesOf = (token: number) => started.loaded.model.tokenBytes(token);
  // Log-probabilities ride on the next chunk sent after their tokens.
  let pending: TokenLogprob[] = [];
  const logprobsOf = (steps: readonly TokenLogprob[] | undefined) =>
    request.logprobs === undefined ? {} : { logprobs: chatLogprobs(bytesOf, steps ?? []) };
  const takePending = () => {
    const steps = pending;
    pending = [];
    return logprobsOf(steps);
  };
  const header = () => ({ model, created_at: new Date().toISOString() });
  const finish = (result: GenerationResult) => {
    if (request.keepAliveMs !== undefined) {
      ctx.registry.setKeepAlive(model, request.keepAliveMs);
    }
    return {
      done: true,
      done_reason: result.finishReason === "length" ? "length" : "stop",
      ...counters(result, reply.arrivedAt, wasLoaded ? 0 : ctx.registry.loadTimes.get(model) ?? 0),
    };
  };

  if (!request.stream) {
    const { result, output } = await readChatGeneration(started, () => {}, { streaming: false });
    return Response.json({
      ...header(),
      ...shape.whole(output),
      ...logprobsOf(result.logprobs),
      ...finish(result),
    });
  }
  return ndjsonResponse(async (send) => {
    const { result, output } = await readChatGeneration(started, (delta) => {
      const piece = shape.piece(delta);
      if (piece) send({ ...header(), ...piece, ...takePending(), done: false });
    }, {
      streaming: true,
      onChunk: (chunk) => {
        if (chunk.logprobs) pending.push(...chunk.logprobs);
      },
    });
    send({ ...header(), ...shape.last(output), ...takePending(), ...finish(result) });
  }, abort);
}

/** Nanoseconds from milliseconds, as integers. */
function ns(ms: number): number {
  return Math.round(ms * 1e6);
}

/** Ollama's counters: the whole prompt, the tokens generated, and their durations. */
function counters(result: GenerationResult, arrivedAt: number, loadMs: number) {
  return {
    total_duration: ns(performance.now() - arrivedAt),
    load_duration: ns(loadMs),
    prompt_eval_count: result.promptTokens,
    prompt_eval_duration: ns(result.timings.promptMs),
    eval_count: result.completionTokens,
    eval_duration: ns(result.timings.generateMs),
  };
}
