/**
 * The per-model scheduler: owns one `llama_context` with N slots (sequences) and runs
 * continuous batching. Each step admits queued requests into free slots (the slot whose cached
 * tokens share the longest prefix with the prompt, so only the rest is evaluated), builds one
 * batch of prompt chunks plus one token per generating slot (while any slot generates, a long
 * prompt goes in chunks that keep a step at most 1.5× a generation-only step; see
 * prefill_budget.ts),
 * runs one decode on a worker thread (the event loop streams the previous step's tokens
 * meanwhile), samples every slot with its own sampler chain (inside the decode graph when
 * device sampling is on and the chain allows it), and streams text to each request. Aborted
 * and finished slots are freed before the next step; never two decodes run on the context.
 * Requests with different LoRA adapters take turns rather than share a step. A request's
 * sampler chain is built before it joins the queue (a grammar compiles on a worker thread), and
 * an unexpected error in a step fails the requests of that step, never the loop. The first step
 * after an idle spell waits (at most 10 ms) for requests the server counts on their way, so a
 * burst shares one prompt step; a lone request starts at once. When each slot has a KV stream of
 * its own (the default), requests are placed and moved so that the busy slots stay one run of
 * consecutive sequence ids, which llama.cpp decodes in one pass (see slot_placement.ts), and short
 * prompts that start together give up a few cached tokens to evaluate as many tokens each (a pass
 * over the weights per distinct count otherwise).
 *
 * @module
 */

import { basename } from "node:path";
import { setImmediate } from "node:timers";
import { Batch } from "../ffi/batch.ts";
import type { Context, DecodeTimes } from "../ffi/context.ts";
import type { Model } from "../ffi/model.ts";
import { LLAMA_TOKEN_NULL } from "../ffi/layouts.ts";
import type { DecodedStep, DecodeRun } from "../ffi/decode_thread.ts";
import { MAX_ENDS } from "../ffi/decode_thread_control.ts";
import { DecodeError } from "../ffi/errors.ts";
import { applyLoraAdapters, type LoraAdapter } from "../ffi/lora.ts";
import { madeAtOnce, Sampler, type SamplerStage, SamplerStageError } from "../ffi/sampler.ts";
import { AsyncQueue } from "./async_queue.ts";
import { BurstLinger } from "./burst_linger.ts";
import { contextOverflow, GenerationError } from "./errors.ts";
import { GrammarChecks } from "./grammar_checks.ts";
import { chunksBehind, firstGroupSize, PrefillBudget, type StepCosts } from "./prefill_budget.ts";
import {
  type BatchSequence,
  burstWindow,
  busyRuns,
  compactingMove,
  runKeepingTargets,
  type SplitPasses,
  splitPasses,
} from "./slot_placement.ts";
import { samplerStages, type SamplingParams } from "./sampling.ts";
import { AvailableMemory, CacheSwapCost, swapMemoryBound } from "./swap_cost.ts";
import { SpareChains } from "./spare_chains.ts";
import { ReasoningBudget, type ReasoningBudgetSpec } from "./reasoning_budget.ts";
import { packSlotTokens, SlotFileError, unpackSlotTokens } from "./slot_file.ts";
import { checkSlotFileCells } from "./slot_file_cells.ts";
import { stepLogprobs, type TokenLogprob } from "./logprobs.ts";
import { TextStream } from "./text_stream.ts";
import {
  GUARDED_LAST_BYTES,
  guardsNextStep,
  unfinishedCharacter,
  Utf8Guard,
} from "./utf8_guard.ts";

/** An adapter and its scale. */
export interface LoraChoice {
  adapter: LoraAdapter;
  scale: number;
}

/** One generation to run. */
export interface GenerationRequest {
  /** LoRA adapters for this request; default: the scheduler's default set. */
  lora?: readonly LoraChoice[];
  /** Prompt tokens (BOS included when wanted). */
  prompt: Int32Array;
  /**
   * Most tokens to generate (0: none, only the prompt is counted); default, and at most: what
   * is left of the slot's context (then generation ends with `"length"`).
   */
  maxTokens?: number;
  /**
   * With `maxTokens` 0, evaluate the prompt all the same, into a slot's cache, so that a later
   * request that starts alike finds it there (the warm-up requests of llama-server's clients).
   * Default false: such a request is answered at once.
   */
  fillCache?: boolean;
  /**
   * The prompts of one client request (`/v1/completions` with an array of prompts) share a group:
   * the queue takes one of its prompts at a time in turn with other requests (a request with the
   * fewest slots running goes first), and the group counts once against `maxQueue`. Without it a
   * request of 64 prompts queued ahead of everyone who came after it.
   */
  group?: object;
  /**
   * False: evaluate the whole prompt, reusing nothing of a slot's cache (llama-server's
   * `cache_prompt`), where a prompt evaluated after a cached prefix can give slightly different
   * logits than one evaluated whole. Default true.
   */
  cachePrompt?: boolean;
  /** Sampling settings. */
  sampling?: SamplingParams;
  /** Stop strings (never part of the output). */
  stop?: readonly string[];
  /** Token ids that end generation like end-of-generation tokens (template end markers). */
  stopTokens?: readonly number[];
  /**
   * When prompt + max tokens do not fit the slot's context, drop the oldest prompt tokens
   * (a leading BOS is kept) instead of refusing. Default false: nothing is cut silently.
   */
  truncate?: boolean;
  /** Keep going past end-of-generation tokens. Default false. */
  ignoreEos?: boolean;
  /**
   * End (as `"length"`) where a line after the first starts with fewer spaces or tabs than this
   * (llama-server's `n_indent`, for code completion); that line's indentation is kept, the rest
   * of it is not. Default 0: never.
   */
  minIndent?: number;
  /**
   * End (as `"length"`) at the first newline generated after this many ms of generating
   * (llama-server's `t_max_predict_ms`: a completion shown while typing stays quick, and whole
   * lines). Default: no limit.
   */
  lineTimeLimitMs?: number;
  /** Aborts the generation (client gone, stop frame…). */
  signal?: AbortSignal;
  /**
   * Report each generated token's log-probability with this many of the step's most likely
   * tokens (0–20). Default: none, and nothing is computed.
   */
  logprobs?: number;
  /**
   * The most tokens the model may generate inside its thinking block before the block is closed
   * for it (see `reasoning_budget.ts`). Default: no limit. Such a request samples on the CPU.
   */
  reasoningBudget?: ReasoningBudgetSpec;
}

/** Why a generation ended. */
export type FinishReason = "stop" | "length" | "cancelled";

/**
 * Decides whether a slot file is written ({@link Scheduler.saveSlot}), told its size before a
 * byte of it is: runs `write` (perhaps after waiting its turn) and returns what it returned, the
 * bytes written (0 when llama.cpp could not write them), or throws to refuse the file. Every
 * stream of the model waits meanwhile, as for a step; the slot's cache is unchanged either way.
 *
 * @example
 * ```ts
 * const upTo1GiB: SlotFileAdmit = (bytes, write) => {
 *   if (bytes > 2 ** 30) throw new Error("Slot file too large: save a shorter cache");
 *   return write();
 * };
 * ```
 */
export type SlotFileAdmit = (bytes: number, write: () => Promise<number>) => Promise<number>;

/** What one slot is doing (see {@link Scheduler.slotViews}). */
export interface SlotView {
  /** The slot's number (its sequence id). */
  id: number;
  /** The request it serves, while it serves one. */
  request?: {
    /** Tokens in the prompt. */
    promptTokens: number;
    /** Of them, taken from the cache. */
    cachedTokens: number;
    /** Of them, in the cache by now (cached or evaluated). */
    promptDone: number;
    /** Tokens generated so far. */
    generated: number;
    /** Tokens it may still generate. */
    remaining: number;
  };
}

/** A piece of generated text. */
export interface GenerationChunk {
  /** Text safe to show (complete UTF-8, no stop string). */
  text: string;
  /** Tokens generated so far. */
  completionTokens: number;
  /** Ids of the tokens generated since the previous chunk (whose text this chunk holds or ends). */
  tokens: number[];
  /** Log-probabilities of the tokens behind this text, when the request asked for them. */
  logprobs?: TokenLogprob[];
}

/** The final outcome of a generation. */
export interface GenerationResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  /** The stop string that ended it, if any. */
  stoppedBy?: string;
  promptTokens: number;
  /** Prompt tokens reused from the slot's cache instead of evaluated. */
  cachedTokens: number;
  completionTokens: number;
  timings: GenerationTimings;
  /** Log-probabilities of the tokens behind `text`, when the request asked for them. */
  logprobs?: TokenLogprob[];
  /**
   * The prompt was evaluated once for several choices (see {@link Scheduler.submitChoices}) and
   * this one reused it: count its prompt tokens once per request, with the first choice.
   */
  sharedPrompt?: boolean;
}

/** Timings of one generation, in milliseconds and tokens per second. */
export interface GenerationTimings {
  queueMs: number;
  promptMs: number;
  /** Time to first token, from admission. */
  ttftMs: number;
  generateMs: number;
  promptPerSecond: number;
  generatePerSecond: number;
}

/** A running generation: iterate it for text chunks, await `result` for the outcome. */
export interface Generation extends AsyncIterable<GenerationChunk> {
  /** Resolves when generation ends; rejects with a {@link GenerationError}. */
  readonly result: Promise<GenerationResult>;
  /**
   * Resolves once a step has started after the request was queued: the request is in that step
   * (its prompt), or waits for a slot, or has ended. Never rejects. A server's handler that
   * waits for it before it answers leaves the event loop meanwhile to the requests of the same
   * burst that are still being prepared, which the first step waits for.
   */
  readonly scheduled: Promise<void>;
}

/** Options for {@link Scheduler}. */
export interface SchedulerOptions {
  /** Most queued (not yet admitted) requests; more are refused. Default 64. */
  maxQueue?: number;
  /** Context tokens per slot. Default: context size / slots. */
  slotContext?: number;
  /**
   * Run each request's sampler chain inside the decode graph when every stage of it has a
   * device version (greedy, temperature, top-k, top-p, min-p, seeded draw), so a step returns
   * chosen tokens instead of full rows of logits. Other requests sample on the CPU beside them.
   * Default false.
   */
  deviceSampling?: boolean;
  /**
   * Requests on their way to this scheduler (a server's: being read, parsed or prepared by
   * their handlers). The first step after an idle spell waits for them, so a burst starts
   * together. Default: none.
   */
  requestsOnTheWay?: RequestsOnTheWay;
  /**
   * Where a step costs about as much more as it has prompt tokens (every layer on a CPU),
   * prompts that start together while no stream generates go in two steps when that gives
   * earlier first tokens on the whole (see `firstGroupSize`). Default false: they go in one (on
   * a GPU a step costs about the same with one short prompt or many).
   */
  stagePrompts?: boolean;
  /**
   * Decode a lone stream's steps on a thread of their own that samples each token itself (or
   * reads the one sampled inside the decode graph) and goes on to the next step without a trip
   * through the event loop (`Context.decodeAhead`). Requests with a grammar or
   * log-probabilities, and any step shared with another request, decode as usual. Default false.
   */
  decodeThread?: boolean;
  /**
   * Where requests come in bursts and none is seen on its way behind the one that woke the idle
   * loop, how long the loop turns looking for the others before the first step (ms): it stops
   * once one is seen or queued. 0: it waits for a timer instead, about 2 ms in Deno, which on a
   * CPU leaves the cores to a client still writing the burst. Default 0; `LoadedModel` takes
   * {@link GPU_LOOK_TURNS_MS} on a GPU.
   */
  lookTurnsMs?: number;
}

/** Requests on their way to a scheduler, as a server counts them. */
export interface RequestsOnTheWay {
  /**
   * Counts them.
   *
   * @param withinMs Only those that started arriving this recently.
   */
  count(withinMs: number): number;
  /**
   * Calls `listener` once, when one of them stops being on its way without reaching a scheduler
   * (its handler answered by itself, or failed).
   *
   * @returns Cancels the call.
   */
  onceSettled(listener: () => void): () => void;
}

/** Nothing on its way: the default of {@link SchedulerOptions.requestsOnTheWay}. */
const NONE_ON_THE_WAY: RequestsOnTheWay = {
  count: () => 0,
  onceSettled: () => () => {},
};

