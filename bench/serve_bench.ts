/**
 * Serving benchmark: `shimmy serve` against llama.cpp's `llama-server`, on the same GGUF model,
 * the same libllama build (`lib/reference`) and the same settings. It measures single-stream
 * decode speed, aggregate decode speed at several concurrency levels, time to first token and
 * how evenly tokens stream (the gaps between them), or, with `--interference`, how much a long
 * prompt arriving mid-stream stretches the gaps of streams that are decoding. It prints both
 * servers' numbers and the ratio shimmy/llama-server. This is a benchmark, not a test: it
 * asserts nothing about speed. See `bench/README.md` for the definitions.
 *
 * This file holds the flags and the order of the work; `bench/lib/` holds the parts: server
 * processes, the streaming client, prompts, what is measured, statistics, summary and report.
 *
 * ```sh
 * deno run -A bench/serve_bench.ts                       # bench-125m, 128 tokens, 3 rounds
 * deno run -A bench/serve_bench.ts --model m.gguf --streams 1,8 --json out.json
 * deno run -A bench/serve_bench.ts --interference        # a 4,000-token prompt into 4 streams
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { isAbsolute, join, resolve } from "node:path";
import { gpusFlag } from "../src/cli/flags.ts";
import { UsageError } from "../src/cli/usage_error.ts";
import { fixtureModel, REPO_ROOT } from "../tests/fixtures/models.ts";
import { type BenchModel, contextOverride, readBenchModel } from "./lib/model_info.ts";
import { PROMPT, PROMPT_ALLOWANCE, PromptSequence } from "./lib/prompts.ts";
import { jsonReport, machineInfo, progressLine, summaryText } from "./lib/report.ts";
import { writeJsonReport } from "./lib/write_report.ts";
import type { RoundResult } from "./lib/samples.ts";
import {
  INTERFERENCE_AFTER_TOKENS,
  INTERFERENCE_CTX_SIZE,
  INTERFERENCE_PROMPT_TOKENS,
  INTERFERENCE_SLOTS,
  INTERFERENCE_STREAMS,
  measureInterference,
  measureLevel,
  warmUp,
} from "./lib/scenarios.ts";
import {
  describeLaunch,
  flashAttnFlag,
  launchFor,
  llamaServerVersion,
  otherCpuShare,
  readCpuTicks,
  type ServerName,
  ServerProcess,
  SERVERS,
  type ServerSettings,
  shellQuote,
  stopAllServers,
} from "./lib/server_process.ts";
import { countersBetween, readSchedulerCounters } from "./lib/scheduler_counters.ts";
import { summarize } from "./lib/summary.ts";

/** Usage text of the benchmark. */
export const BENCH_USAGE = `Usage: deno run -A bench/serve_bench.ts [options]

Runs shimmy serve and llama-server one after the other on the same model and settings and
prints single-stream decode tok/s, aggregate decode tok/s at each concurrency level, TTFT
p50 and token gap p50/p90/p99 for both, with the ratio shimmy/llama-server.

Options:
  --model PATH            GGUF model (default: the generated bench-125m fixture)
  --threads N             CPU threads for both servers (default: number of cores)
  --tokens N              Tokens generated per request (default 128; 256 with --interference)
  --reps N                Rounds; each starts each server once (default 3)
  --bursts N              Times each level is measured per round, one burst after another
                          (default 1): TTFT and gaps pool every burst, rates take the median
  --first-tokens N        At least N first tokens per level and round: a level of s streams runs
                          max(bursts, ceil(N / s)) bursts (default 0: --bursts alone), so that one
                          stream's TTFT p50 does not rest on a handful of requests
  --streams LIST          Concurrency levels, comma-separated (default 1,4,8)
  --staggered             Requests of a burst end at different times: the i-th of n generates
                          tokens * i / n (aggregate rates then count the tails, for both servers)
  --slots N               Slots of both servers (default: the largest --streams level); with
                          --slots 1, neither uses a unified KV cache
  --prompt-tokens N       Prompt of about N tokens per request (default: a ~37-token prompt)
  --interference          Instead of the levels: ${INTERFERENCE_STREAMS} streams decoding, without and with
                          one ${INTERFERENCE_PROMPT_TOKENS}-token prompt sent after ${INTERFERENCE_AFTER_TOKENS} tokens each
                          (sets ${INTERFERENCE_SLOTS} slots and ctx-size >= ${INTERFERENCE_CTX_SIZE})
  --ctx-size N            Context tokens per request (default 1024, or what the prompt needs)
  --warmup N              Warm-up requests per server start (default 2)
  --llama-server PATH     llama-server binary (default lib/reference/bin/llama-server)
  --lib-dir DIR           SHIMMY_LIB_DIR for Shimmy (default lib/reference)
  --kv-unified on|off     One KV cache for all slots (on) or a stream per slot (off, the
                          default: Shimmy's choice), for both (llama-server's --kv-unified)
  --decode-thread on|off  Shimmy decodes a lone stream on its decode thread (on, the default)
                          or through the event loop (off: --no-decode-thread)
  --flash-attn M          on | off | auto for both servers (default: each its own choice;
                          Shimmy's the faster on this CPU, llama-server's on)
  --gpus LIST             CUDA GPUs both servers use, e.g. 0 (Shimmy's --gpus, llama-server's
                          --device CUDA0); default every GPU: Shimmy a copy per GPU or a split,
                          llama-server the layers split over them
  --json PATH             Also write the results as JSON to PATH (gzip-compressed where PATH
                          ends in .gz)

Examples:
  deno run -A bench/serve_bench.ts
  deno run -A bench/serve_bench.ts --model ./models/llama-8b-q4.gguf --streams 1,8 --json r.json
  deno run -A bench/serve_bench.ts --prompt-tokens 1000 --streams 1,4,8
  deno run -A bench/serve_bench.ts --streams 1 --slots 1
  deno run -A bench/serve_bench.ts --streams 8 --staggered --tokens 256
  deno run -A bench/serve_bench.ts --interference --reps 3`;

