/**
 * Serving benchmark: `shimmy serve` against llama.cpp's `llama-server`, on the same GGUF model,
 * the same libllama build (`lib/reference`) and the same settings. It measures single-stream
 * decode speed, aggregate decode speed at several concurrency levels, and time to first token,
 * then prints both servers' numbers and the ratio shimmy/llama-server. This is a benchmark, not
 * a test: it asserts nothing about speed. See `bench/README.md` for the definitions.
 *
 * ```sh
 * deno run -A bench/serve_bench.ts                       # bench-125m, 128 tokens, 3 rounds
 * deno run -A bench/serve_bench.ts --model m.gguf --streams 1,8 --json out.json
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { isAbsolute, join, resolve } from "node:path";
import { UsageError } from "../src/cli/usage_error.ts";
import { fixtureModel, REPO_ROOT } from "../tests/fixtures/models.ts";

/** Usage text of the benchmark. */
export const BENCH_USAGE = `Usage: deno run -A bench/serve_bench.ts [options]

Runs shimmy serve and llama-server one after the other on the same model and settings and
prints single-stream decode tok/s, aggregate decode tok/s at each concurrency level and TTFT
p50 for both, with the ratio shimmy/llama-server.

Options:
  --model PATH            GGUF model (default: the generated bench-125m fixture)
  --threads N             CPU threads for both servers (default: number of cores)
  --tokens N              Tokens generated per request (default 128)
  --reps N                Rounds; each starts each server once (default 3)
  --streams LIST          Concurrency levels, comma-separated (default 1,4,8)
  --ctx-size N            Context tokens per request (default 1024)
  --warmup N              Warm-up requests per server start (default 2)
  --llama-server PATH     llama-server binary (default lib/reference/bin/llama-server)
  --lib-dir DIR           SHIMMY_LIB_DIR for Shimmy (default lib/reference)
  --json PATH             Also write the results as JSON to PATH

Examples:
  deno run -A bench/serve_bench.ts
  deno run -A bench/serve_bench.ts --model ./models/llama-8b-q4.gguf --streams 1,8 --json r.json`;

/**
 * The prompt (about 32 tokens with a llama SPM vocabulary). Each request puts a distinct number
 * in front, so neither server's prefix cache can reuse more than a few tokens (BOS, the leading space,
 * a shared first digit) of an earlier prompt: both evaluate the rest of the prompt every time.
 */
const PROMPT =
  "Describe in plain words and short sentences how a lighthouse keeper spends a long winter " +
  "night alone on a small rocky island far out at sea.";
/** Context left for the prompt: `--ctx-size` must be at least `--tokens` plus this. */
const PROMPT_ALLOWANCE = 64;
/** Tokens per warm-up request. */
const WARMUP_TOKENS = 16;

/** Parsed benchmark options. */
export interface BenchOptions {
  /** GGUF model. Default: undefined, meaning the generated `bench-125m` fixture. */
  model?: string;
  /** CPU threads for both servers. Default: the number of cores. */
  threads: number;
  /** Tokens generated per request (`max_tokens`, with `ignore_eos`). Default 128. */
  tokens: number;
  /** Rounds; each round starts each server once. Default 3. */
  reps: number;
  /** Concurrency levels, in the order measured. Default `[1, 4, 8]`. */
  streams: number[];
  /** Context tokens per request. Default 1024. */
  ctxSize: number;
  /** Warm-up requests per server start (plus one concurrent burst). Default 2. */
  warmup: number;
  /** The llama-server binary. Default `lib/reference/bin/llama-server`. */
  llamaServer: string;
  /** `SHIMMY_LIB_DIR` given to Shimmy. Default `lib/reference`. */
  libDir: string;
  /** Where to write the JSON report. Default: undefined, no report. */
  json?: string;
}

function intFlag(name: string, value: string | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`--${name} must be an integer of at least ${min}, got "${value}"`);
  }
  return n;
}

function absolute(path: string): string {
  return isAbsolute(path) ? path : resolve(path);
}

