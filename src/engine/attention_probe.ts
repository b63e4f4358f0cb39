/**
 * Which of llama.cpp's two CPU attention kernels suits this machine: the fused one (flash
 * attention) or the unfused one (a matrix product, a softmax and another product). Which is
 * faster depends on the processor, not only on the model. On the 2-core machine of 2026-12-03
 * the fused kernel halved a lone sequence's decode after 1,000 tokens of context (llama-bench
 * tg128 44 against 85 tok/s); on the Zen 5 EPYC of 2026-12-04 it decoded 16% faster without
 * context, 4% slower after 1,000 tokens, and read prompts 25% faster.
 *
 * So the probe times both on the machine itself: it builds a model with the served model's heads
 * and head sizes but almost nothing else (`attention_probe_model.ts`), decodes a typical request
 * with each kernel on the same threads as the served context (a prompt, then one token at a
 * time), alternating the kernels over a few rounds, and weighs a request's prompt and its
 * generated tokens. The fused kernel is llama.cpp's own choice and needs no scores buffer, so the
 * unfused one must win by a margin ({@link UNFUSED_MARGIN}). A close call takes more rounds
 * before the verdict ({@link isCloseCall}): a few rounds on a busy machine can read one kernel's
 * tokens twice as slow as the next few do (on a 2-core AVX2 EPYC, one probe in ten chose the
 * fused kernel that way, where the unfused one decodes 1.5x faster at the request's depth).
 *
 * @module
 */

import { join } from "node:path";
import { Batch } from "../ffi/batch.ts";
import { Context } from "../ffi/context.ts";
import type { Llama } from "../ffi/llama.ts";
import { Model } from "../ffi/model.ts";
import { median } from "../util/median.ts";
import {
  type AttentionDims,
  PROBE_VOCAB,
  writeAttentionProbeModel,
} from "./attention_probe_model.ts";

/** The CPU attention kernels. */
export type AttentionKernel = "fused" | "unfused";

/** What one kernel took for the probe's request (medians over the rounds). */
export interface KernelTimes {
  /** Decoding the prompt, in ms. */
  promptMs: number;
  /** Decoding one generated token after it, in ms. */
  tokenMs: number;
}

/** The request the probe weighs both kernels by. */
export interface TypicalRequest {
  /** Prompt tokens (one decode). */
  promptTokens: number;
  /** Generated tokens, each at about the prompt's depth. */
  generatedTokens: number;
}

/** Both kernels' times and the choice. */
export interface AttentionProbe extends TypicalRequest {
  fused: KernelTimes;
  unfused: KernelTimes;
  /** The kernel chosen. */
  kernel: AttentionKernel;
  /** How long the probe took, in ms (0 when the answer came from the cache). */
  elapsedMs: number;
  /**
   * Whether each kernel's prompt took about as long in every round (the slowest within
   * {@link STEADY_SPREAD} of the fastest). A busy machine makes rounds differ, and a verdict
   * from such a probe is used but not remembered on disk.
   */
  steady: boolean;
}

/** Most ratio of a kernel's slowest prompt round to its fastest for a steady probe. */
export const STEADY_SPREAD = 1.5;

/** The unfused kernel is chosen when the request costs it less than this share of the fused one. */
export const UNFUSED_MARGIN = 0.9;
/** Rounds of the probe: each decodes the request once with either kernel. */
export const ROUNDS = 3;
/** Rounds added, one at a time while the call stays close, when the first {@link ROUNDS} make a close call. */
export const CLOSE_CALL_ROUNDS = 4;
/**
 * How near {@link UNFUSED_MARGIN} the unfused kernel's share of the fused one's cost is in a
 * close call.
 */
export const CLOSE_CALL_BAND = 0.1;
/** Generated tokens timed in each round. */
const TIMED_TOKENS = 12;

/**
 * The request the probe weighs both kernels by: a 512-token prompt (one micro-batch, a chat's
 * system prompt and a few turns) and 256 generated tokens.
 */
export const TYPICAL_REQUEST: Readonly<TypicalRequest> = {
  promptTokens: 512,
  generatedTokens: 256,
};

