/**
 * `Sampler`: an owned llama.cpp sampler chain built from a list of stages.
 *
 * @module
 */

import { cString } from "./cstring.ts";
import { NativeHandle } from "./handle.ts";
import { GrammarCheck, type GrammarThreadPlan } from "./grammar_check.ts";
import { takeSampledInGraph } from "./sampled_in_graph.ts";
import { LLAMA_TOKEN_NULL, LlamaLogitBias, LlamaSamplerChainParams } from "./layouts.ts";
import type { Context } from "./context.ts";
import type { Model } from "./model.ts";

/** One stage of a sampler chain, applied in order. */
export type SamplerStage =
  | { type: "greedy" }
  | { type: "dist"; seed: number }
  | { type: "temp"; temperature: number }
  /** Temperature that follows the candidates' entropy, within `temperature ± delta`. */
  | { type: "temp_ext"; temperature: number; delta: number; exponent: number }
  /** Keeps the tokens whose logits are within `n` standard deviations of the best one. */
  | { type: "top_n_sigma"; n: number }
  | { type: "top_k"; k: number }
  | { type: "top_p"; p: number; minKeep?: number }
  | { type: "min_p"; p: number; minKeep?: number }
  | { type: "typical"; p: number; minKeep?: number }
  | { type: "xtc"; probability: number; threshold: number; minKeep?: number; seed: number }
  | { type: "mirostat"; seed: number; tau: number; eta: number; m?: number }
  | { type: "mirostat_v2"; seed: number; tau: number; eta: number }
  | { type: "penalties"; lastN: number; repeat: number; frequency: number; presence: number }
  | {
    type: "dry";
    multiplier: number;
    base: number;
    allowedLength: number;
    lastN: number;
    breakers: string[];
  }
  | { type: "logit_bias"; bias: ReadonlyMap<number, number> }
  /**
   * Fill-in-the-middle: ends the answer where ending is about as likely as going on, and joins
   * the candidates whose text starts alike.
   */
  | { type: "infill" }
  | {
    type: "grammar";
    grammar: string;
    root?: string;
    /**
     * Makes the grammar lazy: it constrains nothing until the output matches one of these
     * regular expressions (ECMAScript syntax, searched anywhere), or one of the tokens is
     * sampled; from the match (its first group, if any) on, the output follows the grammar.
     * A pattern that is only an escaped literal, the text of one special token, waits for that
     * token instead (see {@link lazyTriggers}).
     */
    triggers?: { patterns: readonly string[]; tokens?: readonly number[] };
  };

/** Raised when llama.cpp rejects a sampler stage (mostly an invalid grammar). */
export class SamplerStageError extends Error {
  /** The stage type, e.g. `grammar`. */
  readonly stage: string;

  /**
   * @param stage The stage type.
   * @param reasons llama.cpp's log lines about it.
   */
  constructor(stage: string, reasons: readonly string[]) {
    super(`Invalid ${stage}` + (reasons.length ? `: ${reasons.join("; ")}` : ""));
    this.name = "SamplerStageError";
    this.stage = stage;
  }
}

/** Stage types that llama.cpp can run inside the decode graph (backend sampling). */
const DEVICE_STAGE_TYPES: ReadonlySet<SamplerStage["type"]> = new Set([
  "greedy",
  "dist",
  "temp",
  "top_k",
  "top_p",
  "min_p",
]);

/**
 * An owned sampler chain. A grammar stage is not in the native chain: it checks the chain's pick
 * and narrows the candidates only when it refuses it (`grammar_check.ts`).
 */
export class Sampler extends NativeHandle {
  readonly #model: Model;
  /** The stages, as given. */
  readonly stages: readonly SamplerStage[];
  /** Detaches the chain from the context it samples in, while it runs on a device. */
  #detachFromDevice: (() => void) | undefined;
  #claimedForDevice = false;
  #grammar: GrammarCheck | undefined;

  private constructor(model: Model, pointer: Deno.PointerObject, stages: SamplerStage[]) {
    const free = model.llama.symbols.llama_sampler_free;
    super("Sampler", pointer, () => free(pointer), [model]);
    this.#model = model;
    this.stages = stages;
  }