/** `--ctx-size` when none is given and the prompt needs no more. */
const DEFAULT_CTX_SIZE = 1024;

/** Parsed benchmark options; the server settings are shared by both servers. */
export interface BenchOptions extends ServerSettings {
  /** GGUF model. Default: undefined, meaning the generated `bench-125m` fixture. */
  model?: string;
  /** Tokens generated per request (`max_tokens`, with `ignore_eos`). Default 128, 256 with
   * `interference`. */
  tokens: number;
  /** Rounds; each round starts each server once. Default 3. */
  reps: number;
  /** Bursts per concurrency level and round, measured one after another. Default 1. */
  bursts: number;
  /** First tokens each level collects per round at least (more bursts at low levels). Default 0. */
  firstTokens: number;
  /** Concurrency levels, in the order measured. Default `[1, 4, 8]`; `[]` with `interference`. */
  streams: number[];
  /** Whether the requests of a burst generate tokens * i / n each, ending one by one. */
  staggered: boolean;
  /** Prompt tokens per request. Default: undefined, the ~37-token default prompt. */
  promptTokens?: number;
  /** Run the interference scenario instead of the concurrency levels. Default false. */
  interference: boolean;
  /** Warm-up requests per server start (plus one concurrent burst). Default 2. */
  warmup: number;
  /** Where to write the JSON report. Default: undefined, no report. */
  json?: string;
  /** Settings the parser chose for the user (a raised context size), to print. */
  notes: string[];
}

function intFlag(name: string, value: string | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`--${name} must be an integer of at least ${min}, got "${value}"`);
  }
  return n;
}

function onOffFlag(name: string, value: string): boolean {
  if (value !== "on" && value !== "off") {
    throw new UsageError(`--${name} must be on or off, got "${value}"`);
  }
  return value === "on";
}

function absolute(path: string): string {
  return isAbsolute(path) ? path : resolve(path);
}

/**
 * Parses the benchmark's command line.
 *
 * @param args Command-line arguments.
 * @returns The options, or undefined for `--help`.
 * @throws {UsageError} for an unknown flag, a bad value, or a `--ctx-size` too small for the
 * prompt and the tokens.
 * @example
 * ```ts
 * const options = parseBenchArgs(["--streams", "1,8", "--tokens", "64"]);
 * console.log(options?.streams); // [1, 8]
 * ```
 */