/**
 * The kernel that serves a request faster: the unfused one only when it costs less than
 * {@link UNFUSED_MARGIN} of the fused one.
 *
 * @param fused The fused kernel's times.
 * @param unfused The unfused kernel's times.
 * @param request The request to weigh them by.
 * @returns The kernel to use.
 * @example
 * ```ts
 * const request = { promptTokens: 512, generatedTokens: 256 };
 * chooseKernel({ promptMs: 40, tokenMs: 0.4 }, { promptMs: 80, tokenMs: 0.3 }, request); // "fused"
 * chooseKernel({ promptMs: 40, tokenMs: 0.9 }, { promptMs: 45, tokenMs: 0.4 }, request); // "unfused"
 * ```
 */
export function chooseKernel(
  fused: KernelTimes,
  unfused: KernelTimes,
  request: TypicalRequest,
): AttentionKernel {
  return unfusedShare(fused, unfused, request) < UNFUSED_MARGIN ? "unfused" : "fused";
}

/**
 * Whether the kernels' times leave the choice too close to call: the unfused kernel's cost
 * within {@link CLOSE_CALL_BAND} of {@link UNFUSED_MARGIN} times the fused one's.
 *
 * @param fused The fused kernel's times.
 * @param unfused The unfused kernel's times.
 * @param request The request to weigh them by.
 * @returns True when more rounds should decide.
 * @example
 * ```ts
 * const request = { promptTokens: 512, generatedTokens: 256 };
 * isCloseCall({ promptMs: 100, tokenMs: 0 }, { promptMs: 95, tokenMs: 0 }, request); // true
 * isCloseCall({ promptMs: 100, tokenMs: 0 }, { promptMs: 60, tokenMs: 0 }, request); // false
 * ```
 */
export function isCloseCall(
  fused: KernelTimes,
  unfused: KernelTimes,
  request: TypicalRequest,
): boolean {
  return Math.abs(unfusedShare(fused, unfused, request) - UNFUSED_MARGIN) <= CLOSE_CALL_BAND;
}

/**
 * Whether the probe takes another round after `roundsDone`: always until {@link ROUNDS}, then while
 * the rounds so far make a close call, up to {@link CLOSE_CALL_ROUNDS} more.
 *
 * @param roundsDone Rounds timed so far.
 * @param samples Each kernel's times of those rounds (a prompt and tokens per round).
 * @param request The request to weigh them by.
 * @returns True for another round.
 * @example
 * ```ts
 * wantsRound(0, { fused: { prompt: [], token: [] }, unfused: { prompt: [], token: [] } }, request);
 * // true
 * ```
 */
export function wantsRound(
  roundsDone: number,
  samples: Record<AttentionKernel, KernelSamples>,
  request: TypicalRequest,
): boolean {
  if (roundsDone < ROUNDS) return true;
  return roundsDone < ROUNDS + CLOSE_CALL_ROUNDS &&
    isCloseCall(medians(samples.fused), medians(samples.unfused), request);
}

/** The unfused kernel's cost for the request as a share of the fused one's. */
function unfusedShare(fused: KernelTimes, unfused: KernelTimes, request: TypicalRequest): number {
  const cost = (times: KernelTimes) => times.promptMs + request.generatedTokens * times.tokenMs;
  return cost(unfused) / cost(fused);
}

/**
 * A model's attention dimensions: its heads, and its head sizes from the GGUF's
 * `<arch>.attention.key_length` / `value_length` (else the embedding width over the heads).
 *
 * @param model The loaded model.
 * @returns What the probe model copies.
 * @example
 * ```ts
 * modelAttentionDims(model); // { heads: 32, headsKv: 8, keyLength: 128, valueLength: 128 }
 * ```
 */
export function modelAttentionDims(model: Model): AttentionDims {
  const heads = model.nHead;
  const arch = model.metadataValue("general.architecture");
  const size = (key: string) => {
    const value = Number(model.metadataValue(`${arch}.attention.${key}`));
    return Number.isInteger(value) && value > 0 ? value : Math.floor(model.nEmbd / heads);
  };
  return {
    heads,
    headsKv: model.nHeadKv || heads,
    keyLength: size("key_length"),
    valueLength: size("value_length"),
  };
}

/** Options for {@link probeAttentionKernels}. */
export interface ProbeOptions {
  /** Threads of the served context (the probe's contexts use as many). */
  threads: number;
}

