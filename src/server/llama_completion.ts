/**
 * `POST /completion`: llama-server's own completion route and shape, so the scripts written for
 * it (`curl …/completion -d '{"prompt": "…", "n_predict": 128}'`) run unchanged.
 *
 * The body takes `prompt` (a string, or token ids), `n_predict`, `stream`, `return_tokens` and
 * every sampling and limit field of `/v1/completions`, under the same names. The answer is one
 * object: `content`, `tokens` (the ids with `return_tokens`), `stop: true`, `model`,
 * `tokens_predicted`, `tokens_evaluated`, `tokens_cached`, `prompt`, `stop_type` (`eos`, `limit`,
 * `word` or `none` when cancelled), `stopping_word`, `truncated`, `has_new_line`,
 * `generation_settings` (the settings used, under llama-server's names) and `timings`. With
 * `stream`, each piece is a `data:` event `{"content", "tokens", "stop": false, …}` (its token ids
 * always, as there), and the last event is the whole object above with empty `content`; no
 * `[DONE]` follows. Where llama-server sends an event per token, an event here may carry several
 * ids (a character split across tokens comes whole), and the end token has no event of its own.
 *
 * @module
 */

import { DEFAULT_SAMPLER_ORDER, DEFAULT_SAMPLING } from "../engine/sampling.ts";
import type { GenerationResult } from "../engine/scheduler.ts";
import { MAX_TOP_LOGPROBS, type TokenLogprob } from "../engine/logprobs.ts";
import type { ServerContext } from "./context.ts";
import { startChoices, type StartedGeneration } from "./generation_bridge.ts";
import { checkLlamaCompletionFields } from "./generation_request_fields.ts";
import { foldForeignFields } from "./foreign_fields.ts";
import { badRequest } from "./http_error.ts";
import { llamaProbabilities } from "./logprobs_wire.ts";
import { Fields, type GenerationFields, readRequestJson } from "./request_body.ts";
import type { ServedRequest } from "./served_request.ts";
import { sseEvent, sseResponse } from "./sse.ts";
import { followClient } from "./stream_body.ts";

/**
 * `POST /completion`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns The completion as JSON, or an SSE stream of pieces ending in it.
 * @throws {HttpError} 400 for a malformed body or a field the route does not read.
 */
export async function llamaCompletion(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = foldForeignFields(await readRequestJson(request, ctx.settings), "native");
  checkLlamaCompletionFields(body, "/completion");
  const fields = new Fields(body);
  const source = promptOf(fields.raw("prompt"));
  const shape = answerShape(fields);
  const abort = followClient(clientGone);
  const all = await startChoices(
    ctx,
    fields,
    {
      kind: "raw",
      prompt: source,
      fillCache: true,
    },
    abort.signal,
    probabilitiesAsked(fields),
  );
  const prompt = typeof source === "string"
    ? source
    : (all[0] as StartedGeneration).loaded.model.detokenize(source, false);
  return await completionAnswer(all, prompt, shape, abort);
}

/** How the answer is shaped: `return_tokens` and `response_fields`. */
export interface AnswerShape {
  /** Put the generated ids in the answer's `tokens`. */
  returnTokens: boolean;
  /** Only these fields of the final object, by path (`timings/prompt_n`); default all. */
  responseFields?: string[];
}

/**
 * Reads `return_tokens` and `response_fields`.
 *
 * @param fields The body.
 * @returns The shape.
 * @throws {HttpError} 400 when `response_fields` is not an array of strings.
 */
export function answerShape(fields: Fields): AnswerShape {
  // A lone string would name one field the answer has under no such path ("abc" answered {}).
  if (typeof fields.raw("response_fields") === "string") {
    throw badRequest('"response_fields" must be an array of field paths', "response_fields");
  }
  const responseFields = fields.strings("response_fields");
  return {
    returnTokens: fields.boolean("return_tokens") ?? false,
    ...(responseFields && responseFields.length > 0 ? { responseFields } : {}),
  };
}

/**
 * Reads `n_probs` (how many of each step's most likely tokens to report, with the generated
 * one's log-probability) and `post_sampling_probs`, accepted only as false.
 *
 * @param fields The body.
 * @returns The count, or undefined for none.
 * @throws {HttpError} 400 for a count out of 0–20, or `post_sampling_probs: true`.
 */