export function parseBenchArgs(args: string[]): BenchOptions | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        model: { type: "string" },
        threads: { type: "string" },
        tokens: { type: "string" },
        reps: { type: "string" },
        bursts: { type: "string" },
        "first-tokens": { type: "string" },
        streams: { type: "string" },
        slots: { type: "string" },
        "prompt-tokens": { type: "string" },
        interference: { type: "boolean", default: false },
        staggered: { type: "boolean", default: false },
        "ctx-size": { type: "string" },
        warmup: { type: "string" },
        "llama-server": { type: "string" },
        "lib-dir": { type: "string" },
        "flash-attn": { type: "string" },
        "kv-unified": { type: "string" },
        "decode-thread": { type: "string" },
        gpus: { type: "string" },
        json: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const v = parsed.values;
  if (v.help) return undefined;
  const interference = v.interference;
  if (interference && v.streams !== undefined) {
    throw new UsageError(
      `--interference always runs ${INTERFERENCE_STREAMS} streams: leave out --streams`,
    );
  }
  if (interference && v.staggered) {
    throw new UsageError("--interference has its own streams: leave out --staggered");
  }
  if (interference && (v.bursts !== undefined || v["first-tokens"] !== undefined)) {
    throw new UsageError(
      "--interference measures its scenario once per round: leave out --bursts and --first-tokens",
    );
  }
  if (interference && v.slots !== undefined) {
    throw new UsageError(
      `--interference always uses ${INTERFERENCE_SLOTS} slots: leave out --slots`,
    );
  }
  const streams = interference ? [] : [
    ...new Set((v.streams ?? "1,4,8").split(",").map((s) => intFlag("streams", s.trim(), 1))),
  ];
  const tokens = intFlag("tokens", v.tokens, interference ? 256 : 128, 2);
  if (interference && tokens <= 2 * INTERFERENCE_AFTER_TOKENS) {
    throw new UsageError(
      `--tokens must be more than ${2 * INTERFERENCE_AFTER_TOKENS} with --interference, ` +
        `got ${tokens}`,
    );
  }
  const promptTokens = v["prompt-tokens"] === undefined
    ? undefined
    : intFlag("prompt-tokens", v["prompt-tokens"], 0, 8);
  const context = chooseCtxSize(v["ctx-size"], promptTokens, tokens, interference);
  const options: BenchOptions = {
    threads: intFlag("threads", v.threads, navigator.hardwareConcurrency),
    tokens,
    reps: intFlag("reps", v.reps, 3),
    bursts: intFlag("bursts", v.bursts, 1),
    firstTokens: intFlag("first-tokens", v["first-tokens"], 0, 0),
    streams,
    staggered: v.staggered,
    interference,
    slots: interference ? INTERFERENCE_SLOTS : chooseSlots(v.slots, streams),
    ctxSize: context.ctxSize,
    warmup: intFlag("warmup", v.warmup, 2, 0),
    llamaServer: absolute(v["llama-server"] ?? join(REPO_ROOT, "lib/reference/bin/llama-server")),
    libDir: absolute(v["lib-dir"] ?? join(REPO_ROOT, "lib/reference")),
    kvUnified: onOffFlag("kv-unified", v["kv-unified"] ?? "off"),
    decodeThread: onOffFlag("decode-thread", v["decode-thread"] ?? "on"),
    notes: context.notes,
  };
  const flashAttn = flashAttnFlag(v["flash-attn"]);
  if (flashAttn !== undefined) options.flashAttn = flashAttn;
  if (promptTokens !== undefined) options.promptTokens = promptTokens;
  const gpus = gpusFlag(v.gpus);
  if (gpus) options.gpus = gpus;
  if (v.model !== undefined) options.model = absolute(v.model);
  if (v.json !== undefined) options.json = absolute(v.json);
  return options;
}

/**
 * The slots of both servers: `--slots` if given, else the largest concurrency level.
 *
 * @throws {UsageError} when fewer than the largest level, whose streams would then queue.
 */
function chooseSlots(flag: string | undefined, streams: number[]): number {
  const needed = Math.max(...streams);
  const slots = intFlag("slots", flag, needed);
  if (slots < needed) {
    throw new UsageError(
      `--slots ${slots} is fewer than the ${needed} streams of --streams: use at least ${needed}`,
    );
  }
  return slots;
}

/**
 * The context per request: `--ctx-size` if given, else the default; raised to what the prompt
 * and the tokens need when not given, and to what the interference scenario needs always, with
 * a note for each raise.
 *
 * @throws {UsageError} when a given size is too small for the prompt and the tokens.
 */