/**
 * Times both CPU attention kernels for a model's attention on this machine and chooses one.
 * Takes tens of milliseconds for small heads, a few hundred for a 70B model's, on 2 cores.
 *
 * @param llama The runtime.
 * @param dims The served model's heads and head sizes.
 * @param options Threads.
 * @returns The times and the choice.
 * @throws {Error} when the dimensions are no attention's (no heads, or key/value heads that do
 *   not divide the heads); {ModelLoadError} / {ContextCreateError} / {DecodeError} when llama.cpp
 *   refuses the probe model.
 * @example
 * ```ts
 * const dims = { heads: 12, headsKv: 12, keyLength: 64, valueLength: 64 };
 * const probe = await probeAttentionKernels(llama, dims, { threads: 2 });
 * console.log(probe.kernel, probe.fused, probe.unfused);
 * ```
 */
export async function probeAttentionKernels(
  llama: Llama,
  dims: AttentionDims,
  options: ProbeOptions,
): Promise<AttentionProbe> {
  const { heads, headsKv, keyLength, valueLength } = dims;
  const sizes = [heads, headsKv, keyLength, valueLength];
  if (!sizes.every((n) => Number.isInteger(n) && n > 0) || heads % headsKv !== 0) {
    // A recurrent model, or a first layer without attention: nothing llama.cpp could build.
    throw new Error(`No attention to probe: ${JSON.stringify(dims)}`);
  }
  return await llama.aside("attention probe", () => timeBothKernels(llama, dims, options));
}

async function timeBothKernels(
  llama: Llama,
  dims: AttentionDims,
  options: ProbeOptions,
): Promise<AttentionProbe> {
  const started = performance.now();
  const request = TYPICAL_REQUEST;
  const dir = await Deno.makeTempDir({ prefix: "shimmy-attention-probe-" });
  try {
    const path = join(dir, "probe.gguf");
    await writeAttentionProbeModel(path, dims);
    using model = await Model.load(llama, path, { devices: [] });
    const create = (flashAttn: "enabled" | "disabled") =>
      Context.create(model, {
        nCtx: request.promptTokens + TIMED_TOKENS,
        nBatch: request.promptTokens,
        nUbatch: request.promptTokens,
        nSeqMax: 1,
        nThreads: options.threads,
        flashAttn,
      });
    using fusedContext = await create("enabled");
    using unfusedContext = await create("disabled");
    using batch = new Batch(llama, request.promptTokens);
    const samples = { fused: newSamples(), unfused: newSamples() };
    for (let round = 0; wantsRound(round, samples, request); round++) {
      // Alternating which goes first spreads a slow moment of the machine over both.
      const order = round % 2 === 0 ? ["fused", "unfused"] as const : ["unfused", "fused"] as const;
      for (const kernel of order) {
        const context = kernel === "fused" ? fusedContext : unfusedContext;
        await timeRequest(context, batch, request.promptTokens, samples[kernel]);
      }
    }
    const fused = medians(samples.fused);
    const unfused = medians(samples.unfused);
    return {
      ...request,
      fused,
      unfused,
      kernel: chooseKernel(fused, unfused, request),
      elapsedMs: performance.now() - started,
      steady: [samples.fused, samples.unfused].every(({ prompt }) =>
        Math.max(...prompt) <= STEADY_SPREAD * Math.min(...prompt)
      ),
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** One kernel's timed prompts and tokens, in ms. */
export interface KernelSamples {
  prompt: number[];
  token: number[];
}

function newSamples(): KernelSamples {
  return { prompt: [], token: [] };
}

/** Decodes a prompt and {@link TIMED_TOKENS} tokens after it on an emptied context. */
async function timeRequest(
  context: Context,
  batch: Batch,
  promptTokens: number,
  samples: KernelSamples,
): Promise<void> {
  context.clearMemory();
  batch.clear();
  for (let i = 0; i < promptTokens; i++) {
    batch.add(i % PROBE_VOCAB, i, 0, i === promptTokens - 1);
  }
  let start = performance.now();
  await context.decode(batch);
  samples.prompt.push(performance.now() - start);
  for (let i = 0; i < TIMED_TOKENS; i++) {
    batch.clear();
    batch.add(i % PROBE_VOCAB, promptTokens + i, 0, true);
    start = performance.now();
    await context.decode(batch);
    samples.token.push(performance.now() - start);
  }
}

function medians(samples: KernelSamples): KernelTimes {
  const microseconds = (values: number[]) => Math.round(median(values) * 1000) / 1000;
  return { promptMs: microseconds(samples.prompt), tokenMs: microseconds(samples.token) };
}