export function probabilitiesAsked(fields: Fields): number | undefined {
  if (fields.boolean("post_sampling_probs")) {
    throw badRequest(
      '"post_sampling_probs": true is not supported: "n_probs" reports the model\'s ' +
        "log-probabilities before sampling",
      "post_sampling_probs",
    );
  }
  const count = fields.number("n_probs", { min: 0, max: MAX_TOP_LOGPROBS, integer: true }) ?? 0;
  return count > 0 ? count : undefined;
}

/**
 * Answers started generations in llama-server's completion shape: one object (an array of them,
 * each with its `index`, for several choices, `n_cmpl`), or (`stream`) events of pieces, each
 * with its choice's `index`, and each choice's object last.
 *
 * @param all The generations, one per choice.
 * @param prompt The prompt as the answer shows it.
 * @param shape `return_tokens` and `response_fields`.
 * @param abort Ends the generations when the client goes.
 * @returns The response.
 */
export async function completionAnswer(
  all: StartedGeneration[],
  prompt: string,
  shape: AnswerShape,
  abort: AbortController,
): Promise<Response> {
  const first = all[0] as StartedGeneration;
  const bytesOf = (token: number) => first.loaded.model.tokenBytes(token);
  const probabilities = (steps: readonly TokenLogprob[] | undefined) =>
    steps ? { completion_probabilities: llamaProbabilities(bytesOf, steps) } : {};
  const last = (
    index: number,
    result: GenerationResult,
    shown: { content: string; tokens: number[] },
    extra = {},
  ) =>
    pickFields(
      {
        ...finalObject(all[index] as StartedGeneration, index, result, { ...shown, prompt }),
        ...extra,
      },
      shape.responseFields,
    );
  if (!first.fields.stream) {
    const answers = await Promise.all(all.map(async (started, index) => {
      for await (const _ of started.generation) { /* the result carries the text */ }
      const result = await started.result;
      const tokens = shape.returnTokens ? result.tokens : [];
      return last(index, result, { content: result.text, tokens }, probabilities(result.logprobs));
    }));
    return Response.json(answers.length === 1 ? answers[0] : answers);
  }
  return sseResponse(async (send) => {
    // One generation per choice; their pieces interleave as they are generated.
    await Promise.all(all.map(async (started, index) => {
      const piece = (
        content: string,
        tokens: number[],
        predicted: number,
        steps?: readonly TokenLogprob[],
      ) =>
        sseEvent(JSON.stringify({
          index,
          content,
          tokens,
          stop: false,
          id_slot: -1,
          tokens_predicted: predicted,
          tokens_evaluated: started.promptTokens,
          ...probabilities(steps),
        }));
      let sent = 0;
      for await (const part of started.generation) {
        send(piece(part.text, part.tokens, part.completionTokens, part.logprobs));
        sent += part.tokens.length;
      }
      const result = await started.result;
      // Tokens with no text of their own (a stop word's) go out before the end, as there.
      if (sent < result.tokens.length) {
        send(piece("", result.tokens.slice(sent), result.completionTokens));
      }
      // Its text and ids went out in the events before.
      send(sseEvent(JSON.stringify(last(index, result, { content: "", tokens: [] }))));
    }));
  }, abort);
}

/**
 * The fields of an object named by paths (`a/b` reaches into `a`), under those paths as keys, as
 * llama-server's `response_fields` picks them; paths that name nothing are left out.
 */
function pickFields(object: Record<string, unknown>, paths: string[] | undefined) {
  if (!paths) return object;
  const picked: Record<string, unknown> = {};
  for (const path of paths) {
    let value: unknown = object;
    for (const key of path.split("/")) {
      const holder = value as Record<string, unknown> | null;
      value = typeof holder === "object" && holder !== null && !Array.isArray(holder) &&
          Object.hasOwn(holder, key)
        ? holder[key]
        : undefined;
    }
    if (value !== undefined) picked[path] = value;
  }
  return picked;
}

