/**
 * The path shared by every generating endpoint: resolve and load the model, turn the prompt
 * or messages into tokens, submit to the model's scheduler with an abort signal tied to the
 * client, and record metrics when it ends.
 *
 * @module
 */

import type { LoadedModel } from "../engine/loaded_model.ts";
import { StructuredOutputError } from "../engine/structured/errors.ts";
import { GrammarError } from "../engine/gbnf.ts";
import {
  type ChatOutputPlan,
  type ChatOutputRequest,
  planChatOutput,
} from "../engine/tools/plan.ts";
import { reasoningBudgetSpec } from "../engine/reasoning_budget.ts";
import {
  chatPrompt,
  type PreparedPrompt,
  type PromptOptions,
  rawPrompt,
  tokenizeText,
  tokenPrompt,
} from "../engine/prompt.ts";
import { type InfillParts, infillPrompt, missingFimTokens } from "../engine/fim_prompt.ts";
import type { TemplateMessage } from "../engine/templates.ts";
import { toolCallsIn } from "../engine/template_messages.ts";
import { templateThinks } from "../engine/templates_detect.ts";
import type { ModelEntry } from "../models/registry.ts";
import { ARRIVAL_WINDOW_MS, type Generation, type GenerationResult } from "../engine/scheduler.ts";
import type { ServerContext } from "./context.ts";
import { badRequest, HttpError } from "./http_error.ts";
import { requestLora } from "./models_api.ts";
import {
  checkTokenIds,
  type Fields,
  type GenerationFields,
  generationFields,
  type TemplateFields,
} from "./request_body.ts";

/**
 * What to generate from: a raw prompt (text, or token ids used as given), or chat messages
 * rendered with the model's template. `contextTokens` bounds prompt and answer together (Ollama's
 * `num_ctx`): the answer gets at most what the prompt leaves of it.
 */
export type PromptSource =
  & {
    contextTokens?: number;
    /** With `n_predict` 0, evaluate the prompt into the cache all the same (a warm-up). */
    fillCache?: boolean;
    /** Shared by the prompts of one request, which take turns with others' in the queue. */
    group?: object;
  }
  & (
    | { kind: "raw"; prompt: string | readonly number[] }
    | { kind: "infill"; parts: InfillParts }
    | {
      kind: "chat";
      messages: TemplateMessage[];
      tools?: unknown[];
      template?: TemplateFields;
      /** Tools, `tool_choice` and `reasoning_format`: how the output is constrained and read. */
      output?: ChatOutputRequest;
    }
  );

/** A generation that has started. */
export interface StartedGeneration {
  entry: ModelEntry;
  loaded: LoadedModel;
  /** The request's generation settings (`stream`, `include_usage`…). */
  fields: GenerationFields;
  generation: Generation;
  /** Resolves with the result once metrics are recorded. */
  result: Promise<GenerationResult>;
  /** How to read a chat generation's output (tool calls, reasoning), when it was asked. */
  output?: ChatOutputPlan;
  /** Tokens in the prompt (known before any is evaluated). */
  promptTokens: number;
  /** The prompt's tokens. */
  prompt: Int32Array;
}

/**
 * Starts a generation. The model is leased from lookup until the generation ends, so it is
 * never unloaded under the request.
 *
 * @param ctx Server state.
 * @param body The request's fields (`model`, sampling, limits, `lora`…).
 * @param source Prompt or messages.
 * @param signal Aborts the generation (client gone).
 * @param logprobs Report log-probabilities per token with this many alternatives. Default:
 *   none.
 * @returns The started generation.
 * @throws {HttpError} 400 for an `n` above 1 (endpoints with several choices use
 *   {@link startChoices}); engine errors, mapped by the error boundary.
 */
export async function startGeneration(
  ctx: ServerContext,
  body: Fields,
  source: PromptSource,
  signal: AbortSignal,
  logprobs?: number,
): Promise<StartedGeneration> {
  if ((body.number("n") ?? 1) !== 1) {
    throw badRequest('"n" is not supported on this endpoint; send one request per choice', "n");
  }
  return (await startChoices(ctx, body, source, signal, logprobs))[0] as StartedGeneration;
}

/**
 * Starts the `n` choices of a request (default 1) from one evaluation of its prompt. The model
 * is leased until every choice ends.
 *
 * @param ctx Server state.
 * @param body The request's fields (`model`, `n`, sampling, limits, `lora`…).
 * @param source Prompt or messages.
 * @param signal Aborts the generations (client gone).
 * @param logprobs Report log-probabilities per token with this many alternatives (each API
 *   spells the field its own way; its adapter reads it). Default: none.
 * @returns One started generation per choice, in order.
 * @throws {HttpError} / engine errors, mapped by the error boundary.
 */
