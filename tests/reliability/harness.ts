/**
 * Supervision for the reliability suite: every test runs against a real `shimmy serve`
 * subprocess, so a crash is seen as the process dying, and memory and descriptors are read
 * from `/proc/PID`. The harness spawns the server on a free loopback port, waits for its
 * `Shimmy listening on URL` line, keeps draining its output (the last 256 KiB of each stream
 * are kept for failure messages), probes `/health` on a timer recording the worst latency
 * and every failure, samples RSS on the same timer, and always kills the child on cleanup.
 *
 * The suite has two forms: short (the default, bounded for CI) and long
 * (`SHIMMY_RELIABILITY=long`, for figures to copy into the README). Every loop in the suite
 * is bounded both in count and in time.
 *
 * @module
 */

import { join } from "node:path";
import { fixtureModel, REPO_ROOT } from "../fixtures/models.ts";

/** Which form of the suite runs: `long` when `SHIMMY_RELIABILITY=long`, else `short`. */
export const MODE: "short" | "long" = Deno.env.get("SHIMMY_RELIABILITY") === "long"
  ? "long"
  : "short";

/**
 * Picks a figure by {@link MODE}.
 *
 * @param short Value for the short form.
 * @param long Value for the long form.
 * @returns The value of the form that runs.
 * @example
 * ```ts
 * const requests = byMode(1_500, 10_000);
 * ```
 */
export function byMode<T>(short: T, long: T): T {
  return MODE === "long" ? long : short;
}

/** How long the server may take to print its URL. */
const READY_TIMEOUT_MS = 90_000;
/** Most characters of each output stream kept for failure messages. */
const OUTPUT_KEEP = 256 * 1024;

/**
 * Sleeps.
 *
 * @param ms Milliseconds.
 * @returns Resolves after `ms`.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Finds a free loopback port by listening on port 0 and closing.
 *
 * @returns A port that was free a moment ago.
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/**
 * Polls until `check` returns a value other than undefined/false, or the time is up.
 *
 * @param check Called every `everyMs`.
 * @param timeoutMs Most milliseconds to wait.
 * @param everyMs Poll period. Default 50 ms.
 * @returns The last value of `check` (falsy when the time ran out).
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  timeoutMs: number,
  everyMs = 50,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value || performance.now() >= deadline) return value;
    await sleep(everyMs);
  }
}

/** Options of {@link startShimmy}. */
export interface ShimmyOptions {
  /** Files passed as `--model`; default the `tiny-f32` fixture; `[]` for none. */
  models?: string[];
  /** More `serve` flags (`--parallel 4`, `--api-key k`…). */
  args?: string[];
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/** A running `shimmy serve` child process. Dispose it (or call `stop()`) to kill it. */
export class Shimmy implements AsyncDisposable {
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  readonly url: string;
  /** Its port. */
  readonly port: number;
  /** Its process id. */
  readonly pid: number;
  /** Settles with the exit status. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** Exit status once it has exited. */
  status: Deno.CommandStatus | undefined;
  readonly #child: Deno.ChildProcess;
  readonly #pumps: Promise<void>[];
  readonly #output: { stdout: string; stderr: string };

  /** @internal Use {@link startShimmy}. */
  constructor(
    child: Deno.ChildProcess,
    port: number,
    pumps: Promise<void>[],
    output: { stdout: string; stderr: string },
  ) {
    this.#child = child;
    this.pid = child.pid;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.#pumps = pumps;
    this.#output = output;
    this.exited = child.status.then((status) => (this.status = status));
  }

  /** Whether the process is still running. */
  get alive(): boolean {
    return this.status === undefined;
  }

  /** What it printed on stdout (the last 256 KiB). */
  get stdout(): string {
    return this.#output.stdout;
  }

  /** What it printed on stderr (the last 256 KiB). */
  get stderr(): string {
    return this.#output.stderr;
  }

