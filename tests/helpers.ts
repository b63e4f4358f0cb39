/**
 * Shared helpers for the test suite: running the CLI as a subprocess, locating the reference
 * llama.cpp tools, printing why a test was skipped, and comparing vectors of floats.
 *
 * @module
 */

import { ok } from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "./fixtures/models.ts";

/** Output of a finished subprocess. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `deno run -A main.ts ARGS` from the repository root.
 *
 * @param args CLI arguments.
 * @param env Extra environment variables.
 * @returns Exit code and decoded output.
 */
export function runShimmy(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return runScript("main.ts", args, env);
}

/**
 * Runs `deno run -A SCRIPT ARGS` from the repository root.
 *
 * @param script The script's path in the repository, e.g. `bench/ttft_probe.ts`.
 * @param args Its arguments.
 * @param env Extra environment variables.
 * @returns Exit code and decoded output.
 */
export async function runScript(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<RunResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, script), ...args],
    cwd: REPO_ROOT,
    env,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/**
 * The folder of a source build with the reference tools (`scripts/build-libllama.sh
 * --reference-tools --out lib/reference`), or `SHIMMY_REFERENCE_DIR`; undefined when absent.
 */
export function referenceDir(): string | undefined {
  const dir = Deno.env.get("SHIMMY_REFERENCE_DIR") ?? join(REPO_ROOT, "lib", "reference");
  try {
    Deno.statSync(join(dir, "bin", "llama-simple"));
    return dir;
  } catch {
    return undefined;
  }
}

/**
 * Prints why a test is skipped, so a skip is never silent.
 *
 * @param test Test name.
 * @param reason Why.
 * @returns true, for `ignore:` expressions.
 */
export function skipBecause(test: string, reason: string): true {
  console.warn(`SKIPPED "${test}": ${reason}`);
  return true;
}

/**
 * Runs a command in-process and returns what it printed to the console.
 *
 * @param run The command's main function, bound to its arguments.
 * @returns Exit code, stdout and stderr lines joined.
 */
export async function capture(run: () => Promise<number>): Promise<RunResult> {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...args: unknown[]) => void out.push(args.map(String).join(" "));
  console.error = (...args: unknown[]) => void err.push(args.map(String).join(" "));
  try {
    const code = await run();
    return { code, stdout: out.join("\n"), stderr: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/**
 * Asserts that two vectors of floats have the same length and differ by at most `tolerance` in
 * any value. A batch of several sequences may sum its matrix products in another order than one
 * sequence alone (llama.cpp's AVX2 kernels do; its AVX-512 ones did not), so a batched result can
 * differ from a lone input's in the last bits.
 */
export function assertNearlyEqual(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tolerance = 1e-6,
): void {
  ok(actual.length === expected.length, `${actual.length} values, expected ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    const difference = Math.abs((actual[i] as number) - (expected[i] as number));
    ok(difference <= tolerance, `value ${i}: ${actual[i]} against ${expected[i]}`);
  }
}

/**
 * Runs `work` while a timer ticks on this thread, and measures the longest gap between ticks:
 * how long the event loop stood still (a server started by the test shares it).
 *
 * @param work What to time.
 * @param intervalMs The timer's interval. Default 2.
 * @returns The work's result and the longest gap, in ms.
 */
export async function whileTicking<T>(
  work: () => Promise<T>,
  intervalMs = 2,
): Promise<{ value: T; longestGap: number }> {
  let last = performance.now();
  let longestGap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longestGap = Math.max(longestGap, now - last);
    last = now;
  }, intervalMs);
  try {
    const value = await work();
    longestGap = Math.max(longestGap, performance.now() - last); // the stall that ended with it
    return { value, longestGap };
  } finally {
    clearInterval(timer);
  }
}

/** A `shimmy serve` process started by {@link spawnServe}. */
export interface Served {
  url: string;
  process: Deno.ChildProcess;
  output: Promise<string>;
}

/**
 * Starts `deno run -A main.ts serve ARGS` and waits until it listens and has listed its models.
 *
 * @param args Arguments after `serve`.
 * @param env Extra environment variables (`SHIMMY_BIND_ADDRESS` is cleared unless given).
 * @returns Its URL, the process, and its whole output once it exits.
 */
export async function spawnServe(
  args: string[],
  env: Record<string, string> = {},
): Promise<Served> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "main.ts"), "serve", ...args],
    cwd: REPO_ROOT,
    env: { SHIMMY_BIND_ADDRESS: "", ...env },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  // Ready once the model table (printed after the preloads) or its empty line is out.
  while (!/listening on (http:\/\/\S+)[^]*\n {2}\S/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`shimmy serve exited early:\n${seen}`);
    seen += value;
  }
  const url = (/listening on (http:\/\/\S+)/.exec(seen) as RegExpExecArray)[1] as string;
  const output = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return seen;
      seen += value;
    }
  })();
  return { url, process, output };
}

/**
 * Stops a server started by {@link spawnServe} with SIGTERM and waits for it to exit.
 *
 * @param served The server.
 * @returns Its exit code.
 */
export async function stopServe(served: Served): Promise<number> {
  served.process.kill("SIGTERM");
  const status = await served.process.status;
  await served.output;
  await served.process.stderr.cancel();
  return status.code;
}

/**
 * A repeatable source of random integers (a linear congruential generator), for tests whose
 * random inputs must be the same on every run.
 *
 * @param seed The starting state.
 * @returns A function giving an integer from 0 to `n - 1`.
 * @example
 * ```ts
 * const random = seededRandom(7);
 * random(10); // the same number on every run
 * ```
 */
export function seededRandom(seed: number): (n: number) => number {
  let state = seed;
  // The high bits: a linear congruential generator's low bits repeat with short periods.
  return (n) => ((state = (state * 1103515245 + 12345) & 0x7fffffff) >>> 12) % n;
}
