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
   * Builds a chain. The chain owns every stage it creates.
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
   * Builds a chain like {@link chain}, compiling grammar stages on a worker thread (a large
   * grammar takes long to compile and must not block the event loop).
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
        if (stage.type !== "grammar") continue;
        const grammar = cString(stage.grammar);
        const root = cString(stage.root ?? "root");
        const mark = llama.logMark();
        const lazy = stage.triggers ? triggerBuffers(stage.triggers) : undefined;
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
      const strings = stage.breakers.map(cString);
      const pointers = new BigUint64Array(
        strings.map((b) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)))),
      );
      const created = s.llama_sampler_init_dry(
        model.vocab,
        stage.multiplier,
        stage.base,
        stage.allowedLength,
        stage.lastN,
        new Uint8Array(pointers.buffer),
        BigInt(strings.length),
      );
      strings.length = 0; // keeps the strings alive until llama.cpp has copied them
      return created;
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
        const lazy = triggerBuffers(stage.triggers);
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
