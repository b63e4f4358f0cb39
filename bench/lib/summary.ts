/**
 * The summary across rounds: one row per metric with both servers' values and the ratio
 * shimmy/llama-server. Rates are medians over the rounds; TTFT and token gaps pool every
 * request (or every gap) of a level over all rounds. Also the check that both servers produced
 * the same greedy text for the same prompt.
 *
 * @module
 */

import { allSamples, type LevelSample, type RoundResult } from "./samples.ts";
import type { ServerName } from "./server_process.ts";
import { burstSplit, type GapStats, gapStats, mean, median } from "./stats.ts";

/** Stable names of the summary rows, for readers of the JSON report. */
export type SummaryKey =
  | "decodeTps"
  | "ttftP50"
  | "ttftMean"
  | "serverPromptMsP50"
  | "gapP99"
  | "worstStreamGapP99"
  | "interferenceGapP99Alone"
  | "interferenceGapP99WithLongPrompt"
  | "interferenceLongestGap"
  | "interferenceGapP99Ratio"
  | "interferenceTpsAlone"
  | "interferenceTpsDuringPrompt"
  | "longPromptTtftP50";

/** One line of the results table. */
export interface SummaryRow {
  /** Which metric; together with `streams` it names the row. */
  key: SummaryKey;
  /** What was measured and at which level, as the table prints it. */
  metric: string;
  /** Concurrent streams (not counting the interference scenario's long prompt). */
  streams: number;
  /** Unit of `shimmy` and `llamaServer`; "x" is a ratio of two times. */
  unit: "tok/s" | "ms" | "x";
  /** Shimmy's value (for a token-gap row: the p99). */
  shimmy: number;
  /** llama-server's value (for a token-gap row: the p99). */
  llamaServer: number;
  /** shimmy / llama-server. */
  ratio: number;
  /** Token-gap rows only: every gap statistic of both servers. */
  gaps?: { shimmy: GapStats; llamaServer: GapStats };
}

/**
 * A number of streams in words.
 *
 * @param n Streams.
 * @returns "1 stream", "4 streams".
 * @example
 * ```ts
 * streamsLabel(8); // "8 streams"
 * ```
 */
export function streamsLabel(n: number): string {
  return `${n} stream${n === 1 ? "" : "s"}`;
}

/**
 * One server's samples of one concurrency level, over all rounds.
 *
 * @param rounds Every round of both servers.
 * @param server The server.
 * @param streams The level.
 * @returns Its samples (one per burst), round by round.
 */
function levelSamples(rounds: RoundResult[], server: ServerName, streams: number): LevelSample[] {
  return rounds.filter((r) => r.server === server)
    .flatMap((r) => r.levels.filter((l) => l.streams === streams));
}

/** A row from one value per server. */
function row(
  key: SummaryKey,
  metric: string,
  streams: number,
  unit: SummaryRow["unit"],
  value: (server: ServerName) => number,
): SummaryRow {
  const shimmy = value("shimmy");
  const llamaServer = value("llama-server");
  return { key, metric, streams, unit, shimmy, llamaServer, ratio: shimmy / llamaServer };
}

/**
 * The gaps of some samples, pooled.
 *
 * @param samples Samples of one server (one level's bursts, say).
 * @returns The statistics of all their streams' gaps together.
 * @example
 * ```ts
 * pooledGaps(round.levels.filter((l) => l.streams === 8)).p99;
 * ```
 */
export function pooledGaps(samples: LevelSample[]): GapStats {
  return gapStats(samples.flatMap((s) => s.gapsMs));
}

/** A token-gap row: the pooled gaps of each server's samples; the values are the p99s. */
function gapRow(
  key: SummaryKey,
  metric: string,
  streams: number,
  samples: (server: ServerName) => LevelSample[],
): SummaryRow {
  const gaps = {
    shimmy: pooledGaps(samples("shimmy")),
    llamaServer: pooledGaps(samples("llama-server")),
  };
  const p99 = (server: ServerName) => (server === "shimmy" ? gaps.shimmy : gaps.llamaServer).p99;
  return { ...row(key, metric, streams, "ms", p99), gaps };
}

