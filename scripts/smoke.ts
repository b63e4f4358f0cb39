/**
 * `deno run -A scripts/smoke.ts [--timeout S] -- COMMAND...`: the smoke test that the release
 * workflow runs on every executable it has just built, and that the tests run here on the
 * checkout (`-- deno run -A main.ts`).
 *
 * 1. `--version` prints `shimmy <version> (llama.cpp …)`.
 * 2. Two `gpu-info` runs start at once on an empty cache (`SHIMMY_CACHE_DIR`): the compiled
 *    executable's first-run extraction must survive the race.
 * 3. `serve` on a generated model (`tests/fixtures`' `tiny-f32`), then one chat request through
 *    `curl`; the answer must be an OpenAI chat completion.
 *
 * When COMMAND is a single executable file, it is first copied into a read-only folder and run
 * from there, as from `/usr/local/bin` or `Program Files`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { basename, join, resolve } from "node:path";
import { fixtureModel } from "../tests/fixtures/models.ts";

/** What one smoke step printed. */
interface StepOutput {
  code: number;
  stdout: string;
  stderr: string;
}

function log(line: string) {
  console.error(`smoke: ${line}`);
}

async function run(command: string[], env: Record<string, string>): Promise<StepOutput> {
  const out = await new Deno.Command(command[0]!, {
    args: command.slice(1),
    env,
    stdin: "null",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

function expectOk(step: string, out: StepOutput) {
  if (out.code !== 0) {
    throw new Error(`${step} exited with ${out.code}:\n${out.stdout}${out.stderr}`);
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Copies a lone executable into a fresh folder that is then made read-only (not on Windows). */
async function readOnlyCopy(exe: string): Promise<{ exe: string; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "shimmy-smoke-install-" });
  const copy = join(dir, basename(exe));
  await Deno.copyFile(exe, copy);
  if (Deno.build.os !== "windows") {
    await Deno.chmod(copy, 0o755);
    await Deno.chmod(dir, 0o555);
  }
  return { exe: copy, dir };
}

async function serveAndChat(command: string[], env: Record<string, string>, timeoutS: number) {
  const model = await fixtureModel("tiny-f32");
  const port = freePort();
  const server = new Deno.Command(command[0]!, {
    args: [...command.slice(1), "serve", "--model", model, "--bind", `127.0.0.1:${port}`],
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(server.stderr).text();
  try {
    const deadline = Date.now() + timeoutS * 1000;
    for (;;) {
      const health = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
      await health?.body?.cancel();
      if (health?.ok) break;
      if (Date.now() > deadline) throw new Error(`serve did not become healthy in ${timeoutS}s`);
      await new Promise((r) => setTimeout(r, 200));
    }
    log(`serve is up on 127.0.0.1:${port}`);
    const body = JSON.stringify({
      messages: [{ role: "user", content: "Say hi" }],
      max_tokens: 4,
    });
    const curl = await run([
      "curl",
      "-fsS",
      "--max-time",
      String(timeoutS),
      "-H",
      "content-type: application/json",
      "-d",
      body,
      `http://127.0.0.1:${port}/v1/chat/completions`,
    ], env);
    expectOk("curl /v1/chat/completions", curl);
    const completion = JSON.parse(curl.stdout);
    if (completion.object !== "chat.completion" || !completion.choices?.[0]?.message) {
      throw new Error(`Unexpected chat answer: ${curl.stdout}`);
    }
    log(`chat answered: ${JSON.stringify(completion.choices[0].message)}`);
  } catch (error) {
    server.kill();
    log(`serve's output:\n${await stderr}`);
    throw error;
  }
  server.kill();
  await server.status;
  await stderr;
}

/**
 * Runs the smoke test against a command.
 *
 * @param command The executable (and any leading arguments, e.g. `deno run -A main.ts`).
 * @param timeoutS Seconds to wait for `serve` and the chat answer.
 * @returns Resolves when every step passed.
 * @throws {Error} naming the step that failed, with its output.
 * @example
 * ```ts
 * await smokeTest(["dist/shimmy"]);
 * await smokeTest(["deno", "run", "-A", "main.ts"]);
 * ```
 */
export async function smokeTest(command: string[], timeoutS = 120): Promise<void> {
  const cache = await Deno.makeTempDir({ prefix: "shimmy-smoke-cache-" });
  const env = { SHIMMY_CACHE_DIR: cache, SHIMMY_LIB_DIR: "", NO_COLOR: "1" };
  let installDir: string | undefined;
  try {
    if (command.length === 1) {
      const copy = await readOnlyCopy(resolve(command[0]!));
      installDir = copy.dir;
      command = [copy.exe];
      log(`running from a read-only folder: ${copy.exe}`);
    }
    const version = await run([...command, "--version"], env);
    expectOk("--version", version);
    if (!/^shimmy \S+ \(llama\.cpp /.test(version.stdout)) {
      throw new Error(`--version printed ${JSON.stringify(version.stdout)}`);
    }
    log(version.stdout.trim());

    const both = await Promise.all([
      run([...command, "gpu-info"], env),
      run([...command, "gpu-info"], env),
    ]);
    both.forEach((out, i) => expectOk(`gpu-info (copy ${i + 1} of 2 started at once)`, out));
    log(`gpu-info:\n${both[0]!.stdout.trim()}`);

    await serveAndChat(command, env, timeoutS);
    log("passed");
  } finally {
    if (installDir) {
      await Deno.chmod(installDir, 0o755).catch(() => {});
      await Deno.remove(installDir, { recursive: true }).catch(() => {});
    }
    await Deno.remove(cache, { recursive: true }).catch(() => {});
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      timeout: { type: "string", default: "120" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || positionals.length === 0) {
    console.log(`Usage: deno run -A scripts/smoke.ts [--timeout S] -- COMMAND...

Examples:
  deno run -A scripts/smoke.ts -- dist/shimmy
  deno run -A scripts/smoke.ts -- deno run -A main.ts`);
    return values.help ? 0 : 1;
  }
  try {
    await smokeTest(positionals, Number(values.timeout));
    return 0;
  } catch (error) {
    console.error(`smoke: FAILED: ${(error as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