/**
 * Parses the benchmark's command line.
 *
 * @param args Command-line arguments.
 * @returns The options, or undefined for `--help`.
 * @throws {UsageError} for an unknown flag or a bad value.
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
        streams: { type: "string" },
        "ctx-size": { type: "string" },
        warmup: { type: "string" },
        "llama-server": { type: "string" },
        "lib-dir": { type: "string" },
        json: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const v = parsed.values;
  if (v.help) return undefined;
  const streams = [
    ...new Set((v.streams ?? "1,4,8").split(",").map((s) => intFlag("streams", s.trim(), 1))),
  ];
  const options: BenchOptions = {
    threads: intFlag("threads", v.threads, navigator.hardwareConcurrency),
    tokens: intFlag("tokens", v.tokens, 128, 2),
    reps: intFlag("reps", v.reps, 3),
    streams,
    ctxSize: intFlag("ctx-size", v["ctx-size"], 1024),
    warmup: intFlag("warmup", v.warmup, 2, 0),
    llamaServer: absolute(v["llama-server"] ?? join(REPO_ROOT, "lib/reference/bin/llama-server")),
    libDir: absolute(v["lib-dir"] ?? join(REPO_ROOT, "lib/reference")),
  };
  if (v.model !== undefined) options.model = absolute(v.model);
  if (v.json !== undefined) options.json = absolute(v.json);
  if (options.tokens + PROMPT_ALLOWANCE > options.ctxSize) {
    throw new UsageError(
      `--ctx-size ${options.ctxSize} is too small for --tokens ${options.tokens}: ` +
        `use at least ${options.tokens + PROMPT_ALLOWANCE}`,
    );
  }
  return options;
}

// ---------------------------------------------------------------------------------------------
// Servers

/** The two servers, in the order of the first round. */
const SERVERS = ["shimmy", "llama-server"] as const;
type ServerName = typeof SERVERS[number];

/** How long a server may take to load the model and answer /health with 200. */
const READY_TIMEOUT_MS = 300_000;
/** How long a server gets to exit after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 10_000;
/** Upper bound for one streamed request. */
const REQUEST_TIMEOUT_MS = 600_000;
/** Server output kept for error messages. */
const LOG_TAIL_CHARS = 8_000;

/** A command that starts one server. */
interface Launch {
  command: string;
  args: string[];
  env: Record<string, string>;
}

/**
 * The launch command of a server. Both get the same slots, context per request, threads and
 * libllama; llama-server additionally gets the settings Shimmy uses implicitly (see README).
 */
function launchFor(name: ServerName, options: BenchOptions, model: string, port: string): Launch {
  const slots = Math.max(...options.streams);
  const threads = String(options.threads);
  if (name === "shimmy") {
    return {
      command: Deno.execPath(),
      args: ["run", "-A", join(REPO_ROOT, "main.ts"), "serve", "--model", model, "--bind"]
        .concat([`127.0.0.1:${port}`, "--parallel", String(slots)])
        .concat(["--ctx-size", String(options.ctxSize), "--threads", threads]),
      env: { SHIMMY_LIB_DIR: options.libDir },
    };
  }
  return {
    command: options.llamaServer,
    args: ["-m", model, "--host", "127.0.0.1", "--port", port, "-np", String(slots)]
      .concat(["-c", String(options.ctxSize * slots), "-t", threads, "--no-webui"])
      .concat(["--kv-unified", "--cache-ram", "0", "-ngl", "all", "--fit", "off"]),
    env: {},
  };
}

function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

function describeLaunch(launch: Launch): string {
  const env = Object.entries(launch.env).map(([k, v]) => `${k}=${shellQuote(v)}`);
  return [...env, launch.command, ...launch.args].map((w, i) => i < env.length ? w : shellQuote(w))
    .join(" ");
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves true when `promise` settles within `ms`, false otherwise. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function freePort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  await delay(10);
  return port;
}

/** Servers started and not yet stopped, for the signal handler. */
const running = new Set<ServerProcess>();

/** One server process on 127.0.0.1, with its output kept for error messages. */
class ServerProcess {
  readonly url: string;
  readonly pid: number;
  readonly #name: ServerName;
  readonly #child: Deno.ChildProcess;
  readonly #status: Promise<Deno.CommandStatus>;
  readonly #drained: Promise<unknown>;
  #log = "";

  private constructor(name: ServerName, launch: Launch, port: number) {
    this.#name = name;
    this.url = `http://127.0.0.1:${port}`;
    this.#child = new Deno.Command(launch.command, {
      args: launch.args,
      env: launch.env,
      cwd: REPO_ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    this.#status = this.#child.status;
    this.#drained = Promise.all([this.#drain(this.#child.stdout), this.#drain(this.#child.stderr)]);
  }