/** Live scheduler counters. */
export interface SchedulerStats {
  slots: number;
  busySlots: number;
  queued: number;
  steps: number;
  /** Of them, steps of a lone stream decoded on the decode thread (see `decodeThread`). */
  stepsAhead: number;
  /** Steps that decoded tokens of more than one slot. */
  sharedSteps: number;
  /** Prompt tokens evaluated (not reused from a cache or from another choice). */
  promptTokensEvaluated: number;
  /** Requests whose tokens were sampled inside the decode graph. */
  deviceSampledRequests: number;
  /**
   * Chains attached to a sequence for device sampling; each attachment rebuilds the graph, so
   * requests with the same settings reuse a slot's chain and this stays low.
   */
  deviceSamplerAttachments: number;
  /**
   * With a KV stream per slot: steps whose sequences were not one run of consecutive ids, which
   * llama.cpp decodes in several passes (see `slot_placement.ts`). Stays 0 while requests can
   * move between slots.
   */
  brokenRunSteps: number;
  /**
   * With a KV stream per slot: llama.cpp's passes beyond the first, summed over the steps. A step
   * whose sequences bring different token counts (prompts of different lengths, or a prompt
   * beside generating streams) takes a pass per count (see `splitPasses` in `slot_placement.ts`).
   */
  extraPasses: number;
  /**
   * With a KV stream per slot: steps whose outputs llama.cpp produced out of the batch's order,
   * and reordered (see `splitPasses`). Requests that start together take slots shortest prompt
   * first, which avoids it.
   */
  reorderedSteps: number;
  /**
   * With a KV stream per slot: passes that carried generating streams' tokens beside a prompt's,
   * which cost a CPU more than the same tokens in passes of their own; a step whose prompts end in
   * it is ordered to avoid them (see `splitPasses` in `slot_placement.ts`), while a long prompt's
   * chunks keep the slots' order (see `Scheduler.#batchPlan`).
   */
  mixedPasses: number;
  /**
   * Steps that waited for requests on their way to join them, while streams generated on the
   * host's cores (at most a generation step each).
   */
  newcomerWaits: number;
  /** Tokens sampled under a grammar (structured output, tool calls). */
  grammarTokens: number;
  /**
   * Of them, those whose first pick the grammar refused, so that a second pick was made among the
   * tokens it allows (see `src/ffi/grammar_check.ts`): a model that follows the format keeps this
   * low.
   */
  grammarRefusals: number;
  /** With a KV stream per slot: requests moved to another slot to keep the busy ones a run. */
  slotMoves: number;
  /**
   * Caches exchanged between slots, so that one a move or a new request would overwrite is kept
   * (only where that is worth the time: see `swap_cost.ts`).
   */
  cacheSwaps: number;
  /**
   * What a generation step and a prompt token cost, as learnt from the steps so far (undefined
   * before it is known); it decides how prompts that start together are staged.
   */
  stepCosts: StepCosts | undefined;
  /** Where the steps' time went, in milliseconds summed over all steps. */
  time: StepTime;
}

/** Time spent in each phase of the scheduler's steps, summed. */
export interface StepTime {
  /**
   * Awaiting `Context.decode`: `llama_decode` on a worker thread, then on a GPU waiting there
   * for the device (split out below), and the event loop taking up the result.
   */
  decodeMs: number;
  /** Of `decodeMs`, in `llama_decode` (the compute on a CPU; graph and launch on a GPU). */
  llamaDecodeMs: number;
  /** Of `llamaDecodeMs`, the calls made on the event loop (see `DecodeTimes`). */
  llamaDecodeOnLoopMs: number;
  /** Of `decodeMs`, waiting for a GPU to finish the step. */
  deviceWaitMs: number;
  /** Reading the sampled tokens (sampling on the CPU, or reading the device's choice). */
  sampleMs: number;
  /**
   * The rest on the event loop: admitting requests, building batches, detokenizing, queueing
   * text (network I/O runs while a decode is awaited, and is not counted).
   */
  hostMs: number;
}

/**
 * `forking`: a further choice of a request waits for the first choice's prompt, whose cache
 * entries it then shares.
 */
type SlotState = "idle" | "prompt" | "forking" | "generating";

/** A step's batch with a KV stream per slot (see `Scheduler.#batchPlan`). */
interface BatchPlan {
  /** The slots, in the order their tokens go in the batch. */
  order: Slot[];
  /** Their sequences as `splitPasses` takes them. */
  sequences: BatchSequence[];
  /** How llama.cpp splits them into passes. */
  split: SplitPasses;
}

/** Longest the first step after an idle spell waits for requests arriving together (ms). */
export const ARRIVAL_WINDOW_MS = 10;

/**
 * On a GPU, how long the idle loop turns looking for a burst's others behind its first request
 * (`SchedulerOptions.lookTurnsMs`). On an H100, in turn with a timer's wait, twice
 * (bench/README.md, "The idle loop's look by turns on a GPU"): bursts of 32 and of 8 started whole
 * alike, and a lone request after a burst had its first token at 5.5-6.2 ms against 7.1-7.4.
 */
export const GPU_LOOK_TURNS_MS = 1;

/**
 * While requests on their way are waited for, they are counted again at least this often (ms):
 * the count can fall with no event (a new connection that sent nothing stops counting after a few
 * milliseconds).
 */
const RECOUNT_ARRIVALS_MS = 1;

/**
 * Prompts that need at most this many tokens evaluated are never split while others generate:
 * a chat turn's first token comes one step after it arrives, for one slower step of the others.
 */
const WHOLE_PROMPT_TOKENS = 256;
/**
 * About how long a step of prompts alone may take (ms): a step cannot be interrupted, so a long
 * prompt whose client hangs up, or a shutdown, waits for the step to end. In one step of 2,048
 * tokens that had been 12-18 s on 2 cores; a second or so a step costs a prompt nothing (llama.cpp
 * evaluates it in 512-token micro-batches either way).
 */
const LONE_PROMPT_STEP_MS = 1500;
/** Fewest tokens a step of prompts alone carries: smaller ones evaluate prompts less efficiently. */
const MIN_LONE_PROMPT_STEP = 128;
/**
 * Most cached tokens a prompt gives up so that the prompts starting with it evaluate as many
 * tokens each (see `Scheduler.#evenPromptTails`): a pass over the weights costs about as much as a
 * few prompt tokens in a batch on a CPU (one generation step, 3.6 ms, against 0.8 ms a prompt token
 * on 2 cores), and far more on a GPU.
 */
const MAX_EVENED_TOKENS = 4;

/**
 * With a KV stream per slot, a cached prefix held by a slot away from the busy run is copied
 * into one next to it when it spares at least this many prompt tokens (copying a stream costs
 * about what evaluating a few tokens does).
 */
const MIN_COPIED_PREFIX = 32;

interface Job {
  request: GenerationRequest;
  /** Built before the job joins the queue; owned by the job until its slot releases it. */
  sampler: Sampler;
  chunks: AsyncQueue<GenerationChunk>;
  resolve: (result: GenerationResult) => void;
  reject: (error: unknown) => void;
  submittedAt: number;
  /** The further choices of the same prompt, which start from this job's evaluated prompt. */
  forks?: Job[];
  /** The slot running this job, once admitted. */
  slot?: Slot;
  /** A further choice: its prompt was evaluated by the first choice's job. */
  sharesPrompt?: boolean;
  /** Resolves the generation's `scheduled`. */
  announce: () => void;
}

/** The consumer's side of one generation: its chunk queue and its result. */
class Outlet {
  readonly chunks = new AsyncQueue<GenerationChunk>();
  resolve!: (result: GenerationResult) => void;
  reject!: (error: unknown) => void;
  announce!: () => void;
  readonly generation: Generation;

  constructor() {
    const result = new Promise<GenerationResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    result.catch(() => {}); // the consumer may only iterate; errors also reach the iterator
    const scheduled = new Promise<void>((resolve) => (this.announce = resolve));
    const chunks = this.chunks;
    this.generation = {
      result,
      scheduled,
      [Symbol.asyncIterator]: () => chunks[Symbol.asyncIterator](),
    };
  }
}

/** Choice `index` of a request: a fixed seed is offset by the index, so choices differ. */
function choiceRequest(request: GenerationRequest, index: number): GenerationRequest {
  const seed = request.sampling?.seed;
  if (index === 0 || seed === undefined) return request;
  return { ...request, sampling: { ...request.sampling, seed: seed + index } };
}

/**
 * Slot tasks (save, restore, erase) a model queues per slot; more are a 503 `queue_full`: each
 * waits for its slot, and nothing else bounded how many a flood of them could queue.
 */
const SLOT_TASKS_PER_SLOT = 4;

/** The most of the time slot tasks take while other slots generate (the rest is their steps). */
const SLOT_TASK_SHARE = 0.25;

/** Work asked for on one slot's cache (see `Scheduler.#onIdleSlot`). */
interface SlotTask {
  id: number;
  run: (slot: Slot) => Promise<void>;
  reject: (error: unknown) => void;
}

class Slot {
  state: SlotState = "idle";
  /** Tokens whose KV entries this slot's sequence holds, in order. */
  cached: number[] = [];
  job: Job | undefined;
  sampler: Sampler | undefined;
  /**
   * The chain attached to this slot's sequence for sampling on the device, owned by the slot.
   * It outlives requests: attaching a chain makes llama.cpp rebuild its graph (tens of
   * milliseconds on a GPU), so a later request with the same settings reuses it.
   */
  deviceSampler: Sampler | undefined;
  /** The settings {@link deviceSampler} was built from; see {@link deviceSamplerKey}. */
  deviceKey = "";
  text: TextStream | undefined;
  /** The bytes of the character the output ends inside of, if any (see `utf8_guard.ts`). */
  unfinished: number[] = [];
  /** Log-probabilities of generated tokens whose text has not been sent yet. */
  pendingLogprobs: TokenLogprob[] = [];
  /** Log-probabilities of the tokens whose text was sent. */
  logprobs: TokenLogprob[] = [];
  promptIndex = 0;
  generated: number[] = [];
  /** How many of {@link generated} earlier chunks carried. */
  chunkedTokens = 0;
  output = "";
  cachedTokens = 0;
  maxTokens = 0;
  batchIndex = -1;
  admittedAt = 0;
  /** Counts admissions: a slot given its request earlier has a lower number. */
  admission = 0;
  firstTokenAt = 0;
  /** Its prompt waits for the step after the next one (see `firstGroupSize`). */
  secondGroup = false;
  /** Prompt tokens its last step took (see `PrefillBudget.paceTokens`). */
  lastChunk = 0;
  /** When its cache last served a request (a count of releases): the least recent goes first. */
  usedAt = 0;
  /** The request's thinking budget, fed every token it generates. */
  budget: ReasoningBudget | undefined;

  constructor(readonly seqId: number) {}

  /** Whether the running request samples with the chain attached to this slot's sequence. */
  get samplesOnDevice(): boolean {
    return this.sampler !== undefined && this.sampler === this.deviceSampler;
  }

  /**
   * Takes over the request running in `other` (every per-request field above, which this list
   * must follow), with `sampler` in place of its chain; `other` is left idle, keeping its
   * cached tokens (its KV stream still holds them) and its device chain.
   */
  takeRequestFrom(other: Slot, sampler: Sampler | undefined): void {
    this.state = other.state;
    this.cached = [...other.cached];
    this.job = other.job;
    if (this.job) this.job.slot = this;
    this.sampler = sampler;
    this.text = other.text;
    this.unfinished = other.unfinished;
    this.pendingLogprobs = other.pendingLogprobs;
    this.logprobs = other.logprobs;
    this.promptIndex = other.promptIndex;
    this.generated = other.generated;
    this.chunkedTokens = other.chunkedTokens;
    this.output = other.output;
    this.cachedTokens = other.cachedTokens;
    this.maxTokens = other.maxTokens;
    this.batchIndex = -1;
    this.admittedAt = other.admittedAt;
    this.admission = other.admission;
    this.firstTokenAt = other.firstTokenAt;
    this.lastChunk = other.lastChunk;
    other.state = "idle";
    other.job = undefined;
    other.sampler = undefined;
    other.text = undefined;
    other.batchIndex = -1;
  }
}

