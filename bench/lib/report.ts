/**
 * The benchmark's output: the machine description, the one-line progress report per round, the
 * results table with the notes below it, and the JSON report. Nothing here measures; it formats
 * what the rounds and the summary hold.
 *
 * @module
 */

import { REPO_ROOT } from "../../tests/fixtures/models.ts";
import type { BenchModel } from "./model_info.ts";
import type { LevelSample, RoundResult } from "./samples.ts";
import { describeCounters } from "./scheduler_counters.ts";
import type { ServerName } from "./server_process.ts";
import { median, SPLIT_SHARE } from "./stats.ts";
import {
  compareGreedyTexts,
  mostOf,
  pooledGaps,
  type SplitBursts,
  splitBursts,
  streamsLabel,
  type SummaryRow,
} from "./summary.ts";

/** Other processes' CPU share above which the report warns that the numbers are noisy. */
const NOISY_OTHER_CPU = 0.05;
/** A longest gap this many times the p99 means a stall the p99 does not show. */
const HIDDEN_STALL_FACTOR = 10;
/** Requested and reported prompt tokens differing by more than this share are pointed out. */
const PROMPT_TOKENS_TOLERANCE = 0.1;

/**
 * Describes the machine, for reproducing the numbers: cores, OS, memory, Deno, the CPU model
 * (Linux), the GPUs (`nvidia-smi`) and Shimmy's git commit where available.
 *
 * @returns Name/value pairs.
 * @example
 * ```ts
 * console.log(Object.entries(await machineInfo()).map(([k, v]) => `${k}=${v}`).join(", "));
 * ```
 */
export async function machineInfo(): Promise<Record<string, string | number>> {
  const info: Record<string, string | number> = {
    cores: navigator.hardwareConcurrency,
    os: `${Deno.build.os} ${Deno.osRelease()} ${Deno.build.arch}`,
    memoryGiB: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
    deno: Deno.version.deno,
  };
  try {
    const cpu = /^model name\s*:\s*(.+)$/m.exec(await Deno.readTextFile("/proc/cpuinfo"));
    if (cpu?.[1]) info.cpu = cpu[1];
  } catch {
    // not Linux
  }
  const gpu = await commandOutput("nvidia-smi", ["--query-gpu=name", "--format=csv,noheader"]);
  if (gpu) info.gpu = gpu.split("\n").join(", ");
  const commit = await commandOutput("git", ["-C", REPO_ROOT, "describe", "--always", "--dirty"]);
  if (commit) info.shimmyCommit = commit;
  return info;
}

/** A command's trimmed stdout, or undefined when it is missing or fails. */
async function commandOutput(command: string, args: string[]): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(command, { args, stdin: "null", stderr: "piped" }).output();
    if (!out.success) return undefined;
    return new TextDecoder().decode(out.stdout).trim() || undefined;
  } catch {
    return undefined;
  }
}

const ms = (value: number) => value.toFixed(value < 10 ? 1 : 0);

/**
 * The progress line of one round: each level's rate, TTFT p50 and token gap p99 (over its bursts:
 * the median rate, TTFT and gaps pooled), or the interference scenario's gap p99 without and with
 * the long prompt, and other processes' CPU.
 *
 * @param result The round.
 * @param reps Rounds in all.
 * @returns One line.
 * @example
 * ```ts
 * console.error(progressLine(result, 3));
 * ```
 */
export function progressLine(result: RoundResult, reps: number): string {
  const levels = [...new Set(result.levels.map((l) => l.streams))];
  const parts = levels.map((streams) => {
    const bursts = result.levels.filter((l) => l.streams === streams);
    const rate = median(bursts.map((l) => l.aggregateTps));
    const ttft = median(bursts.flatMap((l) => l.ttftMs));
    const gapP99 = pooledGaps(bursts).p99;
    return `${streams}x ${rate.toFixed(1)} tok/s ttft ${ms(ttft)} ms gap p99 ${ms(gapP99)} ms`;
  });
  const i = result.interference;
  if (i) {
    parts.push(
      `${i.alone.streams}x alone gap p99 ${ms(i.alone.gaps.p99)} ms`,
      `+${i.longPrompt.promptTokens}-token prompt gap p99 ${ms(i.withLongPrompt.gaps.p99)} ms ` +
        `max ${ms(i.withLongPrompt.gaps.max)} ms, its ttft ${ms(i.longPrompt.ttftMs)} ms`,
    );
  }
  const other = result.otherCpu === null
    ? ""
    : ` | other processes ${(result.otherCpu * 100).toFixed(0)}% CPU`;
  const counters = result.scheduler ? ` | ${describeCounters(result.scheduler)}` : "";
  return `round ${result.round}/${reps} ${result.server.padEnd(12)} ${parts.join(" | ")}${other}` +
    counters;
}