/** `prompt`: a string or token ids (several prompts go to `/v1/completions`). */
function promptOf(value: unknown): string | number[] {
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.every((id) => Number.isInteger(id))) return value;
  throw badRequest(
    '"prompt" must be a string or an array of token ids (send several prompts to /v1/completions)',
    "prompt",
  );
}

/** How a generation ended, in llama-server's words. */
function stopType(result: GenerationResult): "eos" | "limit" | "word" | "none" {
  if (result.finishReason === "length") return "limit";
  if (result.finishReason === "cancelled") return "none";
  return result.stoppedBy === undefined ? "eos" : "word";
}

/** The answer without streaming, and the last event of a stream. */
function finalObject(
  started: StartedGeneration,
  index: number,
  result: GenerationResult,
  shown: { content: string; tokens: number[]; prompt: string },
) {
  const t = result.timings;
  const evaluated = result.promptTokens - result.cachedTokens;
  // The end token was predicted too, though it is not in the text.
  const type = stopType(result);
  const predicted = result.completionTokens + (type === "eos" ? 1 : 0);
  return {
    index,
    content: shown.content,
    tokens: shown.tokens,
    id_slot: -1,
    stop: true,
    model: started.entry.name,
    tokens_predicted: predicted,
    tokens_evaluated: result.promptTokens,
    generation_settings: generationSettings(started.fields),
    prompt: shown.prompt,
    has_new_line: result.text.includes("\n"),
    // `truncate` dropped the prompt's oldest tokens to fit.
    truncated: result.promptTokens < started.promptTokens,
    stop_type: type,
    stopping_word: result.stoppedBy ?? "",
    // The last token sampled is not in the cache yet.
    tokens_cached: result.promptTokens + Math.max(0, predicted - 1),
    timings: {
      cache_n: result.cachedTokens,
      prompt_n: evaluated,
      prompt_ms: t.promptMs,
      prompt_per_token_ms: evaluated > 0 ? t.promptMs / evaluated : 0,
      prompt_per_second: t.promptPerSecond,
      predicted_n: result.completionTokens,
      predicted_ms: t.generateMs,
      predicted_per_token_ms: result.completionTokens > 0
        ? t.generateMs / result.completionTokens
        : 0,
      predicted_per_second: t.generatePerSecond,
    },
  };
}

/**
 * Generation settings under llama-server's names (its `generation_settings`, and the `params` of
 * `/props`): the request's, over Shimmy's defaults.
 *
 * @param fields The settings a request made (`{ sampling: {}, stop: [], … }` for the defaults).
 * @returns The settings as llama-server names them.
 */
export function generationSettings(
  fields: Pick<GenerationFields, "sampling" | "maxTokens" | "stop" | "ignoreEos" | "stream">,
) {
  const { sampling, maxTokens, stop, ignoreEos, stream } = fields;
  const p = { ...DEFAULT_SAMPLING, ...sampling };
  return {
    seed: sampling.seed ?? 0xffffffff,
    temperature: p.temperature,
    dynatemp_range: p.dynatempRange,
    dynatemp_exponent: p.dynatempExponent,
    top_k: p.topK,
    top_p: p.topP,
    min_p: p.minP,
    top_n_sigma: p.topNSigma,
    xtc_probability: p.xtcProbability,
    xtc_threshold: p.xtcThreshold,
    typical_p: p.typicalP,
    repeat_last_n: p.repeatLastN,
    repeat_penalty: p.repeatPenalty,
    presence_penalty: p.presencePenalty,
    frequency_penalty: p.frequencyPenalty,
    dry_multiplier: p.dryMultiplier,
    dry_base: p.dryBase,
    dry_allowed_length: p.dryAllowedLength,
    dry_penalty_last_n: p.dryPenaltyLastN,
    dry_sequence_breakers: p.drySequenceBreakers,
    mirostat: p.mirostat,
    mirostat_tau: p.mirostatTau,
    mirostat_eta: p.mirostatEta,
    stop,
    max_tokens: maxTokens ?? -1,
    n_predict: maxTokens ?? -1,
    ignore_eos: ignoreEos,
    stream,
    grammar: sampling.grammar ?? "",
    samplers: sampling.samplers ?? DEFAULT_SAMPLER_ORDER,
  };
}
