/**
 * Sampling parameters as users give them (OpenAI/Shimmy names) and the llama.cpp sampler
 * chain they become. Temperature 0 (or less) is greedy; otherwise the chain ends in a seeded
 * random draw, so `seed` really changes the output (the original Shimmy always ended in greedy).
 *
 * @module
 */

import type { SamplerStage } from "../ffi/sampler.ts";

/** Sampling settings; unset fields take the defaults in {@link DEFAULT_SAMPLING}. */
export interface SamplingParams {
  /** Softmax temperature; <= 0 means greedy. */
  temperature?: number;
  /** Keep the K most likely tokens; <= 0 disables. */
  topK?: number;
  /** Nucleus sampling threshold; 1 disables. */
  topP?: number;
  /** Minimum probability relative to the best token; 0 disables. */
  minP?: number;
  /** Locally typical sampling; 1 disables. */
  typicalP?: number;
  /** Repetition penalty; 1 disables. */
  repeatPenalty?: number;
  /** How many recent tokens the penalties look at. */
  repeatLastN?: number;
  /** OpenAI frequency penalty; 0 disables. */
  frequencyPenalty?: number;
  /** OpenAI presence penalty; 0 disables. */
  presencePenalty?: number;
  /** RNG seed; random when unset. */
  seed?: number;
  /** Additive logit bias by token id. */
  logitBias?: ReadonlyMap<number, number>;
  /** GBNF grammar constraining the output. */
  grammar?: string;
  /**
   * Makes `grammar` lazy: free text until the output matches one of these regular expressions
   * (e.g. a tool-call marker), then the grammar from the match on.
   */
  grammarTriggers?: readonly string[];
}

/** Defaults used when a field is unset. */
export const DEFAULT_SAMPLING: Required<
  Omit<SamplingParams, "seed" | "logitBias" | "grammar" | "grammarTriggers">
> = {
  temperature: 0.7,
  topK: 40,
  topP: 0.9,
  minP: 0.05,
  typicalP: 1,
  repeatPenalty: 1,
  repeatLastN: 64,
  frequencyPenalty: 0,
  presencePenalty: 0,
};

/** A random 32-bit seed. */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0] as number;
}

/**
 * Turns sampling parameters into sampler chain stages.
 *
 * @param params User settings.
 * @returns Stages in application order, ending in `greedy` or `dist`.
 * @example
 * ```ts
 * samplerStages({ temperature: 0 }); // [{ type: "greedy" }]
 * ```
 */
export function samplerStages(params: SamplingParams): SamplerStage[] {
  const p = { ...DEFAULT_SAMPLING, ...withoutUndefined(params) };
  const stages: SamplerStage[] = [];
  if (params.logitBias && params.logitBias.size > 0) {
    stages.push({ type: "logit_bias", bias: params.logitBias });
  }
  if (params.grammar) {
    const patterns = params.grammarTriggers;
    stages.push({
      type: "grammar",
      grammar: params.grammar,
      ...(patterns && patterns.length > 0 ? { triggers: { patterns } } : {}),
    });
  }
  if (p.repeatPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0) {
    stages.push({
      type: "penalties",
      lastN: p.repeatLastN,
      repeat: p.repeatPenalty,
      frequency: p.frequencyPenalty,
      presence: p.presencePenalty,
    });
  }
  if (p.temperature <= 0) {
    stages.push({ type: "greedy" });
    return stages;
  }
  if (p.topK > 0) stages.push({ type: "top_k", k: p.topK });
  if (p.typicalP < 1) stages.push({ type: "typical", p: p.typicalP });
  if (p.topP < 1) stages.push({ type: "top_p", p: p.topP });
  if (p.minP > 0) stages.push({ type: "min_p", p: p.minP });
  stages.push({ type: "temp", temperature: p.temperature });
  stages.push({ type: "dist", seed: params.seed ?? randomSeed() });
  return stages;
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<
    T
  >;
}
