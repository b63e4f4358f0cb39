/**
 * Sampling parameters as users give them (OpenAI/Shimmy names) and the llama.cpp sampler
 * chain they become. Temperature 0 (or less) is greedy; otherwise the chain ends in a seeded
 * random draw, so `seed` really changes the output (the original Shimmy always ended in greedy).
 *
 * @module
 */

import type { SamplerStage } from "../ffi/sampler.ts";

/**
 * A stage of the chain that a request may place (llama-server's names): the cut-offs, the
 * penalties, DRY, temperature, and `infill`, which favours ending a fill-in-the-middle answer
 * and joins candidates that start alike.
 */
export type SamplerName =
  | "penalties"
  | "dry"
  | "top_n_sigma"
  | "top_k"
  | "typ_p"
  | "top_p"
  | "min_p"
  | "xtc"
  | "temperature"
  | "infill";

/** llama.cpp's order of the stages, which Shimmy keeps unless a request gives its own. */
export const DEFAULT_SAMPLER_ORDER: readonly SamplerName[] = [
  "penalties",
  "dry",
  "top_n_sigma",
  "top_k",
  "typ_p",
  "top_p",
  "min_p",
  "xtc",
  "temperature",
];

/**
 * Most candidates the `infill` stage is given. It compares every candidate with every other
 * (70 ms a token at 2,000 candidates, minutes at a 152k vocabulary), and llama.cpp's chain puts
 * no bound before it where a request's `samplers` leave top-k out: where no top-k of at most this
 * many runs before it, {@link samplerStages} puts a top-k of this many right before it.
 */
export const INFILL_MAX_CANDIDATES = 1000;

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
  /**
   * The fewest tokens top-p, min-p, typical and XTC leave (llama-server's `min_keep`); 0, the
   * default, as 1: they always leave the best one.
   */
  minKeep?: number;
  /** Repetition penalty; 1 disables. */
  repeatPenalty?: number;
  /** How many recent tokens the penalties look at. */
  repeatLastN?: number;
  /** OpenAI frequency penalty; 0 disables. */
  frequencyPenalty?: number;
  /** OpenAI presence penalty; 0 disables. */
  presencePenalty?: number;
  /**
   * Mirostat 1 or 2 (2.0): each token is drawn from a cut-off that holds the text's surprise near
   * `mirostatTau`, adjusted at rate `mirostatEta`. It takes the place of the cut-offs (top-k,
   * top-p, min-p, typical, XTC, top-n-sigma), as in llama.cpp; the penalties and DRY still apply
   * (llama.cpp drops those too, which would ignore fields the request set). 0 disables.
   */
  mirostat?: 0 | 1 | 2;
  /** Mirostat's target surprise (entropy), in bits. */
  mirostatTau?: number;
  /** Mirostat's learning rate. */
  mirostatEta?: number;
  /** Keep the tokens within this many standard deviations of the best logit; <= 0 disables. */
  topNSigma?: number;
  /** XTC: the chance, per token, of removing every likely token but the least likely of them. */
  xtcProbability?: number;
  /** XTC: tokens at least this likely count as likely (above 0.5 nothing is removed). */
  xtcThreshold?: number;
  /** Dynamic temperature: the temperature moves within ± this range with the entropy; 0 disables. */
  dynatempRange?: number;
  /** Dynamic temperature: how entropy maps to temperature. */
  dynatempExponent?: number;
  /** DRY (don't repeat yourself) penalty multiplier; 0 disables. */
  dryMultiplier?: number;
  /** DRY: the penalty grows as `dryBase` to the power of the repeat's length past the allowed one. */
  dryBase?: number;
  /** DRY: repeats up to this many tokens go unpenalized. */
  dryAllowedLength?: number;
  /** DRY: how many recent tokens it looks at for repeats. */
  dryPenaltyLastN?: number;
  /** DRY: strings that end a repeat (a repeat never spans one). */
  drySequenceBreakers?: readonly string[];
  /**
   * The stages between the grammar and the draw, in this order, as llama-server's `samplers`
   * gives them: only these run (each once), then the draw. Default: llama.cpp's order
   * ({@link DEFAULT_SAMPLER_ORDER}) with every stage whose setting acts. Not with Mirostat.
   * `infill` gets at most {@link INFILL_MAX_CANDIDATES} candidates: a top-k of that many runs
   * right before it unless a smaller one runs earlier.
   */
  samplers?: readonly SamplerName[];
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
  Omit<SamplingParams, "seed" | "logitBias" | "grammar" | "grammarTriggers" | "samplers">
> = {
  temperature: 0.7,
  topK: 40,
  topP: 0.9,
  minP: 0.05,
  typicalP: 1,
  minKeep: 0,
  repeatPenalty: 1,
  repeatLastN: 64,
  frequencyPenalty: 0,
  presencePenalty: 0,
  mirostat: 0,
  mirostatTau: 5,
  mirostatEta: 0.1,
  topNSigma: -1,
  xtcProbability: 0,
  xtcThreshold: 0.1,
  dynatempRange: 0,
  dynatempExponent: 1,
  dryMultiplier: 0,
  dryBase: 1.75,
  dryAllowedLength: 2,
  dryPenaltyLastN: 64,
  drySequenceBreakers: ["\n", ":", '"', "*"],
};