  /**
   * Builds a chain. The chain owns every stage it creates. A DRY stage is a clone of one kept
   * for its settings; the first for new settings is made here, on this thread ({@link build}
   * makes it on a worker thread).
   *
   * @param model The model (vocabulary size, grammar and DRY need it).
   * @param stages Stages in application order; the last must pick a token
   *   (`greedy`, `dist` or a mirostat).
   * @returns The chain; the caller owns it.
   * @throws {SamplerStageError} when llama.cpp rejects a stage (e.g. an invalid grammar).
   * @example
   * ```ts
   * using s = Sampler.chain(model, [{ type: "temp", temperature: 0.8 }, { type: "dist", seed: 1 }]);
   * ```
   */
  static chain(model: Model, stages: SamplerStage[]): Sampler {
    return Sampler.#assemble(model, stages, new Map());
  }

  /**
   * Builds a chain like {@link chain}, compiling grammar stages and new DRY stages on a worker
   * thread (a large grammar takes long to compile, and DRY matches each sequence breaker against
   * the whole vocabulary: neither may block the event loop).
   *
   * @param model The model.
   * @param stages Stages in application order.
   * @returns The chain; the caller owns it.
   * @throws {SamplerStageError} when llama.cpp rejects a stage, with llama.cpp's reason.
   * @example
   * ```ts
   * using s = await Sampler.build(model, [{ type: "grammar", grammar: 'root ::= "a"' }, { type: "greedy" }]);
   * ```
   */
  static async build(model: Model, stages: SamplerStage[]): Promise<Sampler> {
    const llama = model.llama;
    const compiled = new Map<SamplerStage, Deno.PointerObject>();
    try {
      for (const stage of stages) {
        if (stage.type === "dry") {
          const template = keptDryTemplate(model, stage) ?? await newDryTemplate(model, stage);
          const pointer = llama.symbols.llama_sampler_clone(template.pointer);
          if (pointer === null) throw new SamplerStageError(stage.type, []);
          compiled.set(stage, pointer);
          continue;
        }
        if (stage.type !== "grammar") continue;
        const grammar = cString(stage.grammar);
        const root = cString(stage.root ?? "root");
        const mark = llama.logMark();
        const lazy = stage.triggers
          ? triggerBuffers(lazyTriggers(model, stage.triggers))
          : undefined;
        // the worker thread reads them until the call ends
        const pinned: unknown[] = [grammar, root, lazy];
        const pointer = await llama.whileNative(() =>
          lazy
            ? llama.symbols.llama_sampler_init_grammar_lazy_patterns_nonblocking(
              model.vocab,
              grammar,
              root,
              lazy.patterns,
              lazy.patternCount,
              lazy.tokens,
              lazy.tokenCount,
            )
            : llama.symbols.llama_sampler_init_grammar_nonblocking(model.vocab, grammar, root)
        );
        pinned.length = 0;
        if (pointer === null) throw new SamplerStageError(stage.type, llama.recentProblems(mark));
        compiled.set(stage, pointer);
      }
      return Sampler.#assemble(model, stages, compiled);
    } catch (error) {
      for (const pointer of compiled.values()) llama.symbols.llama_sampler_free(pointer);
      throw error;
    }
  }