function chooseCtxSize(
  flag: string | undefined,
  promptTokens: number | undefined,
  tokens: number,
  interference: boolean,
): { ctxSize: number; notes: string[] } {
  const given = flag === undefined ? undefined : intFlag("ctx-size", flag, DEFAULT_CTX_SIZE);
  const prompt = promptTokens === undefined ? "" : `a ${promptTokens}-token prompt and `;
  const needed = (promptTokens ?? 0) + tokens + PROMPT_ALLOWANCE;
  if (given !== undefined && given < needed) {
    throw new UsageError(
      `--ctx-size ${given} is too small for ${prompt}--tokens ${tokens}: use at least ${needed}`,
    );
  }
  const notes: string[] = [];
  let ctxSize = given ?? DEFAULT_CTX_SIZE;
  if (ctxSize < needed) {
    notes.push(`ctx-size raised from ${ctxSize} to ${needed} for ${prompt}--tokens ${tokens}`);
    ctxSize = needed;
  }
  if (interference && ctxSize < INTERFERENCE_CTX_SIZE) {
    notes.push(
      `ctx-size raised from ${ctxSize} to ${INTERFERENCE_CTX_SIZE} for the ` +
        `${INTERFERENCE_PROMPT_TOKENS}-token prompt of --interference`,
    );
    ctxSize = INTERFERENCE_CTX_SIZE;
  }
  return { ctxSize, notes };
}

/**
 * Bursts a level of `streams` streams runs per round: `--bursts`, or more where fewer would
 * collect less than `--first-tokens` first tokens.
 *
 * @param streams The level's streams.
 * @param options The benchmark's options.
 * @returns The number of bursts.
 * @example
 * ```ts
 * burstsOfLevel(1, { bursts: 2, firstTokens: 16 }); // 16
 * burstsOfLevel(8, { bursts: 2, firstTokens: 16 }); // 2
 * ```
 */
export function burstsOfLevel(
  streams: number,
  options: Pick<BenchOptions, "bursts" | "firstTokens">,
): number {
  return Math.max(options.bursts, Math.ceil(options.firstTokens / streams));
}

/**
 * One server start: warm-up, then every concurrency level once, or the interference scenario.
 */
async function runRound(
  round: number,
  name: ServerName,
  options: BenchOptions,
  model: BenchModel,
): Promise<RoundResult> {
  const server = await ServerProcess.start(name, options, model);
  try {
    const warm = options.warmup > 0;
    await warmUp(server.url, new PromptSequence(options.promptTokens), {
      requests: options.warmup,
      burst: warm ? options.slots : 0,
      tokens: options.tokens,
      ...(warm && options.interference ? { longPromptTokens: INTERFERENCE_PROMPT_TOKENS } : {}),
    });
    const prompts = new PromptSequence(options.promptTokens);
    const pids = [Deno.pid, server.pid];
    const countersBefore = await readSchedulerCounters(server.url);
    const before = await readCpuTicks(pids);
    const levels = [];
    for (const streams of options.streams) {
      for (let burst = 0; burst < burstsOfLevel(streams, options); burst++) {
        levels.push(
          await measureLevel(server.url, streams, options.tokens, prompts, options.staggered),
        );
      }
    }
    const interference = options.interference
      ? await measureInterference(server.url, options.tokens, prompts)
      : undefined;
    const otherCpu = otherCpuShare(before, await readCpuTicks(pids)) ?? null;
    const scheduler = countersBetween(countersBefore, await readSchedulerCounters(server.url));
    return {
      round,
      server: name,
      levels,
      ...(interference ? { interference } : {}),
      otherCpu,
      ...(scheduler ? { scheduler } : {}),
    };
  } finally {
    await server.stop();
  }
}

async function requireExists(path: string, what: string, flag: string): Promise<void> {
  try {
    await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new UsageError(`Cannot find ${what} ${path}: pass ${flag}`);
    }
    throw error;
  }
}