  /**
   * Starts a server and waits until its /health answers 200.
   *
   * @throws {Error} when it exits or is not ready in time; the message holds its last output.
   */
  static async start(name: ServerName, options: BenchOptions, model: string) {
    const port = await freePort();
    const server = new ServerProcess(name, launchFor(name, options, model, String(port)), port);
    running.add(server);
    try {
      await server.#waitReady();
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  async #drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        this.#log = (this.#log + text).slice(-LOG_TAIL_CHARS);
      }
    } catch {
      // the pipe closed with the process
    }
  }

  async #waitReady(): Promise<void> {
    let exit: Deno.CommandStatus | undefined;
    void this.#status.then((status) => exit = status);
    const deadline = performance.now() + READY_TIMEOUT_MS;
    while (exit === undefined && performance.now() < deadline) {
      try {
        const response = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(2000) });
        await response.body?.cancel();
        if (response.status === 200) return;
      } catch {
        // not listening yet
      }
      await delay(100);
    }
    await settlesWithin(this.#drained, 1000);
    const why = exit === undefined
      ? `was not ready after ${READY_TIMEOUT_MS / 1000}s`
      : `exited with code ${exit.code} before it was ready`;
    throw new Error(`${this.#name} ${why}; its last output:\n${this.#log.trimEnd()}`);
  }

  /** Stops the server: SIGTERM, then SIGKILL after {@link STOP_GRACE_MS}. Safe to call twice. */
  async stop(): Promise<void> {
    running.delete(this);
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      try {
        this.#child.kill(signal);
      } catch {
        break; // already exited
      }
      if (await settlesWithin(this.#status, STOP_GRACE_MS)) break;
    }
    await settlesWithin(this.#drained, 2000);
  }
}

async function stopAll(): Promise<void> {
  await Promise.all([...running].map((server) => server.stop()));
}

// ---------------------------------------------------------------------------------------------
// Requests

/** What the client saw of one streamed completion; times are `performance.now()` values. */
interface StreamResult {
  prompt: string;
  sentAt: number;
  firstAt: number;
  lastAt: number;
  tokens: number;
  promptTokens: number;
  cachedTokens: number;
  text: string;
}

/** The fields read from an SSE chunk of either server. */
interface CompletionChunk {
  choices?: { text?: string }[];
  usage?: { completion_tokens?: number; prompt_tokens?: number } | null;
  timings?: { cache_n?: number };
  error?: unknown;
}

/**
 * Streams one `POST /v1/completions` and records when each text chunk arrived.
 *
 * @throws {Error} for an HTTP error, an error event, or a token count other than `maxTokens`.
 */
async function streamCompletion(
  url: string,
  prompt: string,
  maxTokens: number,
): Promise<StreamResult> {
  const body = JSON.stringify({
    prompt,
    max_tokens: maxTokens,
    temperature: 0,
    seed: 42,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true },
  });
  const sentAt = performance.now();
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  if (!response.ok || !response.body) {
    const detail = (await response.text()).slice(0, 500);
    throw new Error(`POST ${url}/v1/completions answered ${response.status}: ${detail}`);
  }
  const result = { prompt, sentAt, firstAt: 0, lastAt: 0, tokens: -1, promptTokens: -1 };
  let cachedTokens = 0;
  let text = "";
  let done = false;
  let pending = "";
  for await (const piece of response.body.pipeThrough(new TextDecoderStream())) {
    const now = performance.now();
    pending += piece;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") {
        done = true;
        continue;
      }
      const chunk = JSON.parse(data) as CompletionChunk;
      if (chunk.error) {
        throw new Error(`${url} sent an error event: ${JSON.stringify(chunk.error)}`);
      }
      const piece = chunk.choices?.[0]?.text ?? "";
      if (piece !== "") {
        if (result.firstAt === 0) result.firstAt = now;
        result.lastAt = now;
        text += piece;
      }
      if (chunk.usage) {
        result.tokens = chunk.usage.completion_tokens ?? -1;
        result.promptTokens = chunk.usage.prompt_tokens ?? -1;
      }
      cachedTokens = chunk.timings?.cache_n ?? cachedTokens;
    }
  }
  if (!done || result.firstAt === 0) {
    throw new Error(`${url} ended the stream without text or without "data: [DONE]"`);
  }
  if (result.tokens !== maxTokens) {
    throw new Error(
      `${url} generated ${result.tokens} tokens instead of ${maxTokens} (with ignore_eos): ` +
        "the work would differ between the servers; check --ctx-size",
    );
  }
  return { ...result, cachedTokens, text };
}