/**
 * Summarizes all rounds: per concurrency level the decode rate, TTFT p50 and mean, the servers' own
 * prompt-to-first-token time p50 (`timings.prompt_ms`), token gap p50/p90/p99
 * and the worst stream's gap p99; for the interference scenario, if it ran, the gaps without and
 * with the long prompt, the longest gap, the p99 ratio with/without, the streams' decode rate
 * alone and while the long prompt is evaluated, and the long prompt's TTFT.
 *
 * @param rounds Every round of both servers.
 * @param levels The concurrency levels, in the order to report.
 * @returns The rows, in table order.
 * @example
 * ```ts
 * for (const row of summarize(rounds, [1, 4, 8])) console.log(row.metric, row.ratio);
 * ```
 */
export function summarize(rounds: RoundResult[], levels: number[]): SummaryRow[] {
  const level = (streams: number) => (server: ServerName) => levelSamples(rounds, server, streams);
  const rows = [
    ...levels.map((n) =>
      row(
        "decodeTps",
        `${n === 1 ? "decode" : "aggregate decode"} tok/s, ${streamsLabel(n)}`,
        n,
        "tok/s",
        (server) => median(level(n)(server).map((l) => l.aggregateTps)),
      )
    ),
    ...levels.map((n) =>
      row(
        "ttftP50",
        `TTFT p50 ms, ${streamsLabel(n)}`,
        n,
        "ms",
        (server) => median(level(n)(server).flatMap((l) => l.ttftMs)),
      )
    ),
    ...levels.map((n) =>
      row(
        "ttftMean",
        `TTFT mean ms, ${streamsLabel(n)}`,
        n,
        "ms",
        (server) => mean(level(n)(server).flatMap((l) => l.ttftMs)),
      )
    ),
    ...levels.map((n) =>
      row(
        "serverPromptMsP50",
        `server prompt-to-first-token p50 ms, ${streamsLabel(n)}`,
        n,
        "ms",
        (server) =>
          median(level(n)(server).flatMap((l) => l.serverPromptMs).filter(Number.isFinite)),
      )
    ),
    ...levels.map((n) =>
      gapRow("gapP99", `token gap p50/p90/p99 ms, ${streamsLabel(n)}`, n, level(n))
    ),
    ...levels.map((n) =>
      row(
        "worstStreamGapP99",
        `worst stream gap p99 ms, ${streamsLabel(n)}`,
        n,
        "ms",
        (server) => pooledGaps(level(n)(server)).worstStreamP99,
      )
    ),
  ];
  return rounds.every((r) => r.interference) && rounds.length > 0
    ? [...rows, ...interferenceRows(rounds)]
    : rows;
}

/** How many of a level's bursts split, per server (see `burstSplit`). */
export interface SplitBursts {
  /** Concurrent streams of the level. */
  streams: number;
  /** Shimmy's split bursts and bursts. */
  shimmy: { split: number; bursts: number };
  /** llama-server's split bursts and bursts. */
  llamaServer: { split: number; bursts: number };
}

/**
 * Counts, per level of more than one stream, the bursts whose first step started without the
 * rest (`burstSplit`: the earliest first token well before the next), over all rounds.
 *
 * @param rounds Every round of both servers.
 * @param levels The concurrency levels, in the order to report.
 * @returns One entry per level of two streams or more.
 * @example
 * ```ts
 * for (const level of splitBursts(rounds, [1, 8, 32])) console.log(level.shimmy.split);
 * ```
 */
export function splitBursts(rounds: RoundResult[], levels: number[]): SplitBursts[] {
  const count = (server: ServerName, streams: number) => {
    const bursts = levelSamples(rounds, server, streams);
    return { split: bursts.filter((l) => burstSplit(l.ttftMs)).length, bursts: bursts.length };
  };
  return levels.filter((n) => n > 1).map((streams) => ({
    streams,
    shimmy: count("shimmy", streams),
    llamaServer: count("llama-server", streams),
  }));
}