  /**
   * Resident memory from `/proc/PID/status` `VmRSS`.
   *
   * @returns KiB, or undefined once the process is gone.
   */
  rssKiB(): number | undefined {
    try {
      const status = Deno.readTextFileSync(`/proc/${this.pid}/status`);
      const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
      return match ? Number(match[1]) : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Open descriptors, counted in `/proc/PID/fd`.
   *
   * @returns The count, or undefined once the process is gone.
   */
  fdCount(): number | undefined {
    try {
      let n = 0;
      for (const _ of Deno.readDirSync(`/proc/${this.pid}/fd`)) n++;
      return n;
    } catch {
      return undefined;
    }
  }

  /**
   * Sends a signal (ignored once it has exited).
   *
   * @param signal E.g. `SIGTERM`.
   */
  signal(signal: Deno.Signal): void {
    if (!this.alive) return;
    try {
      this.#child.kill(signal);
    } catch {
      // Exited in the meantime.
    }
  }

  /**
   * Sends SIGTERM and waits for the exit, SIGKILLing it when it takes longer than `limitMs`.
   *
   * @param limitMs Most milliseconds to wait before SIGKILL.
   * @returns The exit status, and how long the exit took after SIGTERM.
   */
  async terminate(limitMs: number): Promise<{ status: Deno.CommandStatus; ms: number }> {
    const started = performance.now();
    this.signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) =>
      timer = setTimeout(() => resolve("late"), limitMs)
    );
    const first = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (first === "late") this.signal("SIGKILL");
    const status = await this.exited;
    return { status, ms: performance.now() - started };
  }

  /** Kills it (SIGKILL) if still running and waits until its output is drained. */
  async stop(): Promise<void> {
    this.signal("SIGKILL");
    await this.exited;
    await Promise.allSettled(this.#pumps);
  }

  /** Same as {@link Shimmy.stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /**
   * Describes the process for a failure message: alive or its exit status, and its stderr tail.
   *
   * @returns A multi-line description.
   */
  describe(): string {
    const state = this.alive
      ? `alive (pid ${this.pid})`
      : `exited with code ${this.status?.code} signal ${this.status?.signal}`;
    return `shimmy serve ${state}; stderr tail:\n${this.stderr.slice(-3000)}`;
  }
}

/**
 * The path of the `tiny-f32` fixture (generated on first use).
 *
 * @returns Its absolute path.
 */
export function tinyModel(): Promise<string> {
  return fixtureModel("tiny-f32");
}

/**
 * Starts `deno run -A main.ts serve --bind 127.0.0.1:PORT …` and waits until it is listening
 * and its `--model` files are loaded.
 * Environment variables that would change what it serves (`SHIMMY_API_KEY`,
 * `SHIMMY_BASE_GGUF`…) are blanked unless `options.env` sets them.
 *
 * @param options Models, flags and environment.
 * @returns The running server; dispose it to kill it.
 * @throws {Error} When it exits or stays silent before listening (with its output).
 * @example
 * ```ts
 * await using server = await startShimmy({ args: ["--parallel", "4"] });
 * const health = await fetch(`${server.url}/health`);
 * ```
 */
export async function startShimmy(options: ShimmyOptions = {}): Promise<Shimmy> {
  const models = options.models ?? [await tinyModel()];
  const port = freePort();
  const args = [
    "run",
    "-A",
    join(REPO_ROOT, "main.ts"),
    "serve",
    "--bind",
    `127.0.0.1:${port}`,
    ...models.flatMap((m) => ["--model", m]),
    ...(options.args ?? []),
  ];
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO_ROOT,
    env: {
      SHIMMY_BIND_ADDRESS: "",
      SHIMMY_API_KEY: "",
      SHIMMY_BASE_GGUF: "",
      SHIMMY_LORA_GGUF: "",
      SHIMMY_MODEL_PATHS: "",
      SHIMMY_ORIGINS: "",
      SHIMMY_ALLOWED_HOSTS: "",
      NO_COLOR: "1",
      ...options.env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = { stdout: "", stderr: "" };
  let onReady: (url: string) => void = () => {};
  const ready = new Promise<string>((resolve) => (onReady = resolve));
  const pump = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      output[key] = (output[key] + text).slice(-OUTPUT_KEEP);
      // Ready once the model table (printed after the --model preloads) follows the URL.
      const match = /Shimmy listening on (http:\/\/\S+)\n {2}\S/.exec(output.stdout);
      if (match) onReady(match[1] as string);
    }
  };
  const pumps = [pump(child.stdout, "stdout"), pump(child.stderr, "stderr")];
  const server = new Shimmy(child, port, pumps, output);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    ready,
    server.exited.then(() => "exited" as const),
    new Promise<"timeout">((resolve) =>
      timer = setTimeout(() => resolve("timeout"), READY_TIMEOUT_MS)
    ),
  ]);
  clearTimeout(timer);
  if (outcome === "exited" || outcome === "timeout") {
    await server.stop();
    throw new Error(
      `shimmy serve ${outcome === "exited" ? `exited (code ${server.status?.code})` : "never"} ` +
        `printed its URL; args: ${args.slice(3).join(" ")}\nstdout:\n${output.stdout}\nstderr:\n` +
        output.stderr.slice(-4000),
    );
  }
  const printed = new URL(outcome);
  if (Number(printed.port) !== port) {
    await server.stop();
    throw new Error(`shimmy serve printed ${outcome}, expected port ${port}`);
  }
  return server;
}