/** One concurrency level measured once on one server. */
interface LevelSample {
  streams: number;
  /** (Σ tokens − streams) / (last text chunk of all − first text chunk of any), tok/s. */
  aggregateTps: number;
  /** Per stream: (tokens − 1) / (its last text chunk − its first), tok/s. */
  streamTps: number[];
  /** Per stream: first text chunk − request sent, ms. */
  ttftMs: number[];
  promptTokens: number;
  /** Most prompt tokens a server reported reusing from its cache. */
  cachedTokens: number;
  /** Texts of the streams, for the greedy-output comparison (left out of the JSON). */
  results: StreamResult[];
}

/** Numbers the prompts, the same sequence for every server start. */
class PromptSequence {
  #next = 1;
  /** @returns The next prompt. */
  next(): string {
    return `${this.#next++} ${PROMPT}`;
  }
}

async function measureLevel(
  url: string,
  streams: number,
  tokens: number,
  prompts: PromptSequence,
): Promise<LevelSample> {
  const texts = Array.from({ length: streams }, () => prompts.next());
  const results = await Promise.all(texts.map((p) => streamCompletion(url, p, tokens)));
  const first = Math.min(...results.map((r) => r.firstAt));
  const last = Math.max(...results.map((r) => r.lastAt));
  const generated = results.reduce((n, r) => n + r.tokens, 0) - streams;
  return {
    streams,
    aggregateTps: generated / ((last - first) / 1000),
    streamTps: results.map((r) => (r.tokens - 1) / ((r.lastAt - r.firstAt) / 1000)),
    ttftMs: results.map((r) => r.firstAt - r.sentAt),
    promptTokens: Math.max(...results.map((r) => r.promptTokens)),
    cachedTokens: Math.max(...results.map((r) => r.cachedTokens)),
    results,
  };
}

/** One server start: warm-up, then every concurrency level once. */
interface RoundResult {
  round: number;
  server: ServerName;
  levels: LevelSample[];
  /** Share of the machine's CPU time other processes used while measuring; null if unknown. */
  otherCpu: number | null;
}

async function runRound(
  round: number,
  name: ServerName,
  options: BenchOptions,
  model: string,
): Promise<RoundResult> {
  const server = await ServerProcess.start(name, options, model);
  try {
    const warm = new PromptSequence();
    const warmTokens = Math.min(WARMUP_TOKENS, options.tokens);
    for (let i = 0; i < options.warmup; i++) {
      await streamCompletion(server.url, `Warm-up ${warm.next()}`, warmTokens);
    }
    if (options.warmup > 0) {
      const burst = Array.from({ length: Math.max(...options.streams) }, () => warm.next());
      await Promise.all(burst.map((p) => streamCompletion(server.url, `Warm-up ${p}`, warmTokens)));
    }
    const prompts = new PromptSequence();
    const levels: LevelSample[] = [];
    const pids = [Deno.pid, server.pid];
    const before = await readCpuTicks(pids);
    for (const streams of options.streams) {
      levels.push(await measureLevel(server.url, streams, options.tokens, prompts));
    }
    const otherCpu = otherCpuShare(before, await readCpuTicks(pids)) ?? null;
    return { round, server: name, levels, otherCpu };
  } finally {
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting (Linux): how much of the machine other processes used while measuring

/** Cumulative CPU ticks: of the machine (all and busy) and of the given processes. */
interface CpuTicks {
  total: number;
  busy: number;
  ours: number;
}

async function readCpuTicks(pids: number[]): Promise<CpuTicks | undefined> {
  try {
    const line = (await Deno.readTextFile("/proc/stat")).split("\n", 1)[0] ?? "";
    // user nice system idle iowait irq softirq steal
    const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = fields.reduce((a, b) => a + b, 0);
    const busy = total - (fields[3] ?? 0) - (fields[4] ?? 0);
    let ours = 0;
    for (const pid of pids) {
      const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // from field 3, state
      ours += Number(rest[11]) + Number(rest[12]); // fields 14 and 15: utime, stime
    }
    return Number.isFinite(total + busy + ours) ? { total, busy, ours } : undefined;
  } catch {
    return undefined; // not Linux
  }
}

/** Share of the machine's CPU time that other processes (or steal) used between two readings. */
function otherCpuShare(before?: CpuTicks, after?: CpuTicks): number | undefined {
  if (!before || !after || after.total <= before.total) return undefined;
  const other = (after.busy - before.busy) - (after.ours - before.ours);
  return Math.max(0, other) / (after.total - before.total);
}

/** Other processes' CPU share above which the report warns that the numbers are noisy. */
const NOISY_OTHER_CPU = 0.05;

// ---------------------------------------------------------------------------------------------
// Report

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] as number : ((sorted[mid - 1] as number) +
    (sorted[mid] as number)) / 2;
}

