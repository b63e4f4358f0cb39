/**
 * Supervision of the two benchmarked servers: the command line each is started with (the same
 * slots, context per request, threads and libllama for both), starting one on a free loopback
 * port and waiting until its `/health` answers 200, stopping it (SIGTERM, then SIGKILL), and,
 * on Linux, reading `/proc` to tell how much of the machine's CPU other processes used while it
 * was measured. Every server started and not yet stopped is tracked, so that a signal handler
 * can stop them all ({@link stopAllServers}).
 *
 * @module
 */

import { UsageError } from "../../src/cli/usage_error.ts";
import { join } from "node:path";
import { REPO_ROOT } from "../../tests/fixtures/models.ts";
import { type BenchModel, contextOverride } from "./model_info.ts";

/** The two servers, in the order of the first round. */
export const SERVERS = ["shimmy", "llama-server"] as const;

/** One of {@link SERVERS}. */
export type ServerName = typeof SERVERS[number];

/** What both servers are started with. */
export interface ServerSettings {
  /** Requests decoded at once (Shimmy `--parallel`, llama-server `-np`). */
  slots: number;
  /** Context tokens per request (llama-server gets `slots` times this in total). */
  ctxSize: number;
  /** CPU threads. */
  threads: number;
  /** `SHIMMY_LIB_DIR` for Shimmy. */
  libDir: string;
  /** The llama-server binary. */
  llamaServer: string;
  /**
   * Flash attention for both (`--flash-attn` / `-fa`: on, off or auto); unset, each server
   * chooses as it does for its users.
   */
  flashAttn?: "on" | "off" | "auto";
  /**
   * One KV cache for all slots (true) or a stream per slot (false), for both (Shimmy's
   * `--kv-unified on|off`, llama-server's `--kv-unified` or not); unset, Shimmy chooses and
   * llama-server gets what Shimmy chooses (a stream per slot).
   */
  kvUnified?: boolean;
  /**
   * Shimmy decodes a lone stream on its decode thread (true, its default) or through the event
   * loop (false: `--no-decode-thread`). llama-server has no such choice.
   */
  decodeThread?: boolean;
  /**
   * The CUDA GPUs both servers use, by number (Shimmy's `--gpus`, llama-server's `--device
   * CUDA0,…`); unset, every GPU: Shimmy plans a copy per GPU or a split, llama-server splits the
   * layers over them.
   */
  gpus?: number[];
}

/** The attention kernel choices both servers take (`--flash-attn` / `-fa`). */
export type FlashAttn = NonNullable<ServerSettings["flashAttn"]>;

/**
 * A benchmark's `--flash-attn` value, checked.
 *
 * @param value The flag's value; undefined where it was not given.
 * @returns The choice, or undefined for each server's own.
 * @throws {UsageError} for a value other than on, off or auto.
 * @example
 * ```ts
 * flashAttnFlag("on"); // "on"
 * ```
 */
export function flashAttnFlag(value: string | undefined): FlashAttn | undefined {
  if (value === undefined || value === "on" || value === "off" || value === "auto") return value;
  throw new UsageError(`--flash-attn must be on, off or auto; got "${value}"`);
}

/** A command that starts one server. */
export interface Launch {
  /** The executable. */
  command: string;
  /** Its arguments. */
  args: string[];
  /** Extra environment variables. */
  env: Record<string, string>;
}

/** How long a server may take to load the model and answer /health with 200. */
const READY_TIMEOUT_MS = 300_000;
/** How often /health is polled while a server starts. */
const READY_POLL_MS = 100;
/** How long a server gets to exit after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 10_000;
/** Server output kept for error messages. */
const LOG_TAIL_CHARS = 8_000;

/**
 * The launch command of a server. Both get the same slots, context per request, threads and
 * libllama; llama-server additionally gets the settings Shimmy uses implicitly (a unified KV cache
 * with several slots, no host-memory prompt cache, all layers offloaded, no automatic fitting, and
 * a context per slot above the training context where `ctxSize` asks for one; see
 * bench/README.md).
 *
 * @param name Which server.
 * @param settings The shared settings.
 * @param model The model.
 * @param port The loopback port to listen on.
 * @returns The command, its arguments and extra environment.
 * @example
 * ```ts
 * const launch = launchFor("llama-server", settings, await readBenchModel("/m.gguf"), "8080");
 * console.log(describeLaunch(launch));
 * ```
 */
export function launchFor(
  name: ServerName,
  settings: ServerSettings,
  model: BenchModel,
  port: string,
): Launch {
  const slots = String(settings.slots);
  const threads = String(settings.threads);
  if (name === "shimmy") {
    return {
      command: Deno.execPath(),
      args: ["run", "-A", join(REPO_ROOT, "main.ts"), "serve", "--model", model.path, "--bind"]
        .concat([`127.0.0.1:${port}`, "--parallel", slots])
        .concat(["--ctx-size", String(settings.ctxSize), "--threads", threads])
        .concat(
          settings.kvUnified === undefined
            ? []
            : ["--kv-unified", settings.kvUnified ? "on" : "off"],
        )
        .concat(settings.flashAttn ? ["--flash-attn", settings.flashAttn] : [])
        .concat(settings.decodeThread === false ? ["--no-decode-thread"] : [])
        .concat(settings.gpus ? ["--gpus", settings.gpus.join(",")] : []),
      env: { SHIMMY_LIB_DIR: settings.libDir },
    };
  }
  const override = contextOverride(model, settings.ctxSize);
  return {
    command: settings.llamaServer,
    args: ["-m", model.path, "--host", "127.0.0.1", "--port", port, "-np", slots]
      .concat(["-c", String(settings.ctxSize * settings.slots), "-t", threads, "--no-webui"])
      .concat(settings.kvUnified === true && settings.slots > 1 ? ["--kv-unified"] : [])
      .concat(["--cache-ram", "0", "-ngl", "all", "--fit", "off"])
      .concat(settings.flashAttn ? ["-fa", settings.flashAttn] : [])
      .concat(settings.gpus ? ["--device", settings.gpus.map((gpu) => `CUDA${gpu}`).join(",")] : [])
      .concat(override ? ["--override-kv", override] : []),
    env: {},
  };
}

