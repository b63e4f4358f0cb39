/**
 * llama.cpp's `llama-server` from the reference build, for the oracle tests: started on a free
 * loopback port with one slot, ready once `/health` answers, and stopped with SIGTERM, then
 * SIGKILL if it has not exited after {@link STOP_GRACE_MS}. (Its SIGTERM handler takes a lock
 * that the interrupted thread may hold: now and then it never exits, which hung a test run.)
 *
 * @module
 */

import { join } from "node:path";
import { settlesWithin } from "../../bench/lib/server_process.ts";

/** Longest a reference server may take to answer its first request. */
const START_TIMEOUT_MS = 30_000;
/** How long a reference server gets to exit after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 3_000;

/** A running reference llama-server. */
export interface ReferenceServer extends AsyncDisposable {
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /**
   * Stops it (safe to call twice).
   *
   * @returns Its standard error.
   */
  stop(): Promise<string>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * Starts `llama-server` on a model and waits until it answers.
 *
 * @param referenceDir The reference build (`lib/reference`).
 * @param model The GGUF file.
 * @param flags Further flags (`--embeddings`, `--jinja`…); `-c` defaults to 512.
 * @returns The running server.
 * @throws {Error} with its last output when it is not ready within 30 s.
 * @example
 * ```ts
 * await using server = await startReferenceServer(dir, model, ["--embeddings"]);
 * await fetch(`${server.url}/v1/embeddings`, { method: "POST", body: "{}" });
 * ```
 */
export async function startReferenceServer(
  referenceDir: string,
  model: string,
  flags: string[],
): Promise<ReferenceServer> {
  const port = freePort();
  const context = flags.includes("-c") ? [] : ["-c", "512"];
  const child = new Deno.Command(join(referenceDir, "bin", "llama-server"), {
    args: ["-m", model, "--host", "127.0.0.1", "--port", String(port), "-np", "1", "--no-webui"]
      .concat(context, flags),
    env: { LD_LIBRARY_PATH: referenceDir },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log = new Response(child.stderr).text();
  let stopping: Promise<string> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      for (const signal of ["SIGTERM", "SIGKILL"] as const) {
        try {
          child.kill(signal);
        } catch {
          break; // already exited
        }
        if (await settlesWithin(child.status, STOP_GRACE_MS)) break;
      }
      await child.status;
      return await log;
    })();
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (true) {
    const ready = await fetch(`${url}/health`).then(async (r) => {
      await r.body?.cancel();
      return r.ok;
    }, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      throw new Error(`llama-server did not start: ${(await stop()).slice(-500)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, stop, [Symbol.asyncDispose]: async () => void await stop() };
}