/** One line of the results table. */
interface SummaryRow {
  metric: string;
  streams: number;
  unit: "tok/s" | "ms";
  shimmy: number;
  llamaServer: number;
  /** shimmy / llama-server. */
  ratio: number;
}

function summarize(rounds: RoundResult[], options: BenchOptions): SummaryRow[] {
  const samples = (server: ServerName, streams: number) =>
    rounds.filter((r) => r.server === server).flatMap((r) =>
      r.levels.filter((l) => l.streams === streams)
    );
  const row = (
    metric: string,
    streams: number,
    unit: SummaryRow["unit"],
    value: (levels: LevelSample[]) => number,
  ): SummaryRow => {
    const shimmy = value(samples("shimmy", streams));
    const llamaServer = value(samples("llama-server", streams));
    return { metric, streams, unit, shimmy, llamaServer, ratio: shimmy / llamaServer };
  };
  const plural = (n: number) => `${n} stream${n === 1 ? "" : "s"}`;
  return [
    ...options.streams.map((n) =>
      row(
        `${n === 1 ? "decode" : "aggregate decode"} tok/s, ${plural(n)}`,
        n,
        "tok/s",
        (levels) => median(levels.map((l) => l.aggregateTps)),
      )
    ),
    ...options.streams.map((n) =>
      row(`TTFT p50 ms, ${plural(n)}`, n, "ms", (levels) => median(levels.flatMap((l) => l.ttftMs)))
    ),
  ];
}