/** A random 32-bit seed. */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0] as number;
}

/**
 * Turns sampling parameters into sampler chain stages: logit bias and grammar, then the stages in
 * llama.cpp's order (its tools' default: penalties, DRY, top-n-sigma, top-k, typical, top-p,
 * min-p, XTC, temperature) or the request's own `samplers`, then the draw. Temperature 0 (or
 * less) makes the draw greedy, after the penalties and DRY only unless `samplers` lists more.
 * With Mirostat: the penalties and DRY, then temperature and Mirostat's draw. `infill` follows a
 * top-k of at most {@link INFILL_MAX_CANDIDATES}: one of that many is added right before it where
 * the order has none.
 *
 * @param params User settings.
 * @param historyTokens The most tokens a sequence can hold (its context): the penalties' and
 *   DRY's look-back is capped at it, as each keeps a buffer of that many tokens (a
 *   `repeat_last_n` of 2^31 took 8 GB).
 * @returns Stages in application order, ending in `greedy`, `dist` or a Mirostat draw.
 * @example
 * ```ts
 * samplerStages({ temperature: 0 }); // [{ type: "greedy" }]
 * ```
 */
export function samplerStages(params: SamplingParams, historyTokens = Infinity): SamplerStage[] {
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
  const greedy = p.temperature <= 0;
  const mirostat = !greedy && p.mirostat !== 0;
  const seed = params.seed ?? randomSeed();
  const order = params.samplers ??
    (greedy || mirostat ? DEFAULT_SAMPLER_ORDER.slice(0, 2) : DEFAULT_SAMPLER_ORDER);
  let infillBounded = false;
  for (const name of new Set(order)) {
    const stage = name === "temperature" && greedy
      ? undefined
      : stageOf(name, p, seed, historyTokens);
    if (stage?.type === "top_k" && stage.k <= INFILL_MAX_CANDIDATES) infillBounded = true;
    if (stage?.type === "infill" && !infillBounded) {
      stages.push({ type: "top_k", k: INFILL_MAX_CANDIDATES });
    }
    if (stage) stages.push(stage);
  }
  if (greedy) stages.push({ type: "greedy" });
  else if (mirostat) stages.push(temperatureStage(p), mirostatStage(p, seed));
  else stages.push({ type: "dist", seed });
  return stages;
}

type Settings = typeof DEFAULT_SAMPLING;

/** One named stage with its settings, or undefined where the settings make it do nothing. */
function stageOf(
  name: SamplerName,
  p: Settings,
  seed: number,
  historyTokens: number,
): SamplerStage | undefined {
  switch (name) {
    case "penalties":
      if (p.repeatPenalty === 1 && p.frequencyPenalty === 0 && p.presencePenalty === 0) return;
      return {
        type: "penalties",
        lastN: Math.min(p.repeatLastN, historyTokens),
        repeat: p.repeatPenalty,
        frequency: p.frequencyPenalty,
        presence: p.presencePenalty,
      };
    case "dry":
      if (p.dryMultiplier <= 0 || p.dryPenaltyLastN <= 0) return;
      return {
        type: "dry",
        multiplier: p.dryMultiplier,
        base: p.dryBase,
        allowedLength: p.dryAllowedLength,
        lastN: Math.min(p.dryPenaltyLastN, historyTokens),
        breakers: [...p.drySequenceBreakers],
      };
    case "top_n_sigma":
      return p.topNSigma > 0 ? { type: "top_n_sigma", n: p.topNSigma } : undefined;
    case "top_k":
      return p.topK > 0 ? { type: "top_k", k: p.topK } : undefined;
    case "typ_p":
      return p.typicalP < 1 ? { type: "typical", p: p.typicalP, minKeep: p.minKeep } : undefined;
    case "top_p":
      return p.topP < 1 ? { type: "top_p", p: p.topP, minKeep: p.minKeep } : undefined;
    case "min_p":
      return p.minP > 0 ? { type: "min_p", p: p.minP, minKeep: p.minKeep } : undefined;
    case "xtc":
      if (p.xtcProbability <= 0 || p.xtcThreshold > 0.5) return;
      return {
        type: "xtc",
        probability: p.xtcProbability,
        threshold: p.xtcThreshold,
        minKeep: p.minKeep,
        seed,
      };
    case "temperature":
      return temperatureStage(p);
    case "infill":
      return { type: "infill" };
  }
}

/** The temperature, dynamic (following the candidates' entropy) where a range is given. */
function temperatureStage(p: Settings): SamplerStage {
  if (p.dynatempRange <= 0) return { type: "temp", temperature: p.temperature };
  return {
    type: "temp_ext",
    temperature: p.temperature,
    delta: p.dynatempRange,
    exponent: p.dynatempExponent,
  };
}

/** Mirostat's draw, version 1 or 2. */
function mirostatStage(p: Settings, seed: number): SamplerStage {
  const { mirostatTau: tau, mirostatEta: eta } = p;
  return p.mirostat === 1
    ? { type: "mirostat", seed, tau, eta }
    : { type: "mirostat_v2", seed, tau, eta };
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<
    T
  >;
}