/**
 * Runs the benchmark.
 *
 * @param args Command-line arguments.
 * @returns The exit code: 0, or 1 after printing a one-line error.
 * @example
 * ```ts
 * Deno.exit(await main(["--tokens", "64", "--reps", "1"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const onSignal = () => void stopAllServers().finally(() => Deno.exit(130));
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);
  try {
    const options = parseBenchArgs(args);
    if (!options) {
      console.log(BENCH_USAGE);
      return 0;
    }
    await run(options, args);
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`serve_bench: ${message}`);
    return 1;
  } finally {
    await stopAllServers();
    for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  }
}

function settingsLine(options: BenchOptions, notes: string[]): string {
  const measured = options.interference
    ? `interference: ${INTERFERENCE_STREAMS} streams + one ${INTERFERENCE_PROMPT_TOKENS}-token ` +
      `prompt after ${INTERFERENCE_AFTER_TOKENS} tokens`
    : `streams=${options.streams.join(",")}`;
  const prompt = options.promptTokens === undefined
    ? "default (~37 tokens)"
    : `~${options.promptTokens} tokens`;
  const bursts = (options.bursts === 1 ? "" : `bursts=${options.bursts}, `) +
    (options.firstTokens === 0 ? "" : `first-tokens=${options.firstTokens}, `);
  return `Settings: threads=${options.threads}, tokens=${options.tokens}, reps=${options.reps}, ` +
    bursts +
    `${measured}, prompt=${prompt}, ctx-size=${options.ctxSize} per request, ` +
    `slots=${options.slots}, warmup=${options.warmup}` +
    (options.decodeThread === false ? ", shimmy without its decode thread" : "") +
    (options.gpus ? `, gpus=${options.gpus.join(",")}` : "") +
    notes.map((note) => `\n          (${note})`).join("");
}

async function run(options: BenchOptions, args: string[]): Promise<void> {
  await requireExists(options.llamaServer, "llama-server", "--llama-server PATH");
  await requireExists(options.libDir, "the library folder", "--lib-dir DIR");
  if (options.model !== undefined) await requireExists(options.model, "model", "--model PATH");
  const model = await readBenchModel(options.model ?? await fixtureModel("bench-125m"));
  const version = await llamaServerVersion(options.llamaServer);
  const machine = await machineInfo();
  const command = ["deno", "run", "-A", "bench/serve_bench.ts", ...args].map(shellQuote)
    .join(" ");
  const launches = Object.fromEntries(
    SERVERS.map((name) => [name, describeLaunch(launchFor(name, options, model, "PORT"))]),
  ) as Record<ServerName, string>;

  console.log(`Command:  ${command}`);
  console.log(`Machine:  ${Object.entries(machine).map(([k, v]) => `${k}=${v}`).join(", ")}`);
  console.log(
    `Model:    ${model.path} (${(model.bytes / 2 ** 20).toFixed(0)} MiB, ` +
      `trained context ${model.trainCtx ?? "unknown"})`,
  );
  const override = contextOverride(model, options.ctxSize);
  const notes = [...options.notes];
  if (override) {
    notes.push(
      `llama-server caps a slot's context at the trained ${model.trainCtx}: it gets ` +
        `--override-kv ${override}`,
    );
  }
  console.log(settingsLine(options, notes));
  console.log(`shimmy:       ${launches.shimmy}`);
  console.log(`llama-server: ${launches["llama-server"]}  (${version})`);
  console.log("");

  const rounds: RoundResult[] = [];
  for (let round = 1; round <= options.reps; round++) {
    const order = round % 2 === 1 ? SERVERS : [...SERVERS].reverse() as ServerName[];
    for (const name of order) {
      const result = await runRound(round, name, options, model);
      rounds.push(result);
      console.error(progressLine(result, options.reps));
    }
  }

  const summary = summarize(rounds, options.streams);
  console.log("");
  console.log(summaryText(summary, rounds, {
    reps: options.reps,
    bursts: options.bursts,
    firstTokens: options.firstTokens,
    ...(options.promptTokens === undefined ? {} : { promptTokens: options.promptTokens }),
    staggered: options.staggered,
  }));
  if (options.json !== undefined) {
    const header = {
      command,
      machine,
      model,
      settings: {
        ...options,
        notes,
        promptTokens: options.promptTokens ?? null,
        prompt: PROMPT,
        ...(options.interference
          ? {
            interferenceScenario: {
              streams: INTERFERENCE_STREAMS,
              longPromptTokens: INTERFERENCE_PROMPT_TOKENS,
              afterTokens: INTERFERENCE_AFTER_TOKENS,
            },
          }
          : {}),
      },
      servers: { shimmy: launches.shimmy, llamaServer: launches["llama-server"], version },
    };
    const report = jsonReport(header, summary, rounds);
    await writeJsonReport(options.json, report);
    console.log(`Wrote ${options.json}`);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