  /** Adds every stage to a new chain, taking the ones in `compiled` (they are consumed). */
  static #assemble(
    model: Model,
    stages: SamplerStage[],
    compiled: Map<SamplerStage, Deno.PointerObject>,
  ): Sampler {
    const s = model.llama.symbols;
    const params = LlamaSamplerChainParams.alloc();
    LlamaSamplerChainParams.set(params, "no_perf", true);
    const chain = s.llama_sampler_chain_init(params);
    if (chain === null) throw new Error("Cannot create a sampler chain");
    const sampler = new Sampler(model, chain, stages);
    const chained = stages.filter((stage) => stage.type !== "grammar");
    let grammar: Deno.PointerObject | undefined;
    try {
      if (stages.length - chained.length > 1) {
        throw new RangeError("A chain takes at most one grammar stage");
      }
      for (const stage of stages) {
        const mark = model.llama.logMark();
        const created = compiled.get(stage) ?? createStage(model, stage);
        compiled.delete(stage);
        if (created === null) {
          throw new SamplerStageError(stage.type, model.llama.recentProblems(mark));
        }
        if (stage.type === "grammar") grammar = created;
        else s.llama_sampler_chain_add(chain, created);
      }
      if (grammar) {
        sampler.#grammar = new GrammarCheck(s, grammar, chain, chained, model.nVocab);
        grammar = undefined; // the check owns it now
      }
    } catch (error) {
      if (grammar) s.llama_sampler_free(grammar);
      sampler.close();
      throw error;
    }
    return sampler;
  }

  /**
   * Samples (and accepts) a token from one output row of the last decode.
   *
   * @param context The context that decoded.
   * @param batchIndex Index of the row in the batch.
   * @returns The token id.
   */
  sample(context: Context, batchIndex: number): number {
    const s = this.#model.llama.symbols;
    if (this.sampledInGraph) {
      const token = takeSampledInGraph(s, context.pointer, this.pointer, batchIndex);
      if (token !== LLAMA_TOKEN_NULL) return token;
    }
    if (this.#grammar) {
      return this.#grammar.sample(context.pointer, batchIndex, () => context.logits(batchIndex));
    }
    return s.llama_sampler_sample(this.pointer, context.pointer, batchIndex);
  }

  /**
   * Whether every stage has a device version, so the whole chain can run inside the decode
   * graph (see `Context.attachSampler`). Grammar, logit bias, penalties, typical, XTC, DRY and
   * mirostat stages run on the CPU only.
   */
  get deviceCapable(): boolean {
    return this.stages.every((stage) => DEVICE_STAGE_TYPES.has(stage.type));
  }

  /** Whether the chain ran on a device once (see {@link claimForDevice}). */
  get claimedForDevice(): boolean {
    return this.#claimedForDevice;
  }

  /**
   * Marks the chain as running on a device (called by `Context.attachSampler`).
   *
   * @param detach Undoes the attachment; {@link close} calls it before freeing the chain.
   * @throws {Error} when the chain cannot run on a device or already did once (llama.cpp
   *   initialises a chain's device state only once).
   */
  claimForDevice(detach: () => void): void {
    void this.pointer;
    if (!this.deviceCapable) {
      throw new Error(
        `The sampler chain (${this.stages.map((s) => s.type).join(", ")}) cannot run on a device`,
      );
    }
    if (this.#claimedForDevice) throw new Error("The sampler chain already ran on a device");
    this.#claimedForDevice = true;
    this.#detachFromDevice = detach;
  }

  /** Whether a context runs the chain inside its decode graph (see {@link claimForDevice}). */
  get sampledInGraph(): boolean {
    return this.#detachFromDevice !== undefined;
  }

  /** Notes that the context no longer runs the chain (called by `Context.detachSampler`). */
  releasedByDevice(): void {
    this.#detachFromDevice = undefined;
  }

  /**
   * What a decode thread needs to pick as {@link sample} does with the grammar (undefined without
   * one); valid while the chain is open.
   */
  get grammarPlan(): GrammarThreadPlan | undefined {
    return this.#grammar?.plan;
  }

  /**
   * Picks its grammar refused so far in {@link sample}, each followed by a pick among the tokens
   * it allows (0 without a grammar; a decode thread's run counts its own, `DecodeRun.refusals`);
   * see `grammar_check.ts`.
   */
  get grammarRefusals(): number {
    return this.#grammar?.refusals ?? 0;
  }

  /** Detaches the chain from its context if it runs there, then frees it. Safe to call twice. */
  override close(): void {
    const detach = this.#detachFromDevice;
    this.#detachFromDevice = undefined;
    detach?.();
    this.#grammar?.close();
    super.close();
  }

  /**
   * Feeds the chain's history the prompt's last tokens, as llama-server does before a request's
   * first pick, so that repetition penalties and DRY count what the prompt says too. Only as many
   * as those stages look back; a grammar is left as it is (the prompt is not constrained output).
   *
   * @param prompt The request's prompt.
   */
  acceptPrompt(prompt: Int32Array): void {
    const lookBack = Math.max(
      0,
      ...this.stages.map((stage) =>
        stage.type === "penalties" || stage.type === "dry" ? stage.lastN : 0
      ),
    );
    const s = this.#model.llama.symbols;
    for (const token of prompt.subarray(Math.max(0, prompt.length - lookBack))) {
      s.llama_sampler_accept(this.pointer, token);
    }
  }

  /** Feeds a token the chain did not pick (e.g. prompt tokens, for repetition penalties). */
  accept(token: number): void {
    this.#model.llama.symbols.llama_sampler_accept(this.pointer, token);
    this.#grammar?.accept(token);
  }

  /** Resets the chain's state (penalty history, a grammar; the RNG stays seeded). */
  reset(): void {
    this.#model.llama.symbols.llama_sampler_reset(this.pointer);
    this.#grammar?.reset();
  }
}