function interferenceRows(rounds: RoundResult[]): SummaryRow[] {
  const all = rounds.flatMap((r) => r.interference ? [r.interference] : []);
  const of = (server: ServerName) =>
    rounds.filter((r) => r.server === server).flatMap((r) =>
      r.interference ? [r.interference] : []
    );
  const alone = (server: ServerName) => of(server).map((i) => i.alone);
  const loaded = (server: ServerName) => of(server).map((i) => i.withLongPrompt);
  const streams = all[0]?.alone.streams ?? 0;
  const longTokens = Math.max(...all.map((i) => i.longPrompt.promptTokens));
  const withLong = `${streamsLabel(streams)} + ${longTokens}-token prompt`;
  return [
    gapRow(
      "interferenceGapP99Alone",
      `token gap p50/p90/p99 ms, ${streamsLabel(streams)} alone`,
      streams,
      alone,
    ),
    gapRow(
      "interferenceGapP99WithLongPrompt",
      `token gap p50/p90/p99 ms, ${withLong}`,
      streams,
      loaded,
    ),
    row(
      "interferenceLongestGap",
      `longest token gap ms, ${withLong}`,
      streams,
      "ms",
      (s) => pooledGaps(loaded(s)).max,
    ),
    row(
      "interferenceGapP99Ratio",
      "token gap p99 with / without the long prompt",
      streams,
      "x",
      (s) => pooledGaps(loaded(s)).p99 / pooledGaps(alone(s)).p99,
    ),
    row(
      "interferenceTpsAlone",
      `aggregate decode tok/s, ${streamsLabel(streams)} alone`,
      streams,
      "tok/s",
      (s) => median(alone(s).map((l) => l.aggregateTps)),
    ),
    row(
      "interferenceTpsDuringPrompt",
      `aggregate decode tok/s, ${streamsLabel(streams)} during the prompt`,
      streams,
      "tok/s",
      (s) => median(of(s).map((i) => i.longPrompt.streamsTpsDuring)),
    ),
    row(
      "longPromptTtftP50",
      `TTFT p50 ms of the ${longTokens}-token prompt`,
      streams,
      "ms",
      (s) => median(of(s).map((i) => i.longPrompt.ttftMs)),
    ),
  ];
}

/** How the greedy single-stream texts of the two servers compare, prompt by prompt. */
export interface GreedyComparison {
  /** Prompts answered by both servers. */
  compared: number;
  /** Of those, answered with the same text. */
  same: number;
  /** The shortest common prefix of two answers to the same prompt, in characters. */
  agreeChars: number;
  /** The prompts answered differently, with both answers (to tell which side changed). */
  differences: { prompt: string; shimmy: string; llamaServer: string }[];
}

/**
 * Compares the single-stream texts of both servers for the same prompts. Random weights give
 * near-ties between logits, so a last-bit difference in the arithmetic (another KV cell layout,
 * for one) can change the rest of a text: a long common prefix already shows that the same model
 * computed the same thing.
 *
 * @param rounds Every round of both servers.
 * @returns The counts; `compared` is 0 when no 1-stream level was measured.
 * @example
 * ```ts
 * const { same, compared } = compareGreedyTexts(rounds);
 * ```
 */
export function compareGreedyTexts(rounds: RoundResult[]): GreedyComparison {
  const single = (server: ServerName) => levelSamples(rounds, server, 1).flatMap((l) => l.results);
  const reference = new Map(single("llama-server").map((r) => [r.prompt, r.text]));
  const out: GreedyComparison = { compared: 0, same: 0, agreeChars: Infinity, differences: [] };
  for (const { prompt, text } of single("shimmy")) {
    const other = reference.get(prompt);
    if (other === undefined) continue;
    let n = 0;
    while (n < text.length && text[n] === other[n]) n++;
    out.compared++;
    if (text === other) out.same++;
    else out.differences.push({ prompt, shimmy: text, llamaServer: other });
    out.agreeChars = Math.min(out.agreeChars, n);
  }
  return out;
}

/**
 * The most of some number over the samples of one server (or both), e.g. prompt tokens.
 *
 * @param rounds Every round.
 * @param server One server, or undefined for both.
 * @param value The number of a sample.
 * @returns The largest value, -Infinity for no samples.
 * @example
 * ```ts
 * mostOf(rounds, "shimmy", (s) => s.cachedTokens);
 * ```
 */
export function mostOf(
  rounds: RoundResult[],
  server: ServerName | undefined,
  value: (sample: LevelSample) => number,
): number {
  return Math.max(
    ...rounds.filter((r) => server === undefined || r.server === server)
      .flatMap((r) => allSamples(r).map(value)),
  );
}