export async function startChoices(
  ctx: ServerContext,
  body: Fields,
  source: PromptSource,
  signal: AbortSignal,
  logprobs?: number,
): Promise<StartedGeneration[]> {
  const started = await queueChoices(ctx, body, source, signal, logprobs);
  // The handler answers once a step has started: in a burst, the first step waits for the
  // requests still being read and tokenized, and building this one's answer meanwhile held them
  // up (a burst of 8 on the H200 machine: the last one's tokens were taken up only after the
  // others' answers had been built, 8.5 ms after the first head, and the step started at 10.7).
  await Promise.all(started.map((one) => one.generation.scheduled));
  return started;
}

/** Prepares and queues the choices of {@link startChoices}. */
async function queueChoices(
  ctx: ServerContext,
  body: Fields,
  source: PromptSource,
  signal: AbortSignal,
  logprobs?: number,
): Promise<StartedGeneration[]> {
  // A bad field is a 400 before any model is loaded (or found busy) for the request.
  const fields = generationFields(body);
  const lease = await ctx.registry.acquire(body.string("model"), signal);
  try {
    const { entry, model: loaded } = lease;
    using _arrival = loaded.scheduler.expectArrival();
    ctx.arrivals.handOver(); // the scheduler counts it from here
    // A lone request tokenizes on the event loop's thread (no thread hop before its prompt step);
    // one among others, or ahead of others on their way, tokenizes on a worker thread, so that
    // the event loop reads and prepares the others meanwhile.
    const offThread = loaded.scheduler.inFlight() > 1 ||
      ctx.arrivals.count(ARRIVAL_WINDOW_MS) > 0;
    checkTokenIds(fields, loaded.model.nVocab);
    if (logprobs !== undefined) fields.logprobs = logprobs;
    // Without `truncate`, a prompt whose length alone shows it cannot fit is refused untokenized.
    const prepared = await preparePrompt(ctx, loaded, source, fields, {
      signal,
      offThread,
      ...(fields.truncate ? {} : { tokenLimit: loaded.scheduler.slotContext }),
    });
    if (prepared.tokens.length === 0) throw badRequest("The prompt is empty", "prompt");
    if (source.contextTokens !== undefined) {
      const room = source.contextTokens - prepared.tokens.length;
      if (room <= 0) {
        throw badRequest(
          `The prompt has ${prepared.tokens.length} tokens, which fill the request's context of ` +
            `${source.contextTokens}; shorten it or raise num_ctx`,
          "options",
        );
      }
      fields.maxTokens = Math.min(fields.maxTokens ?? room, room);
    }
    const output = source.kind === "chat" && source.output
      ? chatOutputPlan(
        source.output,
        { ...prepared, callsBefore: toolCallsIn(source.messages) },
        fields,
      )
      : undefined;
    const budget = source.kind === "chat" && source.output?.thinkingBudget && output?.thinking
      ? reasoningBudgetSpec(loaded.model, source.output.thinkingBudget, output.thinking.startsOpen)
      : undefined;
    const slots = loaded.scheduler.stats().slots;
    if (fields.choices > slots) {
      const field = body.raw("n_cmpl") !== undefined ? "n_cmpl" : "n";
      throw badRequest(
        `"${field}" is ${fields.choices}; this model runs at most ${slots} generations at once, ` +
          `so ask for 1 to ${slots} choices or start the server with a larger --parallel`,
        field,
      );
    }
    const lora = await requestLora(entry, loaded, fields.lora);
    // A new grammar is checked on a worker: large ones take tenths of a second to bound. The
    // check is dropped from the worker's queue if the client leaves meanwhile.
    if (fields.sampling.grammar) {
      await loaded.scheduler.prepareGrammar(fields.sampling.grammar, signal);
    }
    const generations = withGrammarField(
      body,
      output,
      fields,
      () =>
        loaded.scheduler.submitChoices({
          ...(lora ? { lora } : {}),
          prompt: prepared.tokens,
          stop: [...fields.stop, ...prepared.stopStrings],
          stopTokens: prepared.stopTokens,
          sampling: fields.sampling,
          ignoreEos: fields.ignoreEos,
          truncate: fields.truncate,
          signal,
          ...(fields.maxTokens !== undefined ? { maxTokens: fields.maxTokens } : {}),
          ...(fields.logprobs !== undefined ? { logprobs: fields.logprobs } : {}),
          fillCache: source.fillCache,
          ...(source.group ? { group: source.group } : {}),
          ...(fields.cachePrompt ? {} : { cachePrompt: false }),
          minIndent: fields.minIndent,
          lineTimeLimitMs: fields.lineTimeLimitMs,
          ...(budget ? { reasoningBudget: budget } : {}),
        }, fields.choices),
    );
    const results = generations.map((generation) =>
      generation.result.then((r) => {
        ctx.metrics.generation(r);
        return r;
      })
    );
    void Promise.allSettled(results).finally(lease.release);
    return generations.map((generation, i) => {
      const result = results[i] as Promise<GenerationResult>;
      result.catch(() => {});
      const promptTokens = prepared.tokens.length;
      return {
        entry,
        loaded,
        fields,
        generation,
        result,
        promptTokens,
        prompt: prepared.tokens,
        ...(output ? { output } : {}),
      };
    });
  } catch (error) {
    lease.release();
    throw error;
  }
}