/** What {@link HealthProber.stop} reports. */
export interface HealthReport {
  /** Probes answered or failed. */
  probes: number;
  /** Slowest probe, in ms (a failed probe counts with the time it took). */
  worstMs: number;
  /** One line per probe that failed or took longer than the limit. */
  failures: string[];
}

/**
 * Probes `GET /health` every `intervalMs` (one probe in flight at a time) and samples the
 * server's RSS on the same tick, until stopped.
 */
export class HealthProber {
  readonly #server: Shimmy;
  readonly #intervalMs: number;
  readonly #limitMs: number;
  readonly #client = Deno.createHttpClient({});
  readonly #report: HealthReport = { probes: 0, worstMs: 0, failures: [] };
  readonly #memory: MemoryTracker;
  #running = true;
  #wake: () => void = () => {};
  readonly #loop: Promise<void>;

  /**
   * Starts probing.
   *
   * @param server The server.
   * @param memory Where RSS samples go.
   * @param options `intervalMs` (default 200) and `limitMs`, the slowest acceptable answer
   *   (default 1000).
   */
  constructor(
    server: Shimmy,
    memory: MemoryTracker,
    options: { intervalMs?: number; limitMs?: number } = {},
  ) {
    this.#server = server;
    this.#memory = memory;
    this.#intervalMs = options.intervalMs ?? 200;
    this.#limitMs = options.limitMs ?? 1000;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (this.#running) {
      const started = performance.now();
      this.#memory.sample();
      await this.#probe();
      const wait = this.#intervalMs - (performance.now() - started);
      if (wait > 0 && this.#running) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }
  }

  async #probe(): Promise<void> {
    const started = performance.now();
    let problem: string | undefined;
    try {
      const response = await fetch(`${this.#server.url}/health`, {
        client: this.#client,
        signal: AbortSignal.timeout(Math.max(5_000, this.#limitMs * 3)),
      });
      const body = await response.text();
      if (response.status !== 200) problem = `status ${response.status}: ${body.slice(0, 200)}`;
    } catch (error) {
      problem = `${(error as Error).name}: ${(error as Error).message}`;
    }
    const ms = performance.now() - started;
    this.#report.probes++;
    this.#report.worstMs = Math.max(this.#report.worstMs, ms);
    if (problem === undefined && ms > this.#limitMs) problem = `answered in ${Math.round(ms)} ms`;
    if (problem !== undefined && this.#report.failures.length < 50) {
      const alive = this.#server.alive ? "" : " (server gone)";
      this.#report.failures.push(`${new Date().toISOString()} ${problem}${alive}`);
    }
  }

  /**
   * Stops probing.
   *
   * @returns Probes, worst latency and failures.
   */
  async stop(): Promise<HealthReport> {
    this.#running = false;
    this.#wake();
    await this.#loop;
    this.#client.close();
    return this.#report;
  }
}

/** RSS samples of a server: the first, the highest, the last, and marks taken by name. */
export class MemoryTracker {
  readonly #server: Shimmy;
  first: number | undefined;
  peak = 0;
  last: number | undefined;
  /** Named samples (`warm`, `end`…). */
  readonly marks = new Map<string, number>();
  /** Every sample: `[performance.now(), KiB]`. */
  readonly samples: [number, number][] = [];

  /** @param server The server to sample. */
  constructor(server: Shimmy) {
    this.#server = server;
  }

  /**
   * Takes a sample now.
   *
   * @returns RSS in KiB, or undefined once the process is gone.
   */
  sample(): number | undefined {
    const rss = this.#server.rssKiB();
    if (rss === undefined) return undefined;
    this.first ??= rss;
    this.peak = Math.max(this.peak, rss);
    this.last = rss;
    if (this.samples.length < 100_000) this.samples.push([performance.now(), rss]);
    return rss;
  }

  /**
   * The median of the samples taken in a time window (less noisy than one sample, which may
   * fall just before or after a garbage collection).
   *
   * @param from `performance.now()` at the start of the window.
   * @param to `performance.now()` at its end.
   * @returns KiB, or NaN when no sample fell in the window.
   */
  median(from: number, to: number): number {
    const values = this.samples.filter(([t]) => t >= from && t <= to).map(([, v]) => v)
      .sort((a, b) => a - b);
    return values.length === 0 ? Number.NaN : values[Math.floor(values.length / 2)] as number;
  }

  /**
   * Takes a sample and stores it under a name.
   *
   * @param name E.g. `warm`.
   * @returns RSS in KiB.
   */
  mark(name: string): number {
    const rss = this.sample() ?? Number.NaN;
    this.marks.set(name, rss);
    return rss;
  }

  /** `start/peak/end` in MiB, for summaries. */
  toString(): string {
    const mib = (kib: number | undefined) =>
      kib === undefined || Number.isNaN(kib) ? "?" : (kib / 1024).toFixed(1);
    return `${mib(this.first)}/${mib(this.peak)}/${mib(this.last)} MiB`;
  }
}

/**
 * Watches a server while a test runs: `/health` probes, RSS samples and open descriptors
 * before and after, reported as the standard figures of a summary line.
 */
export class Watch {
  /** RSS samples. */
  readonly memory: MemoryTracker;
  /** Open descriptors when the watch started. */
  readonly fdsBefore: number | undefined;
  /** Open descriptors when it stopped. */
  fdsAfter: number | undefined;
  /** The probes' report, once stopped. */
  health: HealthReport | undefined;
  readonly #server: Shimmy;
  readonly #prober: HealthProber;

  /**
   * Starts watching.
   *
   * @param server The server.
   * @param options Probe period and latency limit (see {@link HealthProber}).
   */
  constructor(server: Shimmy, options: { intervalMs?: number; limitMs?: number } = {}) {
    this.#server = server;
    this.memory = new MemoryTracker(server);
    this.memory.mark("start");
    this.fdsBefore = server.fdCount();
    this.#prober = new HealthProber(server, this.memory, options);
  }

  /**
   * Stops probing and takes the last samples (call it before stopping the server on purpose).
   *
   * @returns The health report.
   */
  async stop(): Promise<HealthReport> {
    if (this.health) return this.health;
    this.health = await this.#prober.stop();
    this.memory.sample();
    this.fdsAfter = this.#server.fdCount();
    return this.health;
  }

  /** Health worst latency and failures, RSS start/peak/end, descriptors before/after. */
  figures(): Record<string, unknown> {
    return {
      health_worst_ms: this.health ? Math.round(this.health.worstMs) : "?",
      health_failures: this.health?.failures.length ?? "?",
      rss: this.memory,
      fds: `${this.fdsBefore ?? "?"}/${this.fdsAfter ?? "?"}`,
    };
  }
}

/** Counts of outcomes by key (status codes, error kinds). */
export class Histogram {
  readonly #counts = new Map<string, number>();

  /**
   * Counts one outcome.
   *
   * @param key E.g. `200` or `timeout`.
   */
  add(key: string | number): void {
    const k = String(key);
    this.#counts.set(k, (this.#counts.get(k) ?? 0) + 1);
  }

  /**
   * The count of one key.
   *
   * @param key The key.
   * @returns How many times it was added.
   */
  get(key: string | number): number {
    return this.#counts.get(String(key)) ?? 0;
  }

  /** Every count added together. */
  get total(): number {
    let sum = 0;
    for (const n of this.#counts.values()) sum += n;
    return sum;
  }

  /** `{200:12,400:3}`, keys sorted. */
  toString(): string {
    const keys = [...this.#counts.keys()].sort();
    return `{${keys.map((k) => `${k}:${this.#counts.get(k)}`).join(",")}}`;
  }
}

/**
 * Prints one summary line for a test, so the long run's figures can be copied into the README.
 *
 * @param test Short test name.
 * @param figures Named figures, printed in order.
 */
export function summary(test: string, figures: Record<string, unknown>): void {
  const parts = Object.entries(figures).map(([k, v]) => `${k}=${String(v)}`);
  console.log(`[reliability:${MODE}] ${test}: ${parts.join(" ")}`);
}

/**
 * Runs `task(i)` for i = 0..count-1 with at most `concurrency` in flight, stopping to start new
 * ones once `deadline` (a `performance.now()` time) has passed or `stop()` says so.
 *
 * @param count Most tasks.
 * @param concurrency Most in flight.
 * @param deadline `performance.now()` after which no task starts.
 * @param task The work.
 * @param stop Checked before each start; true ends the run early.
 * @returns How many tasks started.
 */
export async function runPool(
  count: number,
  concurrency: number,
  deadline: number,
  task: (i: number) => Promise<void>,
  stop: () => boolean = () => false,
): Promise<number> {
  let next = 0;
  const worker = async () => {
    while (next < count && performance.now() < deadline && !stop()) {
      await task(next++);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return next;
}

/** One loaded model as `GET /api/ps` shows it. */
export interface PsModel {
  name: string;
  slots: number;
  busy_slots: number;
  queued: number;
}

/**
 * Reads `GET /api/ps`.
 *
 * @param url Server URL.
 * @param headers Extra headers (an API key).
 * @returns The loaded models.
 */
export async function apiPs(url: string, headers: Record<string, string> = {}): Promise<PsModel[]> {
  const response = await fetch(`${url}/api/ps`, { headers, signal: AbortSignal.timeout(5_000) });
  const body = await response.json();
  if (response.status !== 200) throw new Error(`/api/ps answered ${response.status}`);
  return body.models as PsModel[];
}

/**
 * Waits until every loaded model shows `busy_slots` 0 and `queued` 0.
 *
 * @param url Server URL.
 * @param timeoutMs Most milliseconds to wait.
 * @returns The last `/api/ps` models (check them: they may still be busy).
 */
export async function waitIdle(url: string, timeoutMs: number): Promise<PsModel[]> {
  let last: PsModel[] = [];
  await waitFor(
    async () => {
      last = await apiPs(url);
      return last.every((m) => m.busy_slots === 0 && m.queued === 0);
    },
    timeoutMs,
    100,
  );
  return last;
}

/**
 * A temporary folder removed on dispose.
 *
 * @param prefix Folder name prefix.
 * @returns The path and a disposer.
 */
export async function tempDir(
  prefix: string,
): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: `shimmy-${prefix}-` });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}
