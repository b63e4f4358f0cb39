/**
 * What one measurement on one server produced, derived from the client's view of its streams:
 * a concurrency level measured once ({@link LevelSample}), the interference scenario
 * ({@link InterferenceSample}), and one server start with all of its measurements
 * ({@link RoundResult}). These are the records the summary and the JSON report read.
 *
 * @module
 */

import type { SchedulerCounters } from "./scheduler_counters.ts";
import type { ServerName } from "./server_process.ts";
import { type StreamResult, tokenGaps } from "./sse_client.ts";
import { type GapStats, gapStats } from "./stats.ts";

/** Several streams sent at once to one server and measured together. */
export interface LevelSample {
  /** Concurrent streams. */
  streams: number;
  /** (Σ tokens − streams) / (last text event of all − first text event of any), tok/s. */
  aggregateTps: number;
  /** Per stream: (tokens − 1) / (its last text event − its first), tok/s. */
  streamTps: number[];
  /** Per stream: first text event − request sent, ms. */
  ttftMs: number[];
  /** Per stream: the server's time from starting its prompt to its first token, ms (NaN if not
   * reported; see {@link StreamResult.serverPromptMs}). */
  serverPromptMs: number[];
  /** Per stream: the gaps between its consecutive text events after the first, ms. */
  gapsMs: number[][];
  /** The gaps of all streams of this sample, summarized. */
  gaps: GapStats;
  /** Most prompt tokens of a stream, as the server reported them. */
  promptTokens: number;
  /** Most prompt tokens a server reported reusing from its cache. */
  cachedTokens: number;
  /** The streams themselves, for the greedy-output comparison (left out of the JSON). */
  results: StreamResult[];
}

/**
 * Derives a level's numbers from its finished streams.
 *
 * @param results The streams, all sent at once.
 * @returns The sample.
 * @example
 * ```ts
 * const results = await Promise.all(prompts.map((p) => streamCompletion(url, p, 128)));
 * console.log(levelSample(results).aggregateTps);
 * ```
 */
export function levelSample(results: StreamResult[]): LevelSample {
  const first = Math.min(...results.map((r) => r.firstAt));
  const last = Math.max(...results.map((r) => r.lastAt));
  const generated = results.reduce((n, r) => n + r.tokens, 0) - results.length;
  const gapsMs = results.map(tokenGaps);
  return {
    streams: results.length,
    aggregateTps: generated / ((last - first) / 1000),
    streamTps: results.map((r) => (r.tokens - 1) / ((r.lastAt - r.firstAt) / 1000)),
    ttftMs: results.map((r) => r.firstAt - r.sentAt),
    serverPromptMs: results.map((r) => r.serverPromptMs),
    gapsMs,
    gaps: gapStats(gapsMs),
    promptTokens: Math.max(...results.map((r) => r.promptTokens)),
    cachedTokens: Math.max(...results.map((r) => r.cachedTokens)),
    results,
  };
}

/** The long prompt sent into decoding streams, as the client saw it. */
export interface LongPromptSample {
  /** Its prompt tokens, as the server reported them. */
  promptTokens: number;
  /** Text events every stream had received when it was sent. */
  sentAfterTokens: number;
  /** When it was sent, ms after the first text event of any stream. */
  sentAtMs: number;
  /** Its TTFT: its one token (or, if that has no text, the end of its stream) − sent, ms. */
  ttftMs: number;
  /**
   * The streams' text events per second from sending the long prompt until its first token (or
   * until the first stream ended, if earlier): near 0 when evaluating the prompt stalls them.
   */
  streamsTpsDuring: number;
}

/** The interference scenario on one server start: the same streams without and with a long prompt. */
export interface InterferenceSample {
  /** The streams alone. */
  alone: LevelSample;
  /** The streams while a long prompt is evaluated. */
  withLongPrompt: LevelSample;
  /** The long prompt. */
  longPrompt: LongPromptSample;
}

/** One server start: warm-up, then every concurrency level (or the interference scenario) once. */
export interface RoundResult {
  /** Round number, from 1. */
  round: number;
  /** The server. */
  server: ServerName;
  /** One sample per concurrency level, in the order measured. */
  levels: LevelSample[];
  /** The interference scenario, when it was run. */
  interference?: InterferenceSample;
  /** Share of the machine's CPU time other processes used while measuring; null if unknown. */
  otherCpu: number | null;
  /** Shimmy's scheduler counters over the measured part of the round (none for llama-server). */
  scheduler?: SchedulerCounters;
}

/**
 * Every stream sample of a round: its levels and, if run, both interference variants.
 *
 * @param round A round.
 * @returns The samples.
 * @example
 * ```ts
 * const most = Math.max(...allSamples(round).map((s) => s.promptTokens));
 * ```
 */
export function allSamples(round: RoundResult): LevelSample[] {
  const extra = round.interference
    ? [round.interference.alone, round.interference.withLongPrompt]
    : [];
  return [...round.levels, ...extra];
}