function createStage(model: Model, stage: SamplerStage): Deno.PointerValue {
  const s = model.llama.symbols;
  const minKeep = (n?: number) => BigInt(n ?? 1);
  switch (stage.type) {
    case "greedy":
      return s.llama_sampler_init_greedy();
    case "dist":
      return s.llama_sampler_init_dist(stage.seed >>> 0);
    case "temp":
      return s.llama_sampler_init_temp(stage.temperature);
    case "temp_ext":
      return s.llama_sampler_init_temp_ext(stage.temperature, stage.delta, stage.exponent);
    case "top_n_sigma":
      return s.llama_sampler_init_top_n_sigma(stage.n);
    case "top_k":
      // Above the vocabulary it keeps every token, as on the CPU; in the decode graph a k above
      // the logits' count fails an assertion that ends the process.
      return s.llama_sampler_init_top_k(Math.min(stage.k, model.nVocab));
    case "top_p":
      return s.llama_sampler_init_top_p(stage.p, minKeep(stage.minKeep));
    case "min_p":
      return s.llama_sampler_init_min_p(stage.p, minKeep(stage.minKeep));
    case "typical":
      return s.llama_sampler_init_typical(stage.p, minKeep(stage.minKeep));
    case "xtc":
      return s.llama_sampler_init_xtc(
        stage.probability,
        stage.threshold,
        minKeep(stage.minKeep),
        stage.seed >>> 0,
      );
    case "mirostat":
      return s.llama_sampler_init_mirostat(
        model.nVocab,
        stage.seed >>> 0,
        stage.tau,
        stage.eta,
        stage.m ?? 100,
      );
    case "mirostat_v2":
      return s.llama_sampler_init_mirostat_v2(stage.seed >>> 0, stage.tau, stage.eta);
    case "penalties":
      return s.llama_sampler_init_penalties(
        model.nVocab,
        stage.lastN,
        stage.repeat,
        stage.frequency,
        stage.presence,
      );
    case "dry": {
      let template = keptDryTemplate(model, stage);
      if (!template) {
        const breakers = breakerBuffers(stage.breakers);
        const created = s.llama_sampler_init_dry(model.vocab, ...dryArguments(stage, breakers));
        breakers.strings.length = 0; // keeps the strings alive until llama.cpp has copied them
        if (created === null) return null;
        template = keepDryTemplate(model, stage, created);
      }
      return s.llama_sampler_clone(template.pointer);
    }
    case "infill":
      return s.llama_sampler_init_infill(model.vocab);
    case "logit_bias": {
      const entries = [...stage.bias];
      const buf = new Uint8Array(Math.max(1, entries.length) * LlamaLogitBias.size);
      entries.forEach(([token, bias], i) => {
        const row = buf.subarray(i * LlamaLogitBias.size, (i + 1) * LlamaLogitBias.size);
        LlamaLogitBias.set(row, "token", token);
        LlamaLogitBias.set(row, "bias", bias);
      });
      return s.llama_sampler_init_logit_bias(model.nVocab, entries.length, buf);
    }
    case "grammar": {
      if (stage.triggers) {
        const lazy = triggerBuffers(lazyTriggers(model, stage.triggers));
        return s.llama_sampler_init_grammar_lazy_patterns(
          model.vocab,
          cString(stage.grammar),
          cString(stage.root ?? "root"),
          lazy.patterns,
          lazy.patternCount,
          lazy.tokens,
          lazy.tokenCount,
        );
      }
      return s.llama_sampler_init_grammar(
        model.vocab,
        cString(stage.grammar),
        cString(stage.root ?? "root"),
      );
    }
  }
}