/** A value as the table prints it: token-gap rows as p50 / p90 / p99. */
function cell(row: SummaryRow, server: "shimmy" | "llamaServer"): string {
  const gaps = row.gaps?.[server];
  if (gaps) return [gaps.p50, gaps.p90, gaps.p99].map((v) => v.toFixed(1)).join(" / ");
  return row[server].toFixed(row.unit === "x" ? 2 : 1);
}

/**
 * The results table: metric, both servers' values and the ratio shimmy/llama-server.
 *
 * @param rows The summary rows.
 * @returns The table, columns aligned.
 * @example
 * ```ts
 * console.log(formatTable(summarize(rounds, [1, 4, 8])));
 * ```
 */
export function formatTable(rows: SummaryRow[]): string {
  const header = ["metric", "shimmy", "llama-server", "shimmy/llama-server"];
  const body = rows.map((r) => [
    r.metric,
    cell(r, "shimmy"),
    cell(r, "llamaServer"),
    r.ratio.toFixed(2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))
      .join("  ");
  return [line(header), ...body.map(line)].join("\n");
}

/** Options of {@link summaryText}. */
export interface SummaryTextOptions {
  /** Rounds run. */
  reps: number;
  /** Bursts per level and round. Default 1. */
  bursts?: number;
  /** First tokens per level and round at least (`--first-tokens`). Default 0. */
  firstTokens?: number;
  /** Prompt tokens asked for with `--prompt-tokens`. Default: undefined, the default prompt. */
  promptTokens?: number;
  /** Whether a burst's requests generated `tokens * i / n` each (`--staggered`). */
  staggered?: boolean;
}

/**
 * The table and the notes below it: how to read the ratios, the token-gap p99 ratios, the
 * interference result, prompt tokens and cache reuse, the greedy-text check and the CPU warning.
 *
 * @param summary The summary rows.
 * @param rounds Every round of both servers.
 * @param options Rounds and the requested prompt size.
 * @returns The text to print.
 * @example
 * ```ts
 * console.log(summaryText(summarize(rounds, levels), rounds, { reps: 3 }));
 * ```
 */
export function summaryText(
  summary: SummaryRow[],
  rounds: RoundResult[],
  options: SummaryTextOptions,
): string {
  const lines = [
    formatTable(summary),
    "",
    "tok/s: higher is better, ratio > 1 means Shimmy is faster. TTFT and token gaps: lower is " +
    "better, ratio < 1 means Shimmy is faster or streams more evenly. A token-gap row's ratio is " +
    "that of the p99s.",
    `Rates are medians over ${options.reps} round(s)` +
    ((options.bursts ?? 1) > 1 ? ` of ${options.bursts} bursts per level` : "") +
    ((options.firstTokens ?? 0) > 0
      ? ` (more where a level's bursts held fewer than ${options.firstTokens} requests a round)`
      : "") +
    "; TTFT and gap percentiles pool every request or gap of all rounds.",
    ...(options.staggered
      ? [
        "Staggered: the i-th of a burst's n requests generated tokens * i / n, so they ended one " +
        "by one; an aggregate rate counts the tails, where fewer streams ran.",
      ]
      : []),
  ];
  const gapRows = summary.filter((r) => r.key === "gapP99");
  if (gapRows.length > 0) {
    lines.push(
      "Gap p99 ratio shimmy/llama-server: " +
        gapRows.map((r) => `${r.ratio.toFixed(2)} at ${streamsLabel(r.streams)}`).join(", ") + ".",
    );
  }
  lines.push(...splitNote(splitBursts(rounds, levelsOf(summary))));
  lines.push(...interferenceNotes(summary), promptNote(rounds, options.promptTokens));
  const greedy = compareGreedyTexts(rounds);
  if (greedy.compared > 0) {
    lines.push(
      `Greedy 1-stream texts identical: ${greedy.same}/${greedy.compared}` +
        (greedy.same < greedy.compared
          ? ` (all agree on the first ${greedy.agreeChars} chars)`
          : ""),
    );
    for (const differ of greedy.differences) {
      const start = (text: string) => JSON.stringify(text.slice(0, 60));
      lines.push(
        `  ${start(differ.prompt)} -> shimmy ${start(differ.shimmy)}, ` +
          `llama-server ${start(differ.llamaServer)}`,
      );
    }
  }
  const shares = rounds.flatMap((r) => r.otherCpu === null ? [] : [r.otherCpu]);
  if (shares.length > 0) {
    const worst = Math.max(...shares);
    lines.push(
      `Other processes used at most ${(worst * 100).toFixed(1)}% of the CPU during a round` +
        (worst > NOISY_OTHER_CPU
          ? ": WARNING, the machine was not quiet and the numbers are noisy; rerun when it is"
          : "."),
    );
  }
  return lines.join("\n");
}

/** The concurrency levels the summary reports, in its order. */
function levelsOf(summary: SummaryRow[]): number[] {
  return summary.filter((r) => r.key === "decodeTps").map((r) => r.streams);
}

function splitNote(levels: SplitBursts[]): string[] {
  if (levels.length === 0) return [];
  const counts = (c: { split: number; bursts: number }) => `${c.split}/${c.bursts}`;
  return [
    `Bursts whose first step started without the rest (first TTFT under ${SPLIT_SHARE}x the ` +
    "next): " +
    levels.map((l) =>
      `${streamsLabel(l.streams)} shimmy ${counts(l.shimmy)}, ` +
      `llama-server ${counts(l.llamaServer)}`
    ).join("; ") + ".",
  ];
}

function interferenceNotes(summary: SummaryRow[]): string[] {
  const ratio = summary.find((r) => r.key === "interferenceGapP99Ratio");
  const loaded = summary.find((r) => r.key === "interferenceGapP99WithLongPrompt")?.gaps;
  if (!ratio || !loaded) return [];
  const notes = [
    `Interference: token gap p99 of ${ratio.streams} streams with / without the long prompt: ` +
    `shimmy ${ratio.shimmy.toFixed(2)}x, llama-server ${ratio.llamaServer.toFixed(2)}x ` +
    "(goal for Shimmy: at most 2x).",
  ];
  const servers = { shimmy: loaded.shimmy, "llama-server": loaded.llamaServer };
  const hidden = Object.entries(servers)
    .filter(([, gaps]) => gaps.max > HIDDEN_STALL_FACTOR * gaps.p99).map(([name]) => name);
  if (hidden.length > 0) {
    notes.push(
      `The p99 hides a stall for ${hidden.join(" and ")}: the longest gap is over ` +
        `${HIDDEN_STALL_FACTOR}x the p99, as when under 1% of the gaps are stretched; the longest ` +
        "gap and the decode rate during the prompt show it.",
    );
  }
  return notes;
}

function promptNote(rounds: RoundResult[], requested: number | undefined): string {
  const tokens = mostOf(rounds, undefined, (s) => s.promptTokens);
  const cached = (server: ServerName) => mostOf(rounds, server, (s) => s.cachedTokens);
  const off = requested !== undefined &&
    Math.abs(tokens - requested) > requested * PROMPT_TOKENS_TOLERANCE;
  const asked = requested === undefined
    ? ""
    : ` (asked for ${requested}${off ? ": this vocabulary splits the text differently" : ""})`;
  return `Prompt: ${tokens} tokens${asked}; most reused from a prefix cache: ` +
    `shimmy ${cached("shimmy")}, llama-server ${cached("llama-server")}.`;
}

/** What the JSON report records besides the results. */
export interface ReportHeader {
  /** The benchmark's command line. */
  command: string;
  /** {@link machineInfo}. */
  machine: Record<string, string | number>;
  /** The model file. */
  model: BenchModel;
  /** Every setting, as run. */
  settings: Record<string, unknown>;
  /** Both servers' command lines and llama-server's version. */
  servers: { shimmy: string; llamaServer: string; version: string };
}

/** Gaps rounded to a microsecond, which is all the clock gives. */
const roundGaps = (gaps: number[][]) => gaps.map((g) => g.map((v) => Math.round(v * 1000) / 1000));

/** A sample as the JSON holds it: without the streams' texts, gaps rounded. */
function jsonSample({ results: _, ...sample }: LevelSample) {
  return { ...sample, gapsMs: roundGaps(sample.gapsMs) };
}

/**
 * The JSON report: the header, the summary, the greedy-text check, and every round's samples
 * (each stream's rate, TTFT and token gaps, without the generated texts).
 *
 * @param header The command, machine, model, settings and servers.
 * @param summary The summary rows.
 * @param rounds Every round of both servers.
 * @returns A plain object for `JSON.stringify`.
 * @example
 * ```ts
 * await Deno.writeTextFile("r.json", JSON.stringify(jsonReport(header, summary, rounds), null, 2));
 * ```
 */
export function jsonReport(
  header: ReportHeader,
  summary: SummaryRow[],
  rounds: RoundResult[],
): Record<string, unknown> {
  return {
    benchmark: "bench/serve_bench.ts",
    date: new Date().toISOString(),
    ...header,
    summary,
    splitBursts: splitBursts(rounds, levelsOf(summary)),
    greedyTexts: compareGreedyTexts(rounds),
    rounds: rounds.map((r) => ({
      ...r,
      levels: r.levels.map(jsonSample),
      ...(r.interference
        ? {
          interference: {
            ...r.interference,
            alone: jsonSample(r.interference.alone),
            withLongPrompt: jsonSample(r.interference.withLongPrompt),
          },
        }
        : {}),
    })),
  };
}