/** The request fields a grammar may come from, in the order they are read. */
const GRAMMAR_FIELDS = ["grammar", "json_schema", "response_format"];

/**
 * Runs `submit`, turning a refused grammar into a 400 that names the field it came from: the
 * tools for a forced or lazy call grammar, else `grammar`, `json_schema` or `response_format`.
 */
function withGrammarField<T>(
  body: Fields,
  output: ChatOutputPlan | undefined,
  fields: GenerationFields,
  submit: () => T,
): T {
  try {
    return submit();
  } catch (error) {
    if (!(error instanceof GrammarError)) throw error;
    const field = output?.grammar !== undefined && output.grammar === fields.sampling.grammar
      ? "tools"
      : GRAMMAR_FIELDS.find((name) => body.raw(name) !== undefined) ?? "grammar";
    throw badRequest(error.message, field);
  }
}

/** Turns a request's prompt, infill parts or messages into tokens. */
async function preparePrompt(
  ctx: ServerContext,
  loaded: LoadedModel,
  source: PromptSource,
  fields: GenerationFields,
  options: PromptOptions,
): Promise<PreparedPrompt> {
  const model = loaded.model;
  switch (source.kind) {
    case "raw":
      return typeof source.prompt === "string"
        ? await rawPrompt(model, source.prompt, options)
        : tokenPrompt(source.prompt);
    case "infill": {
      const missing = missingFimTokens(model.fimTokens);
      if (missing.length > 0) {
        throw new HttpError(
          501,
          `This model cannot fill in the middle: its vocabulary has no FIM ${
            missing.join(", ")
          } token (use a code model such as Qwen2.5-Coder, DeepSeek-Coder, StarCoder or CodeLlama)`,
          { code: "not_supported" },
        );
      }
      const budget = {
        batch: loaded.context.nBatch,
        context: loaded.scheduler.slotContext,
        answer: fields.maxTokens ?? 0,
      };
      const tokens = await infillPrompt(
        model,
        source.parts,
        budget,
        (text, parseSpecial) =>
          tokenizeText(model, text, { addSpecial: false, parseSpecial }, options),
      );
      return { tokens, stopTokens: [], stopStrings: [], format: "infill" };
    }
    case "chat": {
      const prepared = await chatPrompt(
        model,
        source.messages,
        ctx.settings.chatTemplate,
        source.tools,
        { ...options, ...templateOptions(ctx, source.template) },
      );
      const asked = source.template?.asksThinking;
      if (asked !== undefined && !templateThinks(prepared.template ?? "")) {
        throw badRequest(
          `"${asked}": this model does not support thinking (its chat template has no thinking ` +
            "block or switch); leave it out",
          asked,
        );
      }
      return prepared;
    }
  }
}

/**
 * Plans tool calls and reasoning for a chat generation; a forced call's grammar becomes the
 * generation's grammar.
 *
 * @param request What the request asked.
 * @param prepared The rendered prompt (its template decides the call format), and the tool calls
 *   of the conversation's earlier turns.
 * @param fields The generation settings; `sampling.grammar` is set for forced calls.
 * @returns The plan.
 * @throws {HttpError} 400 when a forced call meets another grammar, or a tool's schema cannot
 *   be converted.
 */