/** Runs generations on one context with continuous batching. */
export class Scheduler {
  /** The context (owned by whoever created the scheduler). */
  readonly context: Context;
  /** Context tokens available to one request. */
  readonly slotContext: number;
  readonly #slots: Slot[];
  readonly #queue: Job[] = [];
  /** Jobs queued whose `scheduled` is still to resolve (see {@link Generation.scheduled}). */
  readonly #unannounced: Job[] = [];
  readonly #maxQueue: number;
  readonly #batch: Batch;
  /** Chains of ended requests, for later ones with the same settings (see `spare_chains.ts`). */
  readonly #spareChains: SpareChains;
  /** Keeps grammar-constrained output valid UTF-8 (its token lists are built on first use). */
  readonly #utf8Guard: Utf8Guard;
  /** Request grammars checked against this model's vocabulary, the recent ones remembered. */
  readonly #grammarChecks: GrammarChecks;
  #wake: (() => void) | undefined;
  /** Work on slots' caches, each done once its slot is idle (see {@link #onIdleSlot}). */
  #slotTasks: SlotTask[] = [];
  /** While others generate, no slot task starts before this (`performance.now()`). */
  #slotTasksResumeAt = 0;
  /** Requests whose sampler chain is being built (not queued yet). */
  readonly #preparing = new Set<Promise<void>>();
  /** Requests on their way to {@link submitChoices} (see {@link expectArrival}). */
  #arriving = 0;
  readonly #requestsOnTheWay: RequestsOnTheWay;
  #loop: Promise<void>;
  #closing = false;
  #steps = 0;
  #stepsAhead = 0;
  #sharedSteps = 0;
  #promptTokensEvaluated = 0;
  #deviceSampledRequests = 0;
  #deviceSamplerAttachments = 0;
  #brokenRunSteps = 0;
  #extraPasses = 0;
  #mixedPasses = 0;
  #newcomerWaits = 0;
  #grammarTokens = 0;
  #grammarRefusals = 0;
  #reorderedSteps = 0;
  #slotMoves = 0;
  #cacheSwaps = 0;
  /** Whether each slot has its own KV stream (see `slot_placement.ts`). */
  readonly #streamPerSlot: boolean;
  readonly #time: Omit<StepTime, keyof DecodeTimes> = {
    decodeMs: 0,
    sampleMs: 0,
    hostMs: 0,
  };
  readonly #prefillBudget = new PrefillBudget();
  readonly #swapCost = new CacheSwapCost();
  readonly #availableMemory = new AvailableMemory();
  /** Whether requests come in bursts, learnt from the steps after idle spells. */
  readonly #linger = new BurstLinger(ARRIVAL_WINDOW_MS);
  readonly #deviceSampling: boolean;
  readonly #stagePrompts: boolean;
  /** While requests that start together are placed: the slots they go to (`#burstWindow`). */
  #burstSlots: Set<number> | undefined;
  /** Set while queued requests are given slots (see {@link #waiting}). */
  #admitting = false;
  #defaultLora: readonly LoraChoice[] = [];
  #activeLoraKey = "";
  #admissions = 0;
  #releases = 0;
  /** Whether lone streams may run on the decode thread (see {@link #decodeAhead}). */
  readonly #decodeThread: boolean;
  readonly #lookTurnsMs: number;
  /** Stops the run on the decode thread, while one goes on. */
  #stopRunAhead: (() => void) | undefined;
  /** The chain the decode thread samples with, while a run goes on. */
  #samplerAhead: Sampler | undefined;
  /** That chain, when its slot was released during the run: kept once the run halts. */
  #releasedAhead: { sampler: Sampler; seeded: boolean } | undefined;

  /**
   * @param context The context to run on; `context.nSeqMax` is the slot count.
   * @param options Queue limit and per-slot context.
   */
  constructor(context: Context, options: SchedulerOptions = {}) {
    this.context = context;
    if (context.nBatch < context.nSeqMax) {
      throw new RangeError(
        `The batch size (${context.nBatch}) must be at least the slot count (${context.nSeqMax})`,
      );
    }
    this.#slots = Array.from({ length: context.nSeqMax }, (_, i) => new Slot(i));
    this.#streamPerSlot = !context.kvUnified && context.nSeqMax > 1;
    this.slotContext = options.slotContext ?? Math.floor(context.nCtx / context.nSeqMax);
    this.#maxQueue = options.maxQueue ?? 64;
    this.#requestsOnTheWay = options.requestsOnTheWay ?? NONE_ON_THE_WAY;
    this.#deviceSampling = options.deviceSampling ?? false;
    this.#stagePrompts = options.stagePrompts ?? false;
    this.#decodeThread = options.decodeThread ?? false;
    this.#lookTurnsMs = options.lookTurnsMs ?? 0;
    if (this.#decodeThread) {
      context.startDecodeThread();
      void context.model.eogTokens; // found now, not in the first run's way
    }
    this.#batch = new Batch(context.model.llama, context.nBatch);
    this.#spareChains = new SpareChains(context.model, this.#slots.length);
    this.#utf8Guard = new Utf8Guard((token) => context.model.tokenBytes(token), context.nVocab);
    const model = context.model;
    const tokensOf = (piece: string) =>
      model.tokenize(piece, { addSpecial: false, parseSpecial: true });
    this.#grammarChecks = new GrammarChecks({
      isSingleToken: (piece) => tokensOf(piece).length === 1,
      endsGeneration: (token) => {
        const id = typeof token === "number" ? token : tokensOf(token)[0];
        return id !== undefined && id < model.nVocab && model.isEog(id);
      },
    });
    this.#loop = this.#run();
  }

  /**
   * Erases a slot's cache (llama-server's `POST /slots/N?action=erase`): its tokens leave the KV
   * memory, so the next request there evaluates its whole prompt. A busy slot is erased once its
   * request ends, between steps, as the loop changes the cache.
   *
   * @param id The slot's number.
   * @returns How many tokens the cache held.
   * @throws {RangeError} for a number with no slot; {@link GenerationError} once closing.
   */
  eraseSlot(id: number): Promise<number> {
    return this.#onIdleSlot(id, (slot) => {
      const erased = slot.cached.length;
      this.context.removeTokens(slot.seqId, 0, -1);
      slot.cached = [];
      return erased;
    });
  }

  /**
   * Writes a slot's cache to a file (llama-server's `POST /slots/N?action=save`): its KV cells
   * and the tokens they hold, in llama-server's layout. A busy slot is saved once its request
   * ends; every stream waits while the cells are written, as they would for a step.
   *
   * @param id The slot's number.
   * @param path The file to write (replaced if it exists).
   * @param admit Decides, once the file's size is known, whether it is written (see
   *   {@link SlotFileAdmit}). Default: it is.
   * @returns The tokens saved and the bytes written.
   * @throws {RangeError} for a number with no slot; {@link GenerationError} once closing; an
   *   Error when the file could not be written; what `admit` throws to refuse it.
   */
  saveSlot(
    id: number,
    path: string,
    admit?: SlotFileAdmit,
  ): Promise<{ tokens: number; bytes: number }> {
    return this.#onIdleSlot(id, async (slot) => {
      const mark = this.context.model.llama.logMark();
      const packed = packSlotTokens(slot.cached);
      const bytes = await this.context.saveSequenceFile(slot.seqId, path, packed, admit);
      if (bytes === 0) {
        const why = this.context.model.llama.recentProblems(mark);
        throw new Error(`Could not write slot ${id}'s cache to ${path}${why ? `: ${why}` : ""}`);
      }
      return { tokens: slot.cached.length, bytes };
    });
  }

  /**
   * Reads a slot file that {@link saveSlot} or llama-server wrote (for the same model) into a
   * slot's cache, in place of what it held (llama-server's `POST /slots/N?action=restore`): a
   * later request whose prompt starts with those tokens evaluates only the rest. A busy slot is
   * restored once its request ends.
   *
   * @param id The slot's number.
   * @param path The file.
   * @returns The tokens restored and the bytes read.
   * @throws {RangeError} for a number with no slot; {@link GenerationError} once closing, or
   *   `invalid_request` for a file this model's slot cannot take (the slot is then empty).
   */
  restoreSlot(id: number, path: string): Promise<{ tokens: number; bytes: number }> {
    return this.#onIdleSlot(id, async (slot) => {
      const mark = this.context.model.llama.logMark();
      slot.cached = [];
      try {
        await checkSlotFileCells(path, {
          streams: this.context.kvUnified ? 1 : this.context.nSeqMax,
          maxCells: this.context.nCtx,
          layers: this.context.model.nLayer,
        });
        const loaded = await this.context.loadSequenceFile(slot.seqId, path);
        if (!loaded) {
          // llama.cpp's log names the file's first bytes (its "magic"): they stay out of answers.
          const why = this.context.model.llama.recentProblems(mark).join("; ")
            .replace(/:\s*[0-9a-f]{8}, [0-9a-f]{8}/gi, "");
          throw new SlotFileError(
            `it is not a slot file of this model, or its cells do not fit the KV memory` +
              (why ? ` (${why})` : ""),
          );
        }
        const tokens = unpackSlotTokens(loaded.tokens, this.context.nVocab);
        if (tokens.length > this.slotContext) {
          throw new SlotFileError(
            `it holds ${tokens.length} tokens, more than a slot's ${this.slotContext}`,
          );
        }
        slot.cached = tokens;
        return { tokens: tokens.length, bytes: loaded.bytes };
      } catch (error) {
        this.context.removeTokens(slot.seqId);
        if (!(error instanceof SlotFileError)) throw error;
        throw new GenerationError(
          "invalid_request",
          `Slot ${id} cannot be restored from ${basename(path)}: ${error.message}`,
        );
      }
    });
  }

  /**
   * Runs work on a slot's cache once the slot is idle, between steps (see
   * {@link #runIdleSlotTasks}); work for one slot runs in the order it was asked for.
   */
  #onIdleSlot<T>(id: number, work: (slot: Slot) => T | Promise<T>): Promise<T> {
    if (!Number.isInteger(id) || id < 0 || id >= this.#slots.length) {
      return Promise.reject(
        new RangeError(`No slot ${id}: the slots are 0 to ${this.#slots.length - 1}`),
      );
    }
    if (this.#closing) {
      return Promise.reject(new GenerationError("closed", "The model is shutting down"));
    }
    const most = this.#slots.length * SLOT_TASKS_PER_SLOT;
    if (this.#slotTasks.length >= most) {
      return Promise.reject(
        new GenerationError(
          "queue_full",
          `${this.#slotTasks.length} slot saves, restores and erases are waiting, the most this ` +
            "model queues; try again once they are done",
        ),
      );
    }
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    this.#slotTasks.push({
      id,
      run: async (slot) => {
        try {
          resolve(await work(slot));
        } catch (error) {
          reject(error);
        }
      },
      reject,
    });
    this.#wakeUp();
    return promise;
  }

  /**
   * Runs the slot tasks whose slots are idle, in order. A task also waits while its sequence is
   * part of a KV stream copy that the next step makes (its cells would be read before the copy,
   * or overwritten by it); where no step is coming, it fails with a 503 to retry. While other
   * slots generate, one task runs between two steps, and the tasks take at most a share of the
   * time ({@link SLOT_TASK_SHARE}): a save or restore of a full slot takes tens of milliseconds of
   * file work, and 64 of them back to back had held every stream for 0.8 s; one per step, a
   * flood of them had still made the streams 3x slower.
   *
   * @param stepComing Whether a slot is busy, so that a step will run.
   */
  async #runIdleSlotTasks(stepComing: boolean): Promise<void> {
    const waiting: SlotTask[] = [];
    let ran = 0;
    const paused = stepComing && performance.now() < this.#slotTasksResumeAt;
    for (const task of this.#slotTasks.splice(0)) {
      const slot = this.#slots[task.id] as Slot;
      const queuedBehind = waiting.some((other) => other.id === task.id);
      // A request that came meanwhile starts before the next task.
      const yielding = ran > 0 && (stepComing || this.#queued() > 0);
      if (slot.state !== "idle" || queuedBehind || yielding || paused) {
        waiting.push(task);
      } else if (!this.context.copyPending(slot.seqId)) {
        ran++;
        const started = performance.now();
        await task.run(slot);
        const took = performance.now() - started;
        this.#slotTasksResumeAt = performance.now() + took * (1 / SLOT_TASK_SHARE - 1);
      } else if (stepComing) {
        waiting.push(task);
      } else {
        task.reject(
          new GenerationError("unavailable", `Slot ${task.id}'s cache is being copied: try again`),
        );
      }
    }
    // Tasks asked for while these ran come after the ones still waiting.
    this.#slotTasks = waiting.concat(this.#slotTasks);
  }

  /**
   * What each slot is doing: idle, or the request it serves and how far along that is.
   *
   * @returns One view per slot, by id.
   */
  slotViews(): SlotView[] {
    return this.#slots.map((slot) => {
      const job = slot.job;
      if (!job || slot.state === "idle") return { id: slot.seqId };
      const promptTokens = job.request.prompt.length;
      return {
        id: slot.seqId,
        request: {
          promptTokens,
          cachedTokens: slot.cachedTokens,
          promptDone: slot.state === "prompt" ? slot.promptIndex : promptTokens,
          generated: slot.generated.length,
          remaining: Math.max(0, slot.maxTokens - slot.generated.length),
        },
      };
    });
  }

  stats(): SchedulerStats {
    return {
      slots: this.#slots.length,
      busySlots: this.#busySlots(),
      queued: this.#stillWanted(),
      steps: this.#steps,
      stepsAhead: this.#stepsAhead,
      sharedSteps: this.#sharedSteps,
      promptTokensEvaluated: this.#promptTokensEvaluated,
      deviceSampledRequests: this.#deviceSampledRequests,
      deviceSamplerAttachments: this.#deviceSamplerAttachments,
      brokenRunSteps: this.#brokenRunSteps,
      extraPasses: this.#extraPasses,
      reorderedSteps: this.#reorderedSteps,
      mixedPasses: this.#mixedPasses,
      newcomerWaits: this.#newcomerWaits,
      grammarTokens: this.#grammarTokens,
      grammarRefusals: this.#grammarRefusals,
      slotMoves: this.#slotMoves,
      cacheSwaps: this.#cacheSwaps,
      stepCosts: this.#prefillBudget.stepCosts(),
      time: { ...this.#time, ...this.context.decodeTimes() },
    };
  }

  /**
   * Requests in flight: announced and being prepared ({@link expectArrival}), queued, or in a
   * slot.
   */
  inFlight(): number {
    return this.#arriving + this.#queued() + this.#busySlots();
  }

  /** Slots running a request. */
  #busySlots(): number {
    return this.#slots.filter((s) => s.state !== "idle").length;
  }

  /** Requests submitted and waiting for a slot, or still being readied for the queue. */
  #queued(): number {
    return this.#queue.length + this.#preparing.size;
  }

  /**
   * Like {@link #queued}, without the queued requests whose clients have given up: those leave
   * the queue at the next step, which can be seconds away, and until then they neither hold a
   * place against `maxQueue` nor show as waiting.
   */
  #stillWanted(): number {
    const groups = new Set<object>();
    let wanted = this.#preparing.size;
    for (const job of this.#queue) {
      if (job.request.signal?.aborted) continue;
      const group = job.request.group;
      if (group === undefined) wanted++;
      else if (!groups.has(group)) {
        groups.add(group);
        wanted++;
      }
    }
    return wanted;
  }

  /**
   * Checks a request's grammar off the event loop before it is submitted, so that
   * {@link submitChoices} finds the verdict known (see `GrammarChecks.prepare`).
   *
   * @param grammar GBNF text the request constrains its output with.
   * @param signal Stops the wait when the client leaves (see `GrammarChecks.prepare`).
   * @returns Once the verdict is known (or the check will run on submission).
   * @throws {GenerationError} `queue_full` when the grammar checks are backed up.
   * @throws The signal's reason when it aborts.
   */
  prepareGrammar(grammar: string, signal?: AbortSignal): Promise<void> {
    return this.#grammarChecks.prepare(grammar, signal);
  }

  /**
   * Announces a request whose prompt is being prepared (template, tokens) before it is
   * submitted, so that a step starting meanwhile from an idle loop waits for it to join.
   *
   * @returns Dispose it once the request is submitted or given up.
   * @example
   * ```ts
   * using _arrival = scheduler.expectArrival();
   * const prompt = await buildPrompt();
   * scheduler.submit({ prompt });
   * ```
   */
  expectArrival(): Disposable {
    this.#arriving++;
    this.#stopRunAhead?.(); // the newcomer joins at the next step
    let pending = true;
    return {
      [Symbol.dispose]: () => {
        if (pending) this.#arriving--;
        pending = false;
        this.#wakeUp();
      },
    };
  }

  /**
   * Queues a generation.
   *
   * @param request Prompt tokens, limits, sampling, stop strings, abort signal.
   * @returns The running generation.
   * @throws {GenerationError} `context_overflow` when the prompt leaves no room to generate,
   *   `queue_full` when too many requests wait, `closed` after {@link close}.
   */
  submit(request: GenerationRequest): Generation {
    return this.submitChoices(request, 1)[0] as Generation;
  }

  /**
   * Queues `n` generations from one prompt (OpenAI's `n`). The prompt is evaluated once, in the
   * first choice's slot; the other choices wait in theirs, then share its cache entries
   * (`llama_memory_seq_cp`) and draw their first token from the same logits, each with its own
   * sampler chain. A fixed seed is offset by the choice's index, so choices differ. The `n`
   * slots are taken together, so `n` may not exceed the slot count.
   *
   * @param original Prompt tokens, limits, sampling, stop strings, abort signal.
   * @param n How many choices (1 to the slot count).
   * @returns One running generation per choice.
   * @throws {GenerationError} `invalid_request` for an `n` beyond the slots, and as
   *   {@link submit}.
   */
  submitChoices(original: GenerationRequest, n: number): Generation[] {
    if (this.#closing) throw new GenerationError("closed", "The model is shutting down");
    if (!this.context.keepsMemory) {
      throw new GenerationError(
        "invalid_request",
        "This model is an encoder for embeddings and cannot generate text; use /v1/embeddings",
      );
    }
    if (!Number.isSafeInteger(n) || n < 1 || n > this.#slots.length) {
      throw new GenerationError(
        "invalid_request",
        `Cannot run ${n} choices of one prompt at once on ${this.#slots.length} slots`,
      );
    }
    const request = original.truncate ? this.#truncated(original) : original;
    this.#validate(request);
    const freeSlots = this.#slots.filter((s) => s.state === "idle").length;
    const waiting = Math.max(0, this.#stillWanted() - freeSlots);
    if (waiting >= this.#maxQueue) {
      throw new GenerationError(
        "queue_full",
        `Too many requests are waiting (${waiting}); try again shortly`,
      );
    }
    const submittedAt = performance.now();
    const outlets = Array.from({ length: n }, () => new Outlet());
    if (request.maxTokens === 0 && !request.fillCache) {
      // Nothing to generate: answer at once, without taking a slot or decoding the prompt.
      for (const outlet of outlets) {
        outlet.chunks.end();
        outlet.resolve({ ...emptyResult(request, submittedAt), finishReason: "length" });
        outlet.announce();
      }
    } else {
      const requests = outlets.map((_, i) => choiceRequest(request, i));
      const stages = requests.map((r) => samplerStages(r.sampling ?? {}, this.slotContext));
      // Grammars compile, and new DRY breakers are matched, off the event loop.
      if (!stages.every((chain) => madeAtOnce(this.context.model, chain))) {
        const preparing = this.#queueWhenBuilt(requests, stages, outlets, submittedAt);
        this.#preparing.add(preparing);
        void preparing.finally(() => this.#preparing.delete(preparing));
      } else {
        // Nothing to compile: queued now, so a loop woken from idle starts the prompt before the
        // request's handler goes on to answer its headers (0.1–0.3 ms of a lone request's first
        // token on the H200 machine).
        const seeded = request.sampling?.seed !== undefined;
        const built = stages.map((chain) => settle(() => this.#spareChains.take(chain, seeded)));
        this.#queueBuilt(requests, built, outlets, submittedAt);
      }
    }
    return outlets.map((outlet) => outlet.generation);
  }

  /** Builds each choice's sampler chain, compiling grammars on a worker thread, then queues. */
  async #queueWhenBuilt(
    requests: GenerationRequest[],
    stages: SamplerStage[][],
    outlets: Outlet[],
    submittedAt: number,
  ): Promise<void> {
    const built = await Promise.allSettled(
      stages.map((chain) => Sampler.build(this.context.model, chain)),
    );
    this.#queueBuilt(requests, built, outlets, submittedAt);
  }

  /**
   * Queues the first choice as the job, carrying the others as its forks; or, when a chain
   * failed to build or the request is gone, ends every choice.
   */
  #queueBuilt(
    requests: GenerationRequest[],
    built: PromiseSettledResult<Sampler>[],
    outlets: Outlet[],
    submittedAt: number,
  ): void {
    const failure = built.find((b) => b.status === "rejected");
    const samplers = built.flatMap((b) => b.status === "fulfilled" ? [b.value] : []);
    const request = requests[0] as GenerationRequest;
    if (failure || this.#closing || request.signal?.aborted) {
      for (const sampler of samplers) sampler.close();
      for (const outlet of outlets) {
        if (failure) {
          const error = failure.reason;
          const wrapped = error instanceof SamplerStageError
            ? new GenerationError("invalid_request", error.message, error)
            : error;
          outlet.chunks.fail(wrapped);
          outlet.reject(wrapped);
        } else {
          outlet.chunks.end();
          outlet.resolve(emptyResult(request, submittedAt));
        }
        outlet.announce();
      }
      return;
    }
    const jobs: Job[] = outlets.map((outlet, i) => ({
      request: requests[i] as GenerationRequest,
      sampler: samplers[i] as Sampler,
      chunks: outlet.chunks,
      resolve: outlet.resolve,
      reject: outlet.reject,
      announce: outlet.announce,
      submittedAt,
      ...(i > 0 ? { sharesPrompt: true } : {}),
    }));
    this.#unannounced.push(...jobs);
    const first = jobs[0] as Job;
    if (jobs.length > 1) first.forks = jobs.slice(1);
    this.#queue.push(first);
    request.signal?.addEventListener("abort", () => this.#wakeUp(), { once: true });
    // A run on the decode thread stops, so that the next step closes the thinking block.
    request.reasoningBudget?.endNow?.addEventListener("abort", () => this.#wakeUp(), {
      once: true,
    });
    this.#wakeUp();
  }

  /** The request with its prompt cut from the front to fit, keeping a leading BOS. */
  #truncated(request: GenerationRequest): GenerationRequest {
    const room = this.slotContext - (request.maxTokens ?? 1);
    const prompt = request.prompt;
    if (prompt.length <= room || room < 2) return request;
    const bos = this.context.model.bos;
    const keepFirst = bos >= 0 && prompt[0] === bos ? 1 : 0;
    const tail = prompt.subarray(prompt.length - (room - keepFirst));
    const cut = new Int32Array(keepFirst + tail.length);
    if (keepFirst) cut[0] = bos;
    cut.set(tail, keepFirst);
    return { ...request, prompt: cut };
  }

  #validate(request: GenerationRequest): void {
    const n = request.prompt.length;
    if (n === 0) throw new GenerationError("invalid_request", "The prompt is empty");
    const nVocab = this.context.nVocab;
    for (const token of request.prompt) {
      if (token < 0 || token >= nVocab) {
        throw new GenerationError(
          "invalid_request",
          `Prompt token ${token} is not in the vocabulary`,
        );
      }
    }
    const grammar = request.sampling?.grammar;
    // Checked here, bounded, because llama.cpp's own parser can loop forever or overflow its
    // stack on some inputs, and its sampler can take hours per token on ambiguous grammars.
    if (grammar) this.#grammarChecks.check(grammar);
    const max = request.maxTokens;
    if (max !== undefined && (!Number.isSafeInteger(max) || max < 0)) {
      throw new GenerationError("invalid_request", `max_tokens must be a non-negative integer`);
    }
    // A max_tokens beyond what is left of the context is clamped (generation ends with
    // "length" when the context is full); only a prompt with no room left is refused.
    if (n + Math.min(max ?? 1, 1) > this.slotContext) {
      throw contextOverflow(String(n), this.slotContext);
    }
  }

  /** Resolves `scheduled` of every job queued since the last step started. */
  #announceScheduled(): void {
    for (const job of this.#unannounced) job.announce();
    this.#unannounced.length = 0;
  }

  #wakeUp(): void {
    this.#stopRunAhead?.();
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async #run(): Promise<void> {
    // Set until the first step after an idle spell has run.
    let afterIdle = false;
    // Set once the requests on their way have been waited for before the coming step.
    let waitedForNewcomers = false;
    while (true) {
      let active: Slot[] = [];
      // Host time of this turn: everything but the wait for the decode and for new requests.
      const turnStart = performance.now();
      try {
        this.#dropAborted();
        if (this.#slotTasks.length > 0) {
          await this.#runIdleSlotTasks(this.#slots.some((s) => s.state !== "idle"));
        }
        this.#admit();
        this.#keepBusySlotsARun();
        active = this.#slots.filter((s) => s.state !== "idle");
        // Slot tasks asked for while others ran (or left for a request that came) run now.
        if (active.length === 0 && this.#slotTaskWaiting()) continue;
        if (active.length === 0) {
          this.#announceScheduled(); // only jobs that ended are left to announce here
          if (this.#closing) return;
          this.#time.hostMs += performance.now() - turnStart;
          await new Promise<void>((resolve) => (this.#wake = resolve));
          // Checked first: a lone request's prompt starts in this very microtask (where requests
          // come in bursts, a turn of the event loop later).
          if (!this.#othersOnTheWay() && this.#linger.bursty()) await this.#lookOnceMore();
          if (this.#othersOnTheWay()) await this.#gatherArrivals();
          if (this.#linger.quietMs() > 0) await this.#waitForStragglers();
          afterIdle = true;
          continue;
        }
        if (!afterIdle && !waitedForNewcomers && this.#newcomersOnTheWay(active)) {
          this.#time.hostMs += performance.now() - turnStart;
          this.#newcomerWaits++;
          await this.#waitForNewcomers(this.#newcomerWaitMs());
          waitedForNewcomers = true;
          continue; // to give them slots
        }
        waitedForNewcomers = false;
        const lone = this.#loneStreamAhead(active);
        if (lone) {
          this.#time.hostMs += performance.now() - turnStart;
          await this.#decodeAhead(lone);
          continue;
        }
        // No extra event-loop turns between steps: network I/O (the text queued by the last
        // step, new requests, aborts) runs while the decode is awaited on its worker thread.
        // Except after first tokens, when the decode computes on the cores the event loop
        // needs: its threads then keep the loop's thread waiting for a core, and on 2 cores a
        // lone request's first token left the server 0.7–3.7 ms after its step (median per
        // run). So the first tokens' way to the sockets runs out first (see drainMicrotasks).
        const firstAfterIdle = afterIdle;
        afterIdle = false;
        const stepStart = performance.now();
        // Their handlers go on once the step is under way (see Generation.scheduled).
        this.#announceScheduled();
        const firstTokens = await this.#step(active);
        if (firstAfterIdle) {
          this.#linger.observe(active.length, performance.now() - stepStart, this.#queued());
        }
        if (firstTokens && this.context.computesOnHost) await drainMicrotasks();
      } catch (error) {
        // A bug or an unexpected native failure: the requests of this step fail, the loop and
        // every later request carry on.
        for (const slot of active) this.#fail(slot, error);
      }
      this.#time.hostMs += performance.now() - turnStart;
    }
  }

  /**
   * Before the first step after the loop was idle, lets requests that arrive together join it:
   * a burst of requests reaches the scheduler over several event-loop turns (reading, parsing,
   * rendering, tokenizing), and a step started on the first of them alone made the others wait
   * for its prompt (four requests at once on 2 cores: three first tokens a whole prompt step
   * later). Waits, for at most {@link ARRIVAL_WINDOW_MS}, while submitted requests build their
   * samplers, requests announced by {@link expectArrival} are prepared, and the server counts
   * requests on their way ({@link SchedulerOptions.requestsOnTheWay}). With none, a lone request
   * starts at once: a blind turn of the event loop to look for others cost 0.13–0.15 ms of its
   * first token on the H200 machine, 0.3–0.5 ms on the 2-core CPU.
   *
   * The wait sleeps until one of them arrives or gives up, so the event loop is idle and polls
   * the sockets at once: turning it meanwhile (a no-op call on a worker thread per turn) held
   * back the HTTP server's reading of the others (a 4-request burst on 2 cores was dispatched
   * over 2–3 ms instead of 1–1.7).
   *
   * On a GPU it stops once a majority of the usual burst is queued (`BurstLinger.majorityOfBurst`):
   * the first step then computes while the loop reads the rest.
   */
  async #gatherArrivals(): Promise<void> {
    const deadline = performance.now() + ARRIVAL_WINDOW_MS;
    // On a GPU a burst's majority starts while the loop reads the rest (see majorityOfBurst).
    const enough = this.context.computesOnHost ? Infinity : this.#linger.majorityOfBurst();
    while (!this.#closing) {
      if (this.#queue.length >= enough) return;
      if (this.#preparing.size > 0) {
        const preparing = [...this.#preparing];
        // Counting up to `enough`, each one prepared counts at once.
        await (enough === Infinity ? Promise.allSettled(preparing) : Promise.race(
          preparing.map((p) => p.then(() => {}, () => {})),
        ));
        continue;
      }
      const left = deadline - performance.now();
      if (left <= 0 || !this.#othersOnTheWay()) return;
      await this.#nextArrivalEvent(Math.min(left, RECOUNT_ARRIVALS_MS));
    }
  }

  /**
   * Where requests have been coming in bursts and none is seen on its way behind the one that
   * woke the loop, lets the event loop turn once before the first step: the others' first bytes
   * are often already there, only not read yet, because the handler of the first ran before the
   * listener's reads of theirs. Seen on their way after that turn, they are waited for as usual
   * ({@link #gatherArrivals}). Bursts of 32 on the tiny model on 2 cores (first steps too short
   * for the linger below, as on a GPU), before and after, in turn, three times
   * (`bench/burst_split.ts`): 19, 20 and 23 of 30 bursts started with their first request alone
   * and the 31 others after its step, against 1, 0 and 0; TTFT p50 46.4 / 40.7 / 42.7 ms against
   * 46.2 / 39.3 / 28.8 (`bench/README.md`, "A burst's others, one turn later"). On a CPU the
   * turn is a timer of 0 ms, which Deno 2.9 fires after about 2.2 ms, and that wait is what pays
   * there: one `setImmediate` turn instead let 17 and 9 of 20 such bursts split, turns for at most
   * 1 ms 5 of 20 (bench/README.md, "A burst on new connections"). On a GPU the loop turns until one
   * is seen or queued, for at most {@link SchedulerOptions.lookTurnsMs}. A lone request after
   * bursts pays the look once; those after it do not, as they are no longer bursts.
   */
  async #lookOnceMore(): Promise<void> {
    if (this.#lookTurnsMs <= 0) {
      await this.#nextArrivalEvent(0);
      return;
    }
    const until = performance.now() + this.#lookTurnsMs;
    do await drainMicrotasks(); while (
      !this.#othersOnTheWay() && this.#queue.length < 2 && performance.now() < until
    );
  }

  /**
   * Where requests have been coming in bursts, lets the stragglers of this one join the first step
   * after an idle spell: waits while requests keep arriving, each within a short gap of the last,
   * for at most a share of such a step's duration (see `burst_linger.ts`). Requests seen on their
   * way meanwhile are waited for as in {@link #gatherArrivals}.
   */
  async #waitForStragglers(): Promise<void> {
    const deadline = performance.now() + this.#linger.limitMs();
    let known = this.#arriving + this.#queued();
    while (!this.#closing) {
      const left = Math.min(this.#linger.quietMs(), deadline - performance.now());
      if (left <= 0) return;
      await this.#nextArrivalEvent(left);
      if (this.#othersOnTheWay()) await this.#gatherArrivals();
      const now = this.#arriving + this.#queued();
      if (now === known) return; // a quiet gap: the burst is complete
      known = now;
    }
  }

  /**
   * Whether requests on their way should join the coming step of streams generating on the host's
   * cores. There a request that arrives during a step is read, parsed and tokenized on the
   * event loop beside the step's threads, which leave it little of the cores: on 2 cores its
   * handler often finished just after the next step had started, and its prompt waited for that
   * whole step as well (see bench/README.md, "A request that arrives while a stream
   * generates"). With the cores free between steps it finishes in about a millisecond. On a GPU
   * the event loop turns while a step computes, and such a request is queued before the step
   * ends.
   */
  #newcomersOnTheWay(active: readonly Slot[]): boolean {
    return this.context.computesOnHost && active.some((s) => s.state === "generating") &&
      this.#arrivingSoon();
  }

  /**
   * How long the streams wait for a request on its way ({@link #newcomersOnTheWay}): at most a
   * generation step, which is what the request would otherwise wait.
   */
  #newcomerWaitMs(): number {
    const step = this.#prefillBudget.stepCosts()?.generationStepMs ?? ARRIVAL_WINDOW_MS;
    return Math.min(step, ARRIVAL_WINDOW_MS);
  }

  /**
   * Waits, for at most `ms`, until no request is on its way ({@link #arrivingSoon}). Grammars
   * being compiled are not waited for: that can take longer than a step.
   */
  async #waitForNewcomers(ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    while (!this.#closing && this.#arrivingSoon()) {
      const left = deadline - performance.now();
      if (left <= 0) return;
      await this.#nextArrivalEvent(Math.min(left, RECOUNT_ARRIVALS_MS));
    }
  }

  /** Whether requests are still being prepared or are on their way (see {@link #gatherArrivals}). */
  #othersOnTheWay(): boolean {
    return this.#preparing.size > 0 || this.#arrivingSoon();
  }

  /**
   * Whether requests announced to this scheduler ({@link expectArrival}), or counted by the
   * server, are on their way, having started arriving within {@link ARRIVAL_WINDOW_MS}.
   */
  #arrivingSoon(): boolean {
    return this.#arriving > 0 || this.#requestsOnTheWay.count(ARRIVAL_WINDOW_MS) > 0;
  }

  /** Waits until a request is submitted or announced, or one on its way gives up, or `ms` pass. */
  #nextArrivalEvent(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const cancel = this.#requestsOnTheWay.onceSettled(done);
      function done() {
        clearTimeout(timer);
        cancel();
        resolve();
      }
      this.#wake = done;
    });
  }

  #dropAborted(): void {
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      const job = this.#queue[i] as Job;
      const aborted = job.request.signal?.aborted === true;
      if (aborted || this.#closing) {
        this.#queue.splice(i, 1);
        for (const one of [job, ...job.forks ?? []]) {
          one.sampler.close();
          if (aborted) {
            one.chunks.end();
            one.resolve(emptyResult(one.request, one.submittedAt));
          } else {
            const error = cutOffError();
            one.chunks.fail(error);
            one.reject(error);
          }
        }
      }
    }
    for (const slot of this.#slots) {
      if (slot.job?.request.signal?.aborted) this.#finish(slot, "cancelled");
      // A client still waiting learns that its answer was cut off, not that it ended.
      else if (slot.job && this.#closing) this.#fail(slot, cutOffError());
    }
  }

  /**
   * Sets the adapters used by requests that do not choose their own. Running requests keep
   * theirs; the new set takes effect between decode steps, once they are done.
   *
   * @param set Adapters and scales; [] for none.
   */
  setDefaultLora(set: readonly LoraChoice[]): void {
    this.#defaultLora = set;
    this.#wakeUp();
  }

  /** The adapters used by requests that do not choose their own. */
  get defaultLora(): readonly LoraChoice[] {
    return this.#defaultLora;
  }

  /**
   * Makes the context use a job's adapters. Requests with different adapters never share a
   * step: a job whose set differs waits until running slots finish, then the set is swapped
   * (and every slot's cached prefix dropped, since it was computed with other weights).
   *
   * @returns Whether the job can be admitted now.
   */
  #useLoraOf(job: Job): boolean {
    const set = job.request.lora ?? this.#defaultLora;
    const key = loraKey(set);
    if (key === this.#activeLoraKey) return true;
    if (this.#slots.some((s) => s.state !== "idle")) return false;
    applyLoraAdapters(this.context, set);
    this.context.clearMemory();
    for (const slot of this.#slots) slot.cached = [];
    this.#activeLoraKey = key;
    return true;
  }

  #admit(): void {
    this.#takeTurns();
    if (this.#streamPerSlot) this.#burstSlots = this.#burstWindow(this.#orderStartingTogether());
    const startedNow: Slot[] = [];
    this.#admitting = true;
    try {
      this.#admitQueued(startedNow);
    } finally {
      this.#burstSlots = undefined;
      this.#admitting = false;
    }
    const second = this.#secondGroup(startedNow);
    if (this.#streamPerSlot) {
      this.#evenPromptTails(startedNow.slice(0, startedNow.length - second.length));
      this.#evenPromptTails(second);
    }
  }

  /**
   * Where prompts are staged and no stream generates, marks the prompts just started that wait
   * for the second step (see `firstGroupSize`); they are the last admitted, so the longest of
   * requests that start together with a KV stream per slot.
   *
   * @returns The prompts of the second group.
   */
  #secondGroup(startedNow: readonly Slot[]): Slot[] {
    const busy = this.#slots.some((s) => s.state !== "idle" && !startedNow.includes(s));
    if (!this.#stagePrompts || busy) return [];
    const rests = startedNow.map((slot) =>
      (slot.job as Job).request.prompt.length - slot.promptIndex
    );
    // Long prompts of the second group go one a step (#promptTakes), not in one.
    const shortRests = rests.every((rest) => rest <= WHOLE_PROMPT_TOKENS);
    const first = firstGroupSize(rests, this.#prefillBudget.stepCosts(), shortRests);
    const second = startedNow.slice(first);
    for (const slot of second) slot.secondGroup = true;
    return second;
  }

  /**
   * Orders the queue so that grouped prompts (see `GenerationRequest.group`) take turns with other
   * requests: a job's turn is its group's running slots plus the group's jobs queued before it (a
   * job of no group has turn 0), and the queue is sorted by turn, in arrival order within a turn.
   * A lone request arriving behind the rest of a 64-prompt request goes first.
   */
  #takeTurns(): void {
    if (!this.#queue.some((job) => job.request.group !== undefined)) return;
    const turns = new Map<object, number>();
    for (const slot of this.#slots) {
      const group = slot.state !== "idle" ? slot.job?.request.group : undefined;
      if (group !== undefined) turns.set(group, (turns.get(group) ?? 0) + 1);
    }
    const keyed = this.#queue.map((job, order) => {
      const group = job.request.group;
      if (group === undefined) return { job, order, turn: 0 };
      const turn = turns.get(group) ?? 0;
      turns.set(group, turn + 1);
      return { job, order, turn };
    });
    keyed.sort((a, b) => a.turn - b.turn || a.order - b.order);
    this.#queue.splice(0, this.#queue.length, ...keyed.map(({ job }) => job));
  }

  /** Admits queued requests while slots are free; the slots started go into `startedNow`. */
  #admitQueued(startedNow: Slot[]): void {
    while (this.#queue.length > 0) {
      const free = this.#slots.filter((s) => s.state === "idle");
      const next = this.#queue[0] as Job;
      // A request's choices start together: it waits for as many free slots.
      if (free.length < slotsNeeded(next)) return;
      try {
        if (!this.#useLoraOf(next)) return;
      } catch (error) {
        this.#rejectJob(this.#queue.shift() as Job, error);
        continue;
      }
      const job = this.#queue.shift() as Job;
      const prompt = job.request.prompt;
      // Log-probabilities need the logits, and choices share them: those sample on the CPU.
      const onDevice = this.#deviceSampling && job.sampler.deviceCapable &&
        job.request.logprobs === undefined && !job.forks && !job.request.reasoningBudget;
      const key = onDevice ? deviceSamplerKey(job) : "";
      const started: Slot[] = [];
      try {
        const [best, bestShared] = this.#placeRequest(free, prompt, key);
        const reuse = job.request.cachePrompt === false ? 0 : bestShared;
        this.#start(best, job, Math.min(reuse, prompt.length - 1), key);
        started.push(best);
        startedNow.push(best);
        for (const fork of job.forks ?? []) {
          const slot = this.#freeSlotNextToBusy();
          this.#start(slot, fork, 0, "");
          started.push(slot);
          slot.state = "forking";
          slot.promptIndex = slot.cachedTokens = prompt.length;
        }
      } catch (error) {
        for (const slot of started) this.#release(slot);
        this.#rejectJob(job, error);
      }
    }
  }

  /**
   * With a KV stream per slot, puts the requests at the head of the queue that all start now
   * (they fit the free slots and share the active adapters) in order of the prompt tokens they
   * have left, fewest first. They take free slots in that order, so the step that evaluates their
   * prompts has its token counts rising with the sequence ids: llama.cpp then needs a pass per
   * distinct count and keeps the outputs in order (see `splitPasses`), where prompts of mixed
   * lengths in arrival order broke its runs into more passes and made it reorder its output rows.
   * Nobody is overtaken: every one of them starts in this step.
   *
   * @returns The requests that start now.
   */
  #orderStartingTogether(): Job[] {
    const free = this.#slots.filter((s) => s.state === "idle");
    const adapters = (job: Job) => loraKey(job.request.lora ?? this.#defaultLora);
    const first = this.#queue[0];
    if (!first) return [];
    let room = free.length;
    let starting = 0;
    for (const job of this.#queue) {
      const needs = slotsNeeded(job);
      if (needs > room || adapters(job) !== adapters(first)) break;
      room -= needs;
      starting++;
    }
    if (starting < 2) return this.#queue.slice(0, starting);
    const left = (job: Job) => {
      const prompt = job.request.prompt;
      return prompt.length - Math.max(...free.map((slot) => commonPrefix(slot.cached, prompt)));
    };
    const ordered = this.#queue.slice(0, starting)
      .map((job) => ({ job, left: left(job) }))
      .sort((a, b) => a.left - b.left)
      .map(({ job }) => job);
    this.#queue.splice(0, starting, ...ordered);
    return ordered;
  }

  /**
   * The free slots where requests that start together go (see `burstWindow`): those that keep
   * the busy ones a run and hold the most of their cached prompts. Undefined for fewer than two.
   */
  #burstWindow(starting: readonly Job[]): Set<number> | undefined {
    if (starting.length < 2) return undefined;
    const size = starting.reduce((sum, job) => sum + slotsNeeded(job), 0);
    const reuse = (id: number) => {
      const slot = this.#slots[id] as Slot;
      return Math.max(...starting.map((job) => worthReusing(slot, job.request.prompt)));
    };
    const usedAt = (id: number) => (this.#slots[id] as Slot).usedAt;
    const ids = burstWindow(this.#busyFlags(), size, reuse, usedAt);
    return ids && new Set(ids);
  }

  /**
   * The free slots a request may take so that the busy ones stay a run: while requests that
   * start together are placed, the rest of their window; else the ends of the run.
   */
  #runTargets(): number[] {
    const window = [...this.#burstSlots ?? []].filter((id) =>
      (this.#slots[id] as Slot).state === "idle"
    );
    return window.length > 0 ? window : runKeepingTargets(this.#busyFlags());
  }

  /**
   * With a KV stream per slot, makes the prompts that start together evaluate as many tokens each
   * where it costs a few re-evaluated tokens: a prompt that reuses more of its slot's cache than
   * the others gives up the difference (at most {@link MAX_EVENED_TOKENS}). llama.cpp takes as
   * many tokens from each stream per pass over the weights, so prompts of one length whose cached
   * prefixes differ (a burst of one template, say) made a pass for each distinct rest: on 2 cores
   * (bench-125m) four 33- to 36-token rests took 114 ms in four passes against 102 ms for four
   * 35-token ones in one. Only whole short prompts are evened (a long one goes in chunks anyway).
   */
  #evenPromptTails(startedNow: readonly Slot[]): void {
    // Each was just started (`#start`): in state "prompt", with its job.
    const rests = startedNow.map((slot) => ({
      slot,
      length: (slot.job as Job).request.prompt.length,
    }))
      .filter(({ slot, length }) => length - slot.promptIndex <= WHOLE_PROMPT_TOKENS);
    if (rests.length < 2) return;
    const target = Math.max(...rests.map(({ slot, length }) => length - slot.promptIndex));
    for (const { slot, length } of rests) {
      const reuse = length - target;
      const extra = slot.promptIndex - reuse;
      if (reuse < 0 || extra <= 0 || extra > MAX_EVENED_TOKENS) continue;
      this.context.removeTokens(slot.seqId, reuse, -1);
      slot.cached.length = reuse;
      slot.promptIndex = reuse;
      slot.cachedTokens = reuse;
    }
  }

  /**
   * The slot a request starts in and the prompt tokens it reuses there: the free slot with the
   * longest cached prefix, among equals one whose device chain fits. With a KV stream per slot,
   * only a slot that keeps the busy ones a run; a longer prefix cached elsewhere is copied into
   * it when worth the copy.
   */
  #placeRequest(free: Slot[], prompt: Int32Array, key: string): [Slot, number] {
    const inBurst = this.#burstSlots !== undefined;
    const [best, bestShared] = longestPrefixSlot(free, prompt, key, inBurst);
    if (!this.#streamPerSlot) return [best, bestShared];
    const targets = new Set(this.#runTargets());
    if (targets.has(best.seqId)) return [best, bestShared];
    const [slot, shared] = longestPrefixSlot(
      free.filter((s) => targets.has(s.seqId)),
      prompt,
      key,
      inBurst,
    );
    if (bestShared - shared < MIN_COPIED_PREFIX) {
      return [slot, this.#keepRecentCache(slot, prompt, shared, targets)];
    }
    const bestHolds = this.#moveCells(best, slot);
    slot.cached = [...best.cached];
    best.cached = bestHolds;
    return [slot, bestShared];
  }

  /**
   * Before a request overwrites the cache of `slot` (a slot next to the busy run) past the
   * `shared` tokens it reuses: where a free slot elsewhere holds a cache used less recently, the
   * two exchange caches, so the older one is lost instead (a conversation in its next turn keeps
   * its cache while one that went quiet loses it).
   *
   * @param targets The slots the request may take (`#runTargets`).
   * @returns The tokens the request reuses in `slot` afterwards.
   */
  #keepRecentCache(
    slot: Slot,
    prompt: Int32Array,
    shared: number,
    targets: ReadonlySet<number>,
  ): number {
    if (slot.cached.length - shared < MIN_COPIED_PREFIX) return shared;
    const older = this.#slots
      .filter((s) => s.state === "idle" && !targets.has(s.seqId) && s.usedAt < slot.usedAt)
      .sort((a, b) => a.usedAt - b.usedAt)[0];
    if (!older || !this.#exchangeCaches(slot, older)) return shared;
    return commonPrefix(slot.cached, prompt);
  }

  /**
   * Exchanges the caches of two free slots, where keeping `a`'s is worth it; false when they
   * were not exchanged (nothing changed).
   */
  #exchangeCaches(a: Slot, b: Slot): boolean {
    const swap = this.#swapSequences(a.seqId, b.seqId, a.cached.length);
    if (!swap.moved) return false;
    [a.cached, b.cached] = [swap.kept ? b.cached : [], a.cached];
    [a.usedAt, b.usedAt] = [b.usedAt, a.usedAt];
    return true;
  }

  /**
   * `Context.swapSequences`, bounded by what keeping `keptTokens` cached is worth to the requests
   * that wait for it (see `swap_cost.ts`), and timed for the next bound. Nothing is exchanged
   * before the prefill budget knows what a prompt token costs.
   */
  #swapSequences(from: number, to: number, keptTokens: number): { moved: boolean; kept: boolean } {
    const costs = this.#prefillBudget.stepCosts();
    if (costs === undefined) return { moved: false, kept: false };
    const maxBytes = Math.min(
      this.#swapCost.maxBytes(keptTokens, costs.msPerPromptToken, this.#waiting()),
      swapMemoryBound(this.#availableMemory.bytes()),
    );
    const start = performance.now();
    const swap = this.context.swapSequences(from, to, maxBytes);
    if (swap.moved) {
      this.#swapCost.observe(swap.bytes, performance.now() - start);
      this.#cacheSwaps++;
    }
    return swap;
  }

  /**
   * Requests whose next token waits for work done between steps: those generating or starting
   * (with the one being placed, taken off the queue already, while requests are admitted), and
   * those queued.
   */
  #waiting(): number {
    return this.#busySlots() + this.#queue.length + (this.#admitting ? 1 : 0);
  }

  /** A free slot for a further choice: with a KV stream per slot, one next to the busy run. */
  #freeSlotNextToBusy(): Slot {
    if (!this.#streamPerSlot) return this.#slots.find((s) => s.state === "idle") as Slot;
    const target = this.#runTargets()[0] as number;
    return this.#slots[target] as Slot;
  }

  /** Busy flag per sequence id. */
  #busyFlags(): boolean[] {
    return this.#slots.map((s) => s.state !== "idle");
  }

  /**
   * With a KV stream per slot, moves requests until the busy slots are one run again, where a
   * request can move: its stream is copied (`llama_memory_seq_cp` copies a whole stream on the
   * device, which costs far less than a further pass per step over the weights).
   */
  #keepBusySlotsARun(): void {
    if (!this.#streamPerSlot) return;
    for (let moves = 0; moves < this.#slots.length; moves++) {
      const move = compactingMove(this.#busyFlags(), (from, to) => this.#canMove(from, to));
      if (!move) return;
      const from = this.#slots[move.from] as Slot;
      const to = this.#slots[move.to] as Slot;
      const fromHolds = this.#moveCells(from, to);
      to.takeRequestFrom(from, from.samplesOnDevice ? to.deviceSampler : from.sampler);
      from.cached = fromHolds;
      this.#slotMoves++;
    }
  }

  /**
   * Gives slot `to` the cells of slot `from`. What `to` cached (a conversation that has just
   * ended, say, whose next turn would find it) goes to `from` in exchange where it is worth it
   * (at least {@link MIN_COPIED_PREFIX} tokens); else `from`'s cells are copied over it.
   *
   * @returns The tokens `from` caches afterwards.
   */
  #moveCells(from: Slot, to: Slot): number[] {
    const kept = to.cached;
    if (kept.length >= MIN_COPIED_PREFIX) {
      const swap = this.#swapSequences(from.seqId, to.seqId, kept.length);
      if (swap.moved) {
        from.usedAt = to.usedAt;
        return swap.kept ? kept : [];
      }
    }
    this.context.copySequence(from.seqId, to.seqId);
    return from.cached;
  }

  /**
   * Whether the request in slot `fromId` may move to the free slot `toId` without changing
   * what it samples: a chain on the CPU goes with it where no chain is attached; a chain on
   * the device stays, so the target's must have the same settings and no seed (whose draws
   * would start over).
   */
  #canMove(fromId: number, toId: number): boolean {
    const from = this.#slots[fromId] as Slot;
    const to = this.#slots[toId] as Slot;
    if (from.state === "forking" || !from.job) return false;
    if (!from.samplesOnDevice) return to.deviceSampler === undefined;
    return to.deviceSampler !== undefined && to.deviceKey === from.deviceKey &&
      from.job.request.sampling?.seed === undefined;
  }

  /** Fails a job that could not start, and its forks. */
  #rejectJob(job: Job, error: unknown): void {
    for (const one of [job, ...job.forks ?? []]) {
      one.sampler.close();
      one.chunks.fail(error);
      one.reject(error);
    }
  }

  /** @param deviceKey The job's {@link deviceSamplerKey}, or "" when it samples on the CPU. */
  #start(slot: Slot, job: Job, reuse: number, deviceKey: string): void {
    const request = job.request;
    // First, so a failure leaves the slot idle.
    const sampler = this.#samplerFor(slot, job, deviceKey);
    sampler.acceptPrompt(request.prompt);
    this.context.removeTokens(slot.seqId, reuse, -1);
    slot.cached.length = reuse;
    slot.job = job;
    job.slot = slot;
    slot.sampler = sampler;
    slot.text = new TextStream(request.stop ?? [], { minIndent: request.minIndent });
    slot.state = "prompt";
    slot.promptIndex = reuse;
    slot.cachedTokens = reuse;
    slot.generated = [];
    slot.chunkedTokens = 0;
    slot.unfinished = [];
    slot.pendingLogprobs = [];
    slot.logprobs = [];
    slot.output = "";
    slot.maxTokens = Math.min(
      request.maxTokens ?? Infinity,
      this.slotContext - request.prompt.length,
    );
    slot.admittedAt = performance.now();
    slot.admission = ++this.#admissions;
    slot.firstTokenAt = 0;
    slot.secondGroup = false;
    slot.lastChunk = 0;
    slot.budget = request.reasoningBudget && new ReasoningBudget(request.reasoningBudget);
  }

  /**
   * How many prompt tokens each slot reading a prompt evaluates in this step, in the order the
   * prompts were admitted (the queue's), so the earliest one finishes first. While others
   * generate, a long prompt that came after them goes in chunks between their tokens. The first
   * step of a burst of long prompts takes as many as the batch holds (their first tokens come
   * as early as in llama-server); once streams generate, a step finishes at most one long
   * prompt: the next one's first token then comes a whole prompt sooner than if it finished
   * together with the one after it, the streams get a token between prompts, and the last
   * prompt ends no later (the same work, cut at prompt boundaries). Short prompts still join
   * such a step: they add little to it. Prompts of a burst that wait for the second step
   * (`Slot.secondGroup`) sit this one out.
   *
   * @param room Batch positions left beside the generated tokens.
   */
  #promptTakes(active: Slot[], room: number, generating: Slot[]): Map<Slot, number> {
    if (generating.length === 0) room = Math.min(room, this.#lonePromptStep());
    // The earliest first token of the streams generating in this step (see prefill_budget.ts).
    const generatingSince = Math.min(...generating.map((s) => s.firstTokenAt));
    let promptBudget = this.#prefillBudget.tokens();
    // Chunks sit out a step now and then, for the streams' step to be timed as it is now.
    const chunksSitOut = this.#prefillBudget.generationStepDue();
    const prompts = active.filter((s) => s.state === "prompt")
      .sort((a, b) => a.admission - b.admission);
    const takes = new Map<Slot, number>();
    let finishedLongPrompt = false;
    for (const slot of prompts) {
      if (room === 0) break;
      if (slot.secondGroup) continue;
      const job = slot.job as Job;
      const prompt = job.request.prompt;
      // A short prompt goes in whole: its first token comes as soon as with no one else running.
      const short = prompt.length - slot.cachedTokens <= WHOLE_PROMPT_TOKENS;
      if (finishedLongPrompt && !short) continue;
      const rest = prompt.length - slot.promptIndex;
      let limit = Infinity;
      if (!short && chunksBehind(job.submittedAt, generatingSince)) {
        limit = chunksSitOut ? 0 : Math.max(promptBudget, this.#paceTokens(slot, rest, generating));
      }
      if (limit <= 0) continue;
      const take = Math.min(room, rest, limit);
      slot.lastChunk = take;
      finishedLongPrompt ||= generating.length > 0 && !short && take === rest;
      promptBudget -= take;
      room -= take;
      this.#promptTokensEvaluated += take;
      takes.set(slot, take);
    }
    for (const slot of prompts) slot.secondGroup = false;
    return takes;
  }

  /**
   * Most prompt tokens a step of prompts alone carries: what takes about
   * {@link LONE_PROMPT_STEP_MS} at the learnt cost per token (whole micro-batches, `n_ubatch`,
   * where that is more than one, at least {@link MIN_LONE_PROMPT_STEP}); no bound before a cost is learnt (the
   * model's first steps teach it). On a GPU that is the whole batch.
   */
  #lonePromptStep(): number {
    const msPerToken = this.#prefillBudget.promptAloneMsPerToken();
    if (msPerToken === undefined) return Infinity;
    const fit = Math.floor(LONE_PROMPT_STEP_MS / msPerToken);
    const micro = this.context.nUbatch;
    if (fit >= micro) return fit - (fit % micro);
    return Math.max(MIN_LONE_PROMPT_STEP, fit);
  }

  /** The tokens a prompt chunked behind `generating` takes to keep its pace (see prefill_budget.ts). */
  #paceTokens(slot: Slot, rest: number, generating: readonly Slot[]): number {
    return this.#prefillBudget.paceTokens({
      elapsedMs: performance.now() - (slot.job as Job).submittedAt,
      evaluated: slot.promptIndex - slot.cachedTokens,
      rest,
      lastChunk: slot.lastChunk,
      streamSteps: Math.max(0, ...generating.map((s) => s.maxTokens - s.generated.length)),
    });
  }

  /**
   * The lone stream whose coming steps can run on the decode thread: one generating slot, no
   * request queued or on its way, no log-probabilities (read from each step's logits), and with
   * a grammar, no UTF-8 guard on the next step (it edits the logits before sampling: the run
   * halts before such a step, see `Field.haltAfterLastBytes`). Its chain may sample on the CPU or
   * inside the decode graph.
   */
  #loneStreamAhead(active: readonly Slot[]): Slot | undefined {
    if (!this.#decodeThread || active.length !== 1) return undefined;
    const slot = active[0] as Slot;
    const request = slot.job?.request;
    if (slot.state !== "generating" || !request || !slot.sampler) return undefined;
    if (request.logprobs !== undefined || slot.budget?.tokensUntilCheck() === 0) return undefined;
    if (request.sampling?.grammar !== undefined && guardsNextStep(slot.unfinished)) {
      return undefined;
    }
    if (this.#othersWaiting() || this.#closing || !this.context.canDecodeAhead) return undefined;
    // Last: the ends are gathered only for a stream that could run ahead otherwise.
    return this.#runEnds(request).length > MAX_ENDS ? undefined : slot;
  }

  /**
   * Runs a lone stream's steps on the decode thread (`Context.decodeAhead`) and takes each
   * sampled token as it comes, as a step here would, until the stream ends or something needs
   * the event loop's steps again: a request queued or on its way, a cancellation, closing. Steps
   * the thread decoded past the stream's end (a stop string, a cancellation it heard of late)
   * leave cache cells behind: they are dropped, so the slot's cache holds what its tokens say.
   */
  async #decodeAhead(slot: Slot): Promise<void> {
    const job = slot.job as Job;
    const sampler = slot.sampler as Sampler;
    const batch = this.#batch;
    batch.clear();
    const last = slot.generated[slot.generated.length - 1] as number;
    batch.add(last, slot.cached.length, slot.seqId, true);
    const ends = this.#runEnds(job.request);
    const cachedBefore = slot.cached.length;
    let decoded = 0;
    const constrained = job.request.sampling?.grammar !== undefined;
    const run = await this.context.decodeAhead(
      batch,
      sampler,
      // A thinking budget is looked at again after as many tokens as it can take unseen.
      Math.min(slot.maxTokens - slot.generated.length, slot.budget?.tokensUntilCheck() ?? Infinity),
      ends,
      constrained ? GUARDED_LAST_BYTES : undefined,
    );
    this.#samplerAhead = sampler;
    this.#stopRunAhead = () => run.stop();
    try {
      for (let steps = await this.#nextSteps(run); steps; steps = await this.#nextSteps(run)) {
        const turnStart = performance.now();
        for (const step of steps) {
          decoded++;
          this.#steps++;
          this.#stepsAhead++;
          this.#prefillBudget.observe(step.decodeMs, 1, 0);
          if (slot.job !== job) continue; // ended: the steps after its end are not its own
          slot.cached.push(slot.generated[slot.generated.length - 1] as number);
          this.#takeToken(slot, step.token, 0);
        }
        if (slot.job !== job || job.request.signal?.aborted || this.#othersWaiting()) run.stop();
        this.#time.hostMs += performance.now() - turnStart;
      }
    } finally {
      if (!run.halted) { // a throw above: the thread must let go of the context first
        run.stop();
        for (let steps = await run.next(); steps; steps = await run.next()) {
          decoded += steps.length;
        }
      }
      if (constrained) {
        this.#grammarTokens += run.steps;
        this.#grammarRefusals += run.refusals;
      }
      this.#stopRunAhead = undefined;
      this.#samplerAhead = undefined;
      const released = this.#releasedAhead;
      this.#releasedAhead = undefined;
      if (released) this.#spareChains.keep(released.sampler, released.seeded);
    }
    if (run.status !== 0 && slot.job === job) {
      this.#fail(
        slot,
        run.threadFailed ? new Error("The decode thread failed") : new DecodeError(run.status),
      );
      return;
    }
    if (cachedBefore + decoded > slot.cached.length) {
      this.context.removeTokens(slot.seqId, slot.cached.length, -1);
    }
  }

  /** The distinct tokens a run on the decode thread halts on for a request. */
  #runEnds(request: GenerationRequest): number[] {
    if (request.ignoreEos) return [];
    return [...new Set([...this.context.model.eogTokens, ...(request.stopTokens ?? [])])];
  }

  /**
   * Whether requests are queued or on their way, or a slot task can run: a run on the decode
   * thread gives way to them.
   */
  #othersWaiting(): boolean {
    return this.#queued() > 0 || this.#othersOnTheWay() || this.#slotTaskReady();
  }

  /** Whether a queued slot task can run now: it runs between two of this loop's steps. */
  #slotTaskReady(): boolean {
    return performance.now() >= this.#slotTasksResumeAt && this.#slotTaskWaiting();
  }

  /** Whether a queued slot task's slot is idle. */
  #slotTaskWaiting(): boolean {
    return this.#slotTasks.some((task) => this.#slots[task.id]?.state === "idle");
  }

  /** The run's next steps, the wait for them counted as decode time. */
  async #nextSteps(run: DecodeRun): Promise<DecodedStep[] | null> {
    const start = performance.now();
    const steps = await run.next();
    this.#time.decodeMs += performance.now() - start;
    return steps;
  }

  /** Decodes one step and samples its tokens; tells whether some request got its first. */
  async #step(active: Slot[]): Promise<boolean> {
    const batch = this.#batch;
    batch.clear();
    const generating = active.filter((s) => s.state === "generating");
    for (const slot of active) slot.batchIndex = -1;
    const takes = this.#promptTakes(active, batch.free - generating.length, generating);
    // With a KV stream per slot, llama.cpp decodes a batch in one pass only when its sequences
    // come in order (see slot_placement.ts); a unified cache takes the generated tokens first,
    // then the prompts in the order they were admitted. A lone slot's step is one pass in any
    // case, and planning it cost a lone stream about 12 µs of each token's event-loop work.
    const plan = this.#streamPerSlot && active.length > 1
      ? this.#batchPlan(active, takes, generating)
      : undefined;
    if (plan) this.#countPasses(plan);
    const order = plan?.order ?? [...generating, ...takes.keys()];
    for (const slot of order) {
      if (slot.state === "generating") {
        const last = slot.generated[slot.generated.length - 1] as number;
        slot.batchIndex = batch.add(last, slot.cached.length, slot.seqId, true);
        slot.cached.push(last);
        continue;
      }
      const prompt = (slot.job as Job).request.prompt;
      const take = takes.get(slot) ?? 0;
      for (let k = 0; k < take; k++) {
        const token = prompt[slot.promptIndex] as number;
        const last = slot.promptIndex === prompt.length - 1;
        const index = batch.add(token, slot.cached.length, slot.seqId, last);
        if (last) slot.batchIndex = index;
        slot.cached.push(token);
        slot.promptIndex++;
      }
    }
    this.#steps++;
    if (active.filter((s) => s.batchIndex >= 0 || s.state === "prompt").length > 1) {
      this.#sharedSteps++;
    }
    // Every step decodes on a worker thread, so the event loop is free to write the tokens of
    // the last step to the sockets while this one computes. Decoding on this thread saved a
    // thread hop, but then streamed tokens left in clumps between steps (gap p50 0 ms, p99
    // several hundred ms on 2 cores, against llama-server's even 6 ms).
    const decodeStart = performance.now();
    try {
      await this.context.decode(batch);
    } catch (error) {
      for (const slot of active) this.#fail(slot, error);
      return false;
    } finally {
      const decodeMs = performance.now() - decodeStart;
      this.#prefillBudget.observe(decodeMs, generating.length, batch.length - generating.length);
      this.#time.decodeMs += decodeMs;
      this.#time.hostMs -= decodeMs; // inside the turn, which #run counts as host time
    }
    let firstTokens = false;
    for (const slot of active) {
      if (slot.batchIndex < 0 || !slot.job) continue;
      firstTokens ||= slot.state === "prompt";
      this.#sampleInto(slot);
    }
    return firstTokens;
  }

  /**
   * A step's batch with a KV stream per slot, and llama.cpp's split of it: the slots in their ids'
   * order, except that prompts that end in this step beside generating streams go before or after
   * the streams where that keeps llama.cpp from splitting them into a pass of the streams' tokens
   * and each prompt's first (see `splitPasses`): such a step took a generation step and 4–5 ms more than
   * the prompt alone on 2 cores, where the prompt in a pass of its own took one generation step
   * more. A long prompt's chunks (it does not end yet) keep the ids' order: in the interference
   * scenario of serve_bench, the 4 streams beside a 4,000-token prompt decoded 203 tok/s and the
   * prompt's first token came in 9.5 s that way, against 174–176 tok/s and 10.6 s with its chunks
   * ordered too (bench/README.md, "A request that arrives while a stream generates").
   */
  #batchPlan(
    active: Slot[],
    takes: ReadonlyMap<Slot, number>,
    generating: readonly Slot[],
  ): BatchPlan {
    const planOf = (order: Slot[]): BatchPlan => {
      const sequences = this.#batchSequences(order, takes, generating);
      return { order, sequences, split: splitPasses(sequences) };
    };
    let best = planOf(active);
    if (generating.length === 0 || takes.size === 0) return best;
    const prompts = active.filter((slot) => (takes.get(slot) ?? 0) > 0);
    const chunk = prompts.some((slot) =>
      slot.promptIndex + (takes.get(slot) as number) < (slot.job as Job).request.prompt.length
    );
    if (chunk) return best;
    for (const order of [[...prompts, ...generating], [...generating, ...prompts]]) {
      const candidate = planOf(order);
      const { split } = candidate;
      const better = split.mixedPasses < best.split.mixedPasses ||
        (split.mixedPasses === best.split.mixedPasses && split.passes < best.split.passes);
      if (better) best = candidate;
    }
    return best;
  }

  /** A step's slots as `splitPasses` takes them, in the given order. */
  #batchSequences(
    order: readonly Slot[],
    takes: ReadonlyMap<Slot, number>,
    generating: readonly Slot[],
  ): BatchSequence[] {
    return order.flatMap((slot): BatchSequence[] => {
      if (generating.includes(slot)) {
        return [{ seq: slot.seqId, tokens: 1, output: true, generating: true }];
      }
      const take = takes.get(slot) ?? 0;
      if (take === 0) return [];
      const ends = slot.promptIndex + take === (slot.job as Job).request.prompt.length;
      return [{ seq: slot.seqId, tokens: take, output: ends, generating: false }];
    });
  }

  /** Counts how llama.cpp will split a step with a KV stream per slot (see `splitPasses`). */
  #countPasses({ sequences, split }: BatchPlan): void {
    const inBatch = this.#slots.map(() => false);
    for (const { seq } of sequences) inBatch[seq] = true;
    if (busyRuns(inBatch) > 1) this.#brokenRunSteps++;
    const { passes, outputsInOrder, mixedPasses } = split;
    this.#extraPasses += Math.max(0, passes - 1);
    this.#mixedPasses += mixedPasses;
    if (!outputsInOrder) this.#reorderedSteps++;
  }

  /** Samples a slot's next token from the logits at `index` (default: its own in the batch). */
  #sampleInto(slot: Slot, index = slot.batchIndex): void {
    const job = slot.job as Job;
    if (slot.state === "prompt") {
      slot.state = "generating";
      slot.firstTokenAt = performance.now();
      if (slot.maxTokens === 0) {
        // A warm-up (`fillCache`): the prompt is in the cache now; nothing to sample.
        this.#finish(slot, "length");
        return;
      }
      for (const fork of job.forks ?? []) this.#fork(slot, fork, index);
    }
    const sampleStart = performance.now();
    const constrained = job.request.sampling?.grammar !== undefined;
    const sampler = slot.sampler as Sampler;
    const refusals = constrained ? sampler.grammarRefusals : 0;
    if (constrained) this.#utf8Guard.apply(this.context.logits(index), slot.unfinished);
    const forced = slot.budget?.forcedToken();
    let forcedLogprobs: TokenLogprob | undefined;
    if (forced !== undefined) {
      const logits = this.context.logits(index);
      // Reported as the model saw it, not as the mask leaves it (certain, the rest impossible).
      const top = job.request.logprobs;
      if (top !== undefined) forcedLogprobs = stepLogprobs(logits, forced, top);
      onlyToken(logits, forced);
    }
    const token = sampler.sample(this.context, index);
    if (constrained) {
      this.#grammarTokens++;
      this.#grammarRefusals += sampler.grammarRefusals - refusals;
    }
    const sampleMs = performance.now() - sampleStart;
    this.#time.sampleMs += sampleMs;
    this.#time.hostMs -= sampleMs; // inside the turn, which #run counts as host time
    this.#takeToken(slot, token, index, forcedLogprobs);
  }

  /**
   * What a slot does with its sampled token: end, or add it to the output and stream it.
   * `logprobs`: the token's log-probabilities when they were read before its step's logits were
   * changed (a forced token's).
   */
  #takeToken(slot: Slot, token: number, index: number, logprobs?: TokenLogprob): void {
    const job = slot.job as Job;
    const model = this.context.model;
    const constrained = job.request.sampling?.grammar !== undefined;
    const ends = model.isEog(token) || (job.request.stopTokens?.includes(token) ?? false);
    // No token at all: the request's grammar allows none (see `pickWithGrammar`).
    if (token === LLAMA_TOKEN_NULL || (!job.request.ignoreEos && ends)) {
      this.#finish(slot, "stop");
      return;
    }
    slot.generated.push(token);
    if (job.request.logprobs !== undefined) {
      slot.pendingLogprobs.push(
        logprobs ?? stepLogprobs(this.context.logits(index), token, job.request.logprobs),
      );
    }
    const bytes = model.tokenBytes(token);
    slot.budget?.accept(bytes);
    if (constrained) slot.unfinished = unfinishedCharacter(slot.unfinished, bytes);
    const chunk = (slot.text as TextStream).push(bytes);
    if (chunk.text) {
      if (chunk.stopBytes !== undefined) dropStopStringLogprobs(slot, chunk.stopBytes, model);
      slot.output += chunk.text;
      job.chunks.push({
        text: chunk.text,
        completionTokens: slot.generated.length,
        tokens: tokensSinceLastChunk(slot),
        ...sentLogprobs(slot),
      });
    }
    if (chunk.stop !== undefined) {
      this.#finish(slot, "stop");
    } else if (
      chunk.underIndented || slot.generated.length >= slot.maxTokens ||
      this.#lineTimeUp(slot, job.request, bytes)
    ) {
      this.#finish(slot, "length");
    }
  }

  /** Whether a token ends a line after the request's line time limit (`lineTimeLimitMs`). */
  #lineTimeUp(slot: Slot, request: GenerationRequest, bytes: Uint8Array): boolean {
    const limit = request.lineTimeLimitMs;
    return limit !== undefined && slot.firstTokenAt > 0 && bytes.includes(NEWLINE) &&
      performance.now() - slot.firstTokenAt > limit;
  }

  /**
   * Starts a further choice from its first choice's evaluated prompt: shares the prompt's cache
   * entries and samples the first token from the same logits. A choice that ended meanwhile
   * (cancelled) is skipped.
   */
  #fork(first: Slot, fork: Job, index: number): void {
    const slot = fork.slot;
    if (!slot || slot.job !== fork || slot.state !== "forking") return;
    this.context.copySequence(first.seqId, slot.seqId);
    slot.cached = [...first.cached];
    slot.state = "generating";
    slot.firstTokenAt = first.firstTokenAt;
    this.#sampleInto(slot, index);
  }

  /** Ends the choices still waiting for a first choice that ended before its prompt did. */
  #endWaitingForks(job: Job, end: (slot: Slot) => void): void {
    for (const fork of job.forks ?? []) {
      if (fork.slot?.job === fork && fork.slot.state === "forking") end(fork.slot);
    }
  }

  #finish(slot: Slot, reason: FinishReason): void {
    const job = slot.job as Job;
    const text = slot.text as TextStream;
    const tail = text.flush();
    // The tokens of a stop string are not part of the output.
    if (text.stoppedBy !== undefined) slot.pendingLogprobs = [];
    if ((tail.text || slot.pendingLogprobs.length > 0) && reason !== "cancelled") {
      slot.output += tail.text;
      job.chunks.push({
        text: tail.text,
        completionTokens: slot.generated.length,
        tokens: tokensSinceLastChunk(slot),
        ...sentLogprobs(slot),
      });
    }
    const now = performance.now();
    const promptEnd = slot.firstTokenAt || now;
    const promptMs = promptEnd - slot.admittedAt;
    const generateMs = slot.firstTokenAt ? now - slot.firstTokenAt : 0;
    const evaluated = job.request.prompt.length - slot.cachedTokens;
    const result: GenerationResult = {
      text: slot.output,
      tokens: slot.generated,
      finishReason: reason,
      promptTokens: job.request.prompt.length,
      cachedTokens: slot.cachedTokens,
      completionTokens: slot.generated.length,
      ...(job.request.logprobs !== undefined ? { logprobs: slot.logprobs } : {}),
      ...(job.sharesPrompt ? { sharedPrompt: true } : {}),
      timings: {
        queueMs: slot.admittedAt - job.submittedAt,
        promptMs,
        ttftMs: promptMs,
        generateMs,
        promptPerSecond: promptMs > 0 ? (evaluated * 1000) / promptMs : 0,
        generatePerSecond: generateMs > 0 && slot.generated.length > 1
          ? ((slot.generated.length - 1) * 1000) / generateMs
          : 0,
      },
    };
    if ((slot.text as TextStream).stoppedBy !== undefined) {
      result.stoppedBy = (slot.text as TextStream).stoppedBy;
    }
    this.#release(slot);
    job.chunks.end();
    job.resolve(result);
    this.#endWaitingForks(job, (fork) => this.#finish(fork, "cancelled"));
  }

  #fail(slot: Slot, error: unknown): void {
    const job = slot.job;
    if (!job) return;
    // What the failed decode wrote for this sequence is unknown: forget it.
    this.context.removeTokens(slot.seqId, -1, -1);
    slot.cached = [];
    this.#release(slot);
    const wrapped = error instanceof GenerationError
      ? error
      : new GenerationError("decode_failed", (error as Error).message, error);
    job.chunks.fail(wrapped);
    job.reject(wrapped);
    this.#endWaitingForks(job, (fork) => this.#fail(fork, wrapped));
  }

  /**
   * The chain a job samples with in a slot: on the device when allowed (the slot's attached
   * chain if it was built from the same settings, else the job's, attached in its place), else
   * the job's own on the CPU, after detaching the slot's (its sequence must not sample on the
   * device for a CPU request).
   */
  #samplerFor(slot: Slot, job: Job, key: string): Sampler {
    const onDevice = key !== "";
    if (onDevice && slot.deviceSampler && slot.deviceKey === key) {
      this.#spareChains.keep(job.sampler, job.request.sampling?.seed !== undefined);
      // A fixed seed starts its sequence of draws again; without one, the draws go on.
      if (job.request.sampling?.seed !== undefined) slot.deviceSampler.reset();
      this.#deviceSampledRequests++;
      return slot.deviceSampler;
    }
    this.#dropDeviceSampler(slot);
    if (!onDevice) return job.sampler;
    this.context.attachSampler(slot.seqId, job.sampler);
    this.#deviceSamplerAttachments++;
    slot.deviceSampler = job.sampler;
    slot.deviceKey = key;
    this.#deviceSampledRequests++;
    return job.sampler;
  }

  #dropDeviceSampler(slot: Slot): void {
    slot.deviceSampler?.close(); // detaches it
    slot.deviceSampler = undefined;
    slot.deviceKey = "";
  }

  #release(slot: Slot): void {
    if (slot.sampler && slot.sampler !== slot.deviceSampler) {
      const seeded = slot.job?.request.sampling?.seed !== undefined;
      // The decode thread may still sample with it: kept (or freed) once the run halts.
      if (slot.sampler === this.#samplerAhead) {
        this.#releasedAhead = { sampler: slot.sampler, seeded };
      } else this.#spareChains.keep(slot.sampler, seeded);
    }
    slot.sampler = undefined;
    slot.text = undefined;
    slot.budget = undefined;
    slot.job = undefined;
    slot.state = "idle";
    slot.batchIndex = -1;
    slot.usedAt = ++this.#releases;
  }

  /**
   * Cancels queued and running generations, waits for the loop to stop, and frees the batch.
   * The context stays open (its owner closes it). Safe to call twice.
   */
  async close(): Promise<void> {
    this.#closing = true;
    this.#wakeUp();
    await this.#loop;
    // Sampler chains still compiling use the model on a worker thread: wait for them.
    await Promise.allSettled([...this.#preparing]);
    this.#announceScheduled();
    for (const slot of this.#slots) this.#dropDeviceSampler(slot);
    this.#spareChains.close();
    this.#batch.close();
  }
}

/** The error of a request the scheduler ends because it closes (shutdown or unload). */
function cutOffError(): GenerationError {
  return new GenerationError(
    "closed",
    "The model was closed (the server is shutting down or unloaded it) before the answer " +
      "was complete; send the request again",
  );
}

/** The result of a request that generated nothing (cancelled, or `max_tokens` 0). */
function emptyResult(request: GenerationRequest, submittedAt: number): GenerationResult {
  return {
    text: "",
    tokens: [],
    finishReason: "cancelled",
    promptTokens: request.prompt.length,
    cachedTokens: 0,
    completionTokens: 0,
    timings: {
      queueMs: performance.now() - submittedAt,
      promptMs: 0,
      ttftMs: 0,
      generateMs: 0,
      promptPerSecond: 0,
      generatePerSecond: 0,
    },
  };
}

/**
 * What makes two device chains interchangeable: the same stages, and the same seed when the
 * request fixed one (without one, any draws will do).
 */
function deviceSamplerKey(job: Job): string {
  const seeded = job.request.sampling?.seed !== undefined;
  return JSON.stringify(
    job.sampler.stages.map((stage) => stage.type === "dist" && !seeded ? { type: "dist" } : stage),
  );
}

/** The byte of `\n`. */
const NEWLINE = 0x0a;

/**
 * Resolves once the microtasks queued so far, and those they queue, have run: a `setImmediate`
 * (2 µs, no wait for I/O). After a step, that is the way of its text to the sockets: the
 * generation's queue, the answer's stream and the socket write, which Deno makes at once when
 * the socket has room. A nonblocking no-op call (`Llama.yieldToIo`) did not wait for them: it
 * sometimes returns before the first microtask has run, and then the next step's threads took
 * the cores from the rest of that way (a lone first token on 2 cores: 11 of 34 left after the
 * next step had started, written 0.43 ms after sampling at the median and 1.02 ms at p90,
 * against 0 of 44 and 0.40 / 0.59 ms after this drain).
 */
function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

const adapterIds = new WeakMap<LoraAdapter, number>();
let nextAdapterId = 1;

function loraKey(set: readonly LoraChoice[]): string {
  return set.filter((c) => c.scale !== 0).map((c) => {
    let id = adapterIds.get(c.adapter);
    if (id === undefined) adapterIds.set(c.adapter, id = nextAdapterId++);
    return `${id}@${c.scale}`;
  }).join(",");
}

/** The ids a slot generated since its last chunk, for the next one. */
function tokensSinceLastChunk(slot: Slot): number[] {
  const tokens = slot.generated.slice(slot.chunkedTokens);
  slot.chunkedTokens = slot.generated.length;
  return tokens;
}

/** The log-probabilities waiting in a slot, moved to its sent ones, for a chunk. */
/**
 * Drops the pending log-probabilities of the tokens that reach into the stop string which ended
 * the text (`stopBytes`: from its start to the end of the tokens' bytes): the stop string is not
 * output, nor are its tokens reported, also where the last of them brought text before it.
 */
function dropStopStringLogprobs(slot: Slot, stopBytes: number, model: Model): void {
  let bytesAfter = 0;
  let kept = slot.pendingLogprobs.length;
  while (kept > 0 && bytesAfter < stopBytes) {
    kept--;
    bytesAfter += model.tokenBytes(slot.pendingLogprobs[kept]!.token).length;
  }
  slot.pendingLogprobs.length = kept;
}

function sentLogprobs(slot: Slot): { logprobs?: TokenLogprob[] } {
  if (slot.pendingLogprobs.length === 0) return {};
  const logprobs = slot.pendingLogprobs;
  slot.pendingLogprobs = [];
  slot.logprobs.push(...logprobs);
  return { logprobs };
}

/**
 * The slot with the longest cached prefix of `prompt`, counting one not worth reusing
 * ({@link worthReusing}) as none; among equals, one whose device chain was built for `key`, and
 * then the one whose cache was used least recently (an empty one first), as it is the one lost.
 * For a request of a burst (`inBurst`) the lowest id among equals instead: the burst's window of
 * slots was chosen for its caches' age already, and its requests, taken fewest tokens left first,
 * must take ids in that order for their step to need the fewest passes (see `splitPasses`).
 *
 * @returns The slot and the tokens of `prompt` it holds.
 */
function longestPrefixSlot(
  free: Slot[],
  prompt: Int32Array,
  key: string,
  inBurst = false,
): [Slot, number] {
  let best = free[0] as Slot;
  let bestShared = -1;
  let bestCounted = -1;
  for (const slot of free) {
    const shared = commonPrefix(slot.cached, prompt);
    const counted = worthReusing(slot, prompt, shared);
    const better = counted > bestCounted ||
      (counted === bestCounted && !inBurst && lostFirst(slot, best, key));
    if (better) [best, bestShared, bestCounted] = [slot, shared, counted];
  }
  return [best, bestShared];
}

/** Of two slots that hold as much of a prompt, whether `slot` is the better one to take. */
function lostFirst(slot: Slot, best: Slot, key: string): boolean {
  const fits = slot.deviceKey === key;
  const bestFits = best.deviceKey === key;
  return fits && !bestFits || fits === bestFits && slot.usedAt < best.usedAt;
}

/**
 * The tokens of `prompt` a slot's cache holds, or 0 where they are few (under half the prompt
 * and under {@link MIN_COPIED_PREFIX}: a BOS and a word in common, say) and both the cache and the
 * prompt go on past them: taking that slot would lose the rest of its cache for them.
 */
function worthReusing(
  slot: Slot,
  prompt: Int32Array,
  shared = commonPrefix(slot.cached, prompt),
): number {
  const whole = shared === slot.cached.length || shared === prompt.length;
  return whole || shared >= Math.min(MIN_COPIED_PREFIX, prompt.length / 2) ? shared : 0;
}

/** Slots a request takes: one, and one for each further choice. */
function slotsNeeded(job: Job): number {
  return 1 + (job.forks?.length ?? 0);
}

function commonPrefix(cached: readonly number[], prompt: Int32Array): number {
  const n = Math.min(cached.length, prompt.length);
  let i = 0;
  while (i < n && cached[i] === prompt[i]) i++;
  return i;
}

/** Runs `build`, returning its outcome as a settled result instead of throwing. */
function settle<T>(build: () => T): PromiseSettledResult<T> {
  try {
    return { status: "fulfilled", value: build() };
  } catch (reason) {
    return { status: "rejected", reason };
  }
}

/** Makes every logit -∞ but `token`'s, so that any sampler picks it (a forced token). */
function onlyToken(logits: Float32Array, token: number): void {
  const kept = logits[token] as number;
  logits.fill(-Infinity);
  logits[token] = Number.isFinite(kept) ? kept : 0;
}