/**
 * The C arrays of a lazy grammar's triggers: `const char **` patterns and `llama_token *`
 * tokens. `strings` keeps the pattern bytes alive while C reads the pointers.
 */
function triggerBuffers(triggers: { patterns: readonly string[]; tokens?: readonly number[] }) {
  const strings = triggers.patterns.map(cString);
  const pointers = new BigUint64Array(
    Math.max(1, strings.length),
  );
  strings.forEach((b, i) => {
    pointers[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
  });
  const tokens = new Int32Array(Math.max(1, triggers.tokens?.length ?? 0));
  tokens.set(triggers.tokens ?? []);
  return {
    strings,
    patterns: new Uint8Array(pointers.buffer),
    patternCount: BigInt(strings.length),
    tokens: new Uint8Array(tokens.buffer),
    tokenCount: BigInt(triggers.tokens?.length ?? 0),
  };
}

/** `llama_token_attr` bits of the tokens llama.cpp splits out of a text before tokenizing it. */
const LLAMA_TOKEN_ATTR_CONTROL = 1 << 3;
const LLAMA_TOKEN_ATTR_USER_DEFINED = 1 << 4;

/** An ECMAScript pattern made only of literal characters and escaped metacharacters. */
const ESCAPED_LITERAL = /^(?:[^.*+?^${}()|[\]\\]|\\[.*+?^${}()|[\]\\/])+$/;

/**
 * A lazy grammar's triggers as llama.cpp should get them: each pattern that is only an escaped
 * literal whose text is one special token of the vocabulary (a control or user-defined token,
 * e.g. Qwen's `<tool_call>`) becomes a trigger token, as llama-server makes its trigger words.
 * llama.cpp searches every remaining pattern through everything generated so far, once a token,
 * until it matches (0.7 ms a token at 60 KB of text); a trigger token costs a comparison.
 * Special tokens are cut out of a text before it is tokenized, so a model writes the marker as
 * that token; only spelling it out of ordinary pieces no longer starts the grammar.
 *
 * @param model The model whose vocabulary samples.
 * @param triggers Patterns (ECMAScript syntax) and tokens.
 * @returns The same triggers, the literal special tokens moved from the patterns to the tokens.
 * @example
 * ```ts
 * lazyTriggers(qwen, { patterns: ["<tool_call>"] }); // { patterns: [], tokens: [151657] }
 * ```
 */
export function lazyTriggers(
  model: Model,
  triggers: { patterns: readonly string[]; tokens?: readonly number[] },
): { patterns: string[]; tokens: number[] } {
  const patterns: string[] = [];
  const tokens = [...(triggers.tokens ?? [])];
  for (const pattern of triggers.patterns) {
    const token = ESCAPED_LITERAL.test(pattern)
      ? specialToken(model, pattern.replace(/\\(.)/g, "$1"))
      : undefined;
    if (token === undefined) patterns.push(pattern);
    else tokens.push(token);
  }
  return { patterns, tokens };
}

/** The special token whose text is `text` exactly, if there is one. */
function specialToken(model: Model, text: string): number | undefined {
  const tokens = model.tokenize(text, { addSpecial: false, parseSpecial: true });
  const token = tokens[0];
  if (tokens.length !== 1 || token === undefined) return undefined;
  const attr = model.llama.symbols.llama_vocab_get_attr(model.vocab, token);
  const special = (attr & (LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_USER_DEFINED)) !== 0;
  return special && model.tokenText(token) === text ? token : undefined;
}

/** DRY templates kept per model, the least recently used dropped first. */
const DRY_TEMPLATES_KEPT = 8;

/**
 * A DRY stage that never samples, kept so that chains with its settings clone it: llama.cpp's
 * DRY init matches each sequence breaker against the whole vocabulary (29 ms for the 4 default
 * breakers, 2.1 s for 32 long ones on a 152k-token vocabulary), its clone copies the result.
 */
class DryTemplate extends NativeHandle {
  /**
   * @param model The model whose vocabulary processed the breakers.
   * @param pointer `llama_sampler *` of the DRY stage; owned from now on.
   */
  constructor(model: Model, pointer: Deno.PointerObject) {
    const free = model.llama.symbols.llama_sampler_free;
    super("DryTemplate", pointer, () => free(pointer), [model]);
  }
}

/** Per model, its DRY templates by {@link dryKey}, oldest use first. */
const dryTemplates = new WeakMap<Model, Map<string, DryTemplate>>();

/** What makes DRY stages alike: all of a stage's settings (a clone copies them). */
function dryKey(stage: Extract<SamplerStage, { type: "dry" }>): string {
  return JSON.stringify([
    stage.multiplier,
    stage.base,
    stage.allowedLength,
    stage.lastN,
    stage.breakers,
  ]);
}

/**
 * Whether a chain of these stages can be made at once, on the calling thread: no grammar to
 * compile, and no DRY stage whose sequence breakers are not matched against the vocabulary yet
 * (2 s for 32 long ones). Otherwise {@link Sampler.build} makes it off the event loop.
 *
 * @param model The model the chain samples for.
 * @param stages The chain's stages.
 * @returns True when `Sampler.chain` would not hold the thread long.
 * @example
 * ```ts
 * madeAtOnce(model, [{ type: "greedy" }]); // true
 * ```
 */
export function madeAtOnce(model: Model, stages: readonly SamplerStage[]): boolean {
  return stages.every((stage) =>
    stage.type !== "grammar" &&
    (stage.type !== "dry" || dryTemplates.get(model)?.get(dryKey(stage))?.closed === false)
  );
}

/** The kept template for `stage`, marked as used now; undefined when there is none. */
function keptDryTemplate(
  model: Model,
  stage: Extract<SamplerStage, { type: "dry" }>,
): DryTemplate | undefined {
  const kept = dryTemplates.get(model);
  const key = dryKey(stage);
  const template = kept?.get(key);
  if (!kept || !template) return undefined;
  kept.delete(key);
  if (template.closed) return undefined; // the model closed it
  kept.set(key, template);
  return template;
}

/** Keeps a new DRY stage as the template for `stage`'s settings, dropping the oldest past the limit. */
function keepDryTemplate(
  model: Model,
  stage: Extract<SamplerStage, { type: "dry" }>,
  pointer: Deno.PointerObject,
): DryTemplate {
  const template = new DryTemplate(model, pointer);
  const kept = dryTemplates.get(model) ?? new Map<string, DryTemplate>();
  dryTemplates.set(model, kept);
  const key = dryKey(stage);
  kept.get(key)?.close();
  kept.delete(key);
  kept.set(key, template);
  for (const [oldest, old] of kept) {
    if (kept.size <= DRY_TEMPLATES_KEPT) break;
    kept.delete(oldest);
    old.close();
  }
  return template;
}

/** Makes the template for `stage`'s settings on a worker thread, and keeps it. */
async function newDryTemplate(
  model: Model,
  stage: Extract<SamplerStage, { type: "dry" }>,
): Promise<DryTemplate> {
  const llama = model.llama;
  const mark = llama.logMark();
  const breakers = breakerBuffers(stage.breakers); // read by the worker thread until it returns
  const pointer = await llama.whileNative(() =>
    llama.symbols.llama_sampler_init_dry_nonblocking(model.vocab, ...dryArguments(stage, breakers))
  );
  breakers.strings.length = 0;
  if (pointer === null) throw new SamplerStageError(stage.type, llama.recentProblems(mark));
  return keepDryTemplate(model, stage, pointer);
}

/** `llama_sampler_init_dry`'s arguments after the vocabulary. */
function dryArguments(
  stage: Extract<SamplerStage, { type: "dry" }>,
  breakers: ReturnType<typeof breakerBuffers>,
): [number, number, number, number, Uint8Array, bigint] {
  return [
    stage.multiplier,
    stage.base,
    stage.allowedLength,
    stage.lastN,
    breakers.pointers,
    BigInt(breakers.strings.length),
  ];
}

/**
 * DRY's sequence breakers as a `const char **`; `strings` keeps their bytes alive while C reads
 * the pointers.
 */
function breakerBuffers(breakers: readonly string[]) {
  const strings = breakers.map(cString);
  const pointers = new BigUint64Array(
    Math.max(1, strings.length),
  );
  strings.forEach((b, i) => {
    pointers[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
  });
  return { strings, pointers: new Uint8Array(pointers.buffer) };
}