function chatOutputPlan(
  request: ChatOutputRequest,
  prepared: { template?: string; format?: string; promptTail?: string; callsBefore: number },
  fields: GenerationFields,
): ChatOutputPlan {
  let plan: ChatOutputPlan;
  try {
    plan = planChatOutput(request, prepared);
  } catch (error) {
    if (error instanceof StructuredOutputError) throw badRequest(error.message, "tools");
    throw error;
  }
  if (plan.grammar && plan.triggers) {
    // `auto`: the lazy call grammar, unless the request constrains the output itself.
    if (!fields.sampling.grammar) {
      fields.sampling.grammar = plan.grammar;
      fields.sampling.grammarTriggers = plan.triggers;
    }
  } else if (plan.grammar) {
    if (fields.sampling.grammar) {
      throw badRequest(
        'A forced "tool_choice" cannot be combined with "response_format", "json_schema" or ' +
          '"grammar": each constrains the output',
        "tool_choice",
      );
    }
    fields.sampling.grammar = plan.grammar;
    // Stop strings end text, and a forced answer is one call's markup: a "\n" or a quote in
    // them cut the call before it was whole (no call, empty content).
    fields.stop = [];
  }
  return plan;
}

/**
 * The template options of a chat request: the server's `--chat-template-kwargs` with the
 * request's `chat_template_kwargs` over them, `reasoning_effort`, `add_generation_prompt`, and
 * whether the last message is continued.
 *
 * @param ctx Server state.
 * @param fields What the request asked.
 * @returns Options for `chatPrompt`/`renderChatPrompt`.
 */
export function templateOptions(ctx: ServerContext, fields: TemplateFields = {}) {
  const serverKwargs = ctx.settings.chatTemplateKwargs;
  const kwargs = serverKwargs || fields.kwargs ? { ...serverKwargs, ...fields.kwargs } : undefined;
  return {
    ...(kwargs ? { kwargs } : {}),
    ...(fields.reasoningEffort !== undefined ? { reasoningEffort: fields.reasoningEffort } : {}),
    ...(fields.addGenerationPrompt !== undefined
      ? { addGenerationPrompt: fields.addGenerationPrompt }
      : {}),
    ...(fields.continueFinal !== undefined ? { continueFinal: fields.continueFinal } : {}),
  };
}

/**
 * OpenAI-style usage numbers, summed over the generations of one request.
 *
 * @param results The finished generations (one per prompt or choice).
 * @returns `{prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details}`; its
 *   `cached_tokens` are the prompt tokens reused from the slots' caches.
 */
export function usageOf(...results: GenerationResult[]) {
  const sum = (of: (r: GenerationResult) => number) => results.reduce((n, r) => n + of(r), 0);
  // A prompt shared by several choices was evaluated, and is counted, once.
  const prompt = sum((r) => r.sharedPrompt ? 0 : r.promptTokens);
  const completion = sum((r) => r.completionTokens);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: sum((r) => r.sharedPrompt ? 0 : r.cachedTokens) },
  };
}

/**
 * The tokens of a generation's reasoning, for usage's `reasoning_tokens`: the scheduler counts
 * only the whole output, so the reasoning's text is tokenized again.
 *
 * @param started The generation.
 * @param reasoning Its reasoning text, if any.
 * @returns The count, at most the generation's own count of tokens.
 */
export async function reasoningTokenCount(
  started: StartedGeneration,
  reasoning: string | undefined,
): Promise<number> {
  if (!reasoning) return 0;
  const options = { addSpecial: false, parseSpecial: false };
  const count = (await started.loaded.model.tokenizeAsync(reasoning, options)).length;
  return Math.min(count, (await started.result).completionTokens);
}

/**
 * Timings in the shape llama-server reports them (tools read these).
 *
 * @param result A finished generation.
 * @returns Milliseconds and tokens per second.
 */
export function timingsOf(result: GenerationResult) {
  const t = result.timings;
  return {
    prompt_n: result.promptTokens - result.cachedTokens,
    prompt_ms: round(t.promptMs),
    prompt_per_second: round(t.promptPerSecond),
    predicted_n: result.completionTokens,
    predicted_ms: round(t.generateMs),
    predicted_per_second: round(t.generatePerSecond),
    cache_n: result.cachedTokens,
    ttft_ms: round(t.ttftMs),
  };
}

/** OpenAI `finish_reason`: a cancelled generation reports `stop`. */
export function finishReasonOf(result: GenerationResult): "stop" | "length" {
  return result.finishReason === "length" ? "length" : "stop";
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