function formatTable(rows: SummaryRow[]): string {
  const header = ["metric", "shimmy", "llama-server", "shimmy/llama-server"];
  const body = rows.map((r) => [
    r.metric,
    r.shimmy.toFixed(1),
    r.llamaServer.toFixed(1),
    r.ratio.toFixed(2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))
      .join("  ");
  return [line(header), ...body.map(line)].join("\n");
}

/** The machine, for reproducing the numbers. */
async function machineInfo(): Promise<Record<string, string | number>> {
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

async function llamaServerVersion(path: string): Promise<string> {
  try {
    const out = await new Deno.Command(path, { args: ["--version"], stdin: "null" }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return /^version: (.+)$/m.exec(text)?.[1] ?? "unknown";
  } catch (error) {
    throw new Error(`Cannot run ${path}: pass --llama-server PATH`, { cause: error });
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

function progressLine(result: RoundResult, reps: number): string {
  const levels = result.levels.map((l) =>
    `${l.streams}x ${l.aggregateTps.toFixed(1)} tok/s ttft ${median(l.ttftMs).toFixed(0)} ms`
  );
  const other = result.otherCpu === null
    ? ""
    : ` | other processes ${(result.otherCpu * 100).toFixed(0)}% CPU`;
  return `round ${result.round}/${reps} ${result.server.padEnd(12)} ${levels.join(" | ")}${other}`;
}

/** How the greedy single-stream texts of the two servers compare, prompt by prompt. */
interface GreedyComparison {
  /** Prompts answered by both servers. */
  compared: number;
  /** Of those, answered with the same text. */
  same: number;
  /** The shortest common prefix of two answers to the same prompt, in characters. */
  agreeChars: number;
}

/**
 * Compares the single-stream texts of both servers for the same prompts. Random weights give
 * near-ties between logits, so a last-bit difference in the arithmetic (another KV cell layout, for
 * one) can change the rest of a text: a long common prefix already shows that the same model
 * computed the same thing.
 */
function compareGreedyTexts(rounds: RoundResult[]): GreedyComparison {
  const single = (server: ServerName) =>
    rounds.filter((r) => r.server === server).flatMap((r) =>
      r.levels.filter((l) => l.streams === 1).flatMap((l) => l.results)
    );
  const reference = new Map(single("llama-server").map((r) => [r.prompt, r.text]));
  const out: GreedyComparison = { compared: 0, same: 0, agreeChars: Infinity };
  for (const { prompt, text } of single("shimmy")) {
    const other = reference.get(prompt);
    if (other === undefined) continue;
    let n = 0;
    while (n < text.length && text[n] === other[n]) n++;
    out.compared++;
    if (text === other) out.same++;
    out.agreeChars = Math.min(out.agreeChars, n);
  }
  return out;
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
  const onSignal = () => void stopAll().finally(() => Deno.exit(130));
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
    await stopAll();
    for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  }
}

async function run(options: BenchOptions, args: string[]): Promise<void> {
  await requireExists(options.llamaServer, "llama-server", "--llama-server PATH");
  await requireExists(options.libDir, "the library folder", "--lib-dir DIR");
  if (options.model !== undefined) await requireExists(options.model, "model", "--model PATH");
  const model = options.model ?? await fixtureModel("bench-125m");
  const modelBytes = (await Deno.stat(model)).size;
  const version = await llamaServerVersion(options.llamaServer);
  const machine = await machineInfo();
  const command = ["deno", "run", "-A", "bench/serve_bench.ts", ...args].map(shellQuote)
    .join(" ");
  const launches = Object.fromEntries(
    SERVERS.map((name) => [name, describeLaunch(launchFor(name, options, model, "PORT"))]),
  ) as Record<ServerName, string>;

  console.log(`Command:  ${command}`);
  console.log(`Machine:  ${Object.entries(machine).map(([k, v]) => `${k}=${v}`).join(", ")}`);
  console.log(`Model:    ${model} (${(modelBytes / 2 ** 20).toFixed(0)} MiB)`);
  console.log(
    `Settings: threads=${options.threads}, tokens=${options.tokens}, reps=${options.reps}, ` +
      `streams=${options.streams.join(",")}, ctx-size=${options.ctxSize} per request, ` +
      `slots=${Math.max(...options.streams)}, warmup=${options.warmup}`,
  );
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

  const summary = summarize(rounds, options);
  console.log("");
  printSummary(summary, rounds, options);
  if (options.json !== undefined) {
    const report = {
      benchmark: "bench/serve_bench.ts",
      date: new Date().toISOString(),
      command,
      machine,
      model: { path: model, bytes: modelBytes },
      settings: { ...options, slots: Math.max(...options.streams), prompt: PROMPT },
      servers: { shimmy: launches.shimmy, llamaServer: launches["llama-server"], version },
      summary,
      greedyTexts: compareGreedyTexts(rounds),
      rounds: rounds.map((r) => ({
        ...r,
        levels: r.levels.map(({ results: _, ...level }) => level),
      })),
    };
    await Deno.writeTextFile(options.json, JSON.stringify(report, null, 2) + "\n");
    console.log(`Wrote ${options.json}`);
  }
}

function printSummary(summary: SummaryRow[], rounds: RoundResult[], options: BenchOptions): void {
  const most = (server: ServerName | undefined, value: (level: LevelSample) => number) =>
    Math.max(
      ...rounds.filter((r) => server === undefined || r.server === server)
        .flatMap((r) => r.levels.map(value)),
    );
  const greedy = compareGreedyTexts(rounds);
  const shares = rounds.flatMap((r) => r.otherCpu === null ? [] : [r.otherCpu]);
  const worst = Math.max(...shares);
  const lines = [
    formatTable(summary),
    "",
    "tok/s: higher is better, ratio > 1 means Shimmy is faster. " +
    "TTFT: lower is better, ratio < 1 means Shimmy is faster.",
    `Medians over ${options.reps} round(s). Prompt: ${most(undefined, (l) => l.promptTokens)} ` +
    `tokens; most reused from a prefix cache: shimmy ${most("shimmy", (l) => l.cachedTokens)}, ` +
    `llama-server ${most("llama-server", (l) => l.cachedTokens)}.`,
    `Greedy 1-stream texts identical: ${greedy.same}/${greedy.compared}` +
    (greedy.same < greedy.compared ? ` (all agree on the first ${greedy.agreeChars} chars)` : ""),
  ];
  if (shares.length > 0) {
    lines.push(
      `Other processes used at most ${(worst * 100).toFixed(1)}% of the CPU during a round` +
        (worst > NOISY_OTHER_CPU
          ? ": WARNING, the machine was not quiet and the numbers are noisy; rerun when it is"
          : "."),
    );
  }
  console.log(lines.join("\n"));
}

if (import.meta.main) Deno.exit(await main(Deno.args));