/**
 * Quotes a word for a POSIX shell, leaving plain words as they are.
 *
 * @param word Any string.
 * @returns The word, single-quoted when it holds anything but `[\w@%+=:,./-]`.
 * @example
 * ```ts
 * shellQuote("a b"); // "'a b'"
 * ```
 */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * A launch as one shell command line, environment first.
 *
 * @param launch The launch.
 * @returns A line that can be pasted into a shell.
 * @example
 * ```ts
 * describeLaunch({ command: "srv", args: ["-c", "1 2"], env: { A: "b" } }); // "A=b srv -c '1 2'"
 * ```
 */
export function describeLaunch(launch: Launch): string {
  const env = Object.entries(launch.env).map(([k, v]) => `${k}=${shellQuote(v)}`);
  return [...env, ...[launch.command, ...launch.args].map(shellQuote)].join(" ");
}

/**
 * The version line of a llama-server binary (`version: ...` from `--version`).
 *
 * @param path The binary.
 * @returns The version, or "unknown" when it prints none.
 * @throws {Error} when the binary cannot be run.
 * @example
 * ```ts
 * console.log(await llamaServerVersion("lib/reference/bin/llama-server"));
 * ```
 */
export async function llamaServerVersion(path: string): Promise<string> {
  try {
    const out = await new Deno.Command(path, { args: ["--version"], stdin: "null" }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return /^version: (.+)$/m.exec(text)?.[1] ?? "unknown";
  } catch (error) {
    throw new Error(`Cannot run ${path}: pass --llama-server PATH`, { cause: error });
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Waits for a promise, at most `ms`.
 *
 * @param promise What to wait for (its rejection counts as settling).
 * @param ms The most to wait.
 * @returns True when `promise` settles within `ms`, false otherwise.
 * @example
 * ```ts
 * if (!await settlesWithin(child.status, 3000)) child.kill("SIGKILL");
 * ```
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
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

/** Servers started and not yet stopped, for {@link stopAllServers}. */
const running = new Set<ServerProcess>();

/** One server process on 127.0.0.1, with its output kept for error messages. */
export class ServerProcess {
  /** Base URL, `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** Process id, for CPU accounting. */
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
   * Starts a server on a free loopback port and waits until its /health answers 200.
   *
   * @param name Which server.
   * @param settings The shared settings.
   * @param model The model.
   * @returns The running server; stop it with {@link ServerProcess.stop}.
   * @throws {Error} when it exits or is not ready in time; the message holds its last output.
   * @example
   * ```ts
   * const server = await ServerProcess.start("shimmy", settings, await readBenchModel("/m.gguf"));
   * try {
   *   console.log(server.url);
   * } finally {
   *   await server.stop();
   * }
   * ```
   */
  static async start(
    name: ServerName,
    settings: ServerSettings,
    model: BenchModel,
  ): Promise<ServerProcess> {
    const port = await freePort();
    const server = new ServerProcess(name, launchFor(name, settings, model, String(port)), port);
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
      await delay(READY_POLL_MS);
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

/**
 * Stops every server started and not yet stopped, for a signal handler or a final cleanup.
 *
 * @returns When all have exited.
 * @example
 * ```ts
 * Deno.addSignalListener("SIGINT", () => void stopAllServers().finally(() => Deno.exit(130)));
 * ```
 */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...running].map((server) => server.stop()));
}

// ---------------------------------------------------------------------------------------------
// CPU accounting (Linux): how much of the machine other processes used while measuring

/** Cumulative CPU ticks: of the machine (all and busy) and of the given processes. */
export interface CpuTicks {
  /** All ticks of all cores (`/proc/stat`, user to steal). */
  total: number;
  /** Of those, not idle and not waiting for I/O. */
  busy: number;
  /** Ticks (user + system) of the given processes. */
  ours: number;
}

/**
 * Reads the machine's and the given processes' cumulative CPU ticks from `/proc`.
 *
 * @param pids The processes that belong to the measurement (the client and the server).
 * @returns The ticks, or undefined where `/proc` is missing (not Linux).
 * @example
 * ```ts
 * const before = await readCpuTicks([Deno.pid, server.pid]);
 * ```
 */
export async function readCpuTicks(pids: number[]): Promise<CpuTicks | undefined> {
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

/**
 * The share of the machine's CPU time that other processes (or steal) used between two readings.
 *
 * @param before The reading at the start.
 * @param after The reading at the end.
 * @returns A share from 0 to 1, or undefined when either reading is missing.
 * @example
 * ```ts
 * const share = otherCpuShare(before, await readCpuTicks([Deno.pid, server.pid]));
 * ```
 */
export function otherCpuShare(before?: CpuTicks, after?: CpuTicks): number | undefined {
  if (!before || !after || after.total <= before.total) return undefined;
  const other = (after.busy - before.busy) - (after.ours - before.ours);
  return Math.max(0, other) / (after.total - before.total);
}
