/**
 * Starts a real Shimmy HTTP server in-process on a free loopback port, over generated
 * fixture models and the real libllama.
 *
 * @module
 */

import { basename, join } from "node:path";
import { modelNameOf } from "../../src/models/model_names.ts";
import { type ModelEntry, ModelRegistry, type RegistryOptions } from "../../src/models/registry.ts";
import { Activity } from "../../src/server/activity.ts";
import { Arrivals } from "../../src/server/arrivals.ts";
import { ResponseStore } from "../../src/server/response_store.ts";
import { createApp } from "../../src/server/app.ts";
import { type GuardOptions, serveGuarded } from "../../src/server/connection_guard.ts";
import type { ServerContext, ServerSettings } from "../../src/server/context.ts";
import { Metrics } from "../../src/server/metrics.ts";
import { fixtureModel, llamaSourceDir } from "../fixtures/models.ts";

/** Registry entries for fixture files, uniquely named after their stems. */
function entriesFor(files: readonly { path: string; source: string }[]): ModelEntry[] {
  const taken = new Set<string>();
  return files.map(({ path, source }) => {
    const stem = modelNameOf(path) || basename(path).toLowerCase();
    let name = stem;
    for (let n = 2; taken.has(name); n++) name = `${stem}-${n}`;
    taken.add(name);
    return { name, path, source, sizeBytes: Deno.statSync(path).size };
  });
}

/** A running test server. */
export interface TestServer {
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** Base URL of the Ollama listener (`--ollama-bind`), when `ollamaListener` was asked. */
  ollamaUrl?: string;
  ctx: ServerContext;
  /** Stops the server and frees every model. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options for {@link startServer}. */
export interface TestServerOptions {
  /** Fixture names to serve (default ["tiny-f32"]). */
  fixtures?: string[];
  /** Extra entries (e.g. a corrupt file). */
  extraEntries?: ModelEntry[];
  load?: RegistryOptions;
  /** Adapters to list for the first model. */
  adapters?: { name: string; path: string }[];
  settings?: Partial<ServerSettings>;
  /** Connection limits (timeouts, count). */
  guard?: Omit<GuardOptions, "hostname" | "port">;
  /** Also start a listener serving Ollama's API at its root, as `--ollama-bind` does. */
  ollamaListener?: boolean;
}

/**
 * Starts a server whose chat template is one of llama.cpp's copies (`models/templates/NAME.jinja`
 * of the llama.cpp source, which must be at hand).
 *
 * @param name The template's file name without `.jinja`.
 * @param options As for {@link startServer}.
 * @returns The running server.
 */
export async function startServerWithTemplate(
  name: string,
  options: TestServerOptions = {},
): Promise<TestServer> {
  const server = await startServer(options);
  const file = join(llamaSourceDir()!, "models", "templates", `${name}.jinja`);
  server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(file), path: file };
  return server;
}

/**
 * Starts a server.
 *
 * @param options Models, load options and settings.
 * @returns The running server.
 */
export async function startServer(options: TestServerOptions = {}): Promise<TestServer> {
  const files = await Promise.all(
    (options.fixtures ?? ["tiny-f32"]).map(async (name) => ({
      path: await fixtureModel(name),
      source: "test",
    })),
  );
  const entries = [...entriesFor(files), ...(options.extraEntries ?? [])];
  if (options.adapters && entries[0]) entries[0] = { ...entries[0], adapters: options.adapters };
  // The first fixture plays the one `--model` of the command line: the default model.
  const arrivals = new Arrivals();
  const registry = new ModelRegistry(entries, {
    requestsOnTheWay: arrivals,
    parallel: 4,
    decodeThread: true, // as `shimmy serve` runs
    ...(entries[0] ? { defaultModel: entries[0].name } : {}),
    ...options.load,
  });
  const ctx: ServerContext = {
    registry,
    metrics: new Metrics(),
    startedAt: performance.now(),
    activity: new Activity(),
    arrivals,
    responses: new ResponseStore(),
    draining: false,
    settings: {
      parallel: options.load?.parallel ?? 4,
      gpuBackend: "auto",
      policy: { boundHost: "127.0.0.1" },
      ...options.settings,
    },
  };
  const server = serveGuarded(
    { hostname: "127.0.0.1", port: 0, ...options.guard },
    createApp(ctx),
  );
  const ollama = options.ollamaListener
    ? serveGuarded(
      { hostname: "127.0.0.1", port: 0, ...options.guard },
      createApp(ctx, { ollamaRoot: true, boundHost: "127.0.0.1" }),
    )
    : undefined;
  for (const listener of [server, ollama]) {
    if (listener) arrivals.watch((withinMs) => listener.requestsArriving(withinMs));
  }
  const close = async () => {
    await registry.close();
    await server.close();
    await ollama?.close();
  };
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    ...(ollama ? { ollamaUrl: `http://127.0.0.1:${ollama.addr.port}` } : {}),
    ctx,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Reads an SSE response into its `data:` payloads (multi-line data joined with "\n").
 *
 * @param response A streaming response.
 * @returns The payloads in order, and the raw body text.
 */
export async function readSse(response: Response): Promise<{ events: string[]; raw: string }> {
  const raw = await response.text();
  const events = raw.split("\n\n").filter((block) => block !== "").map((block) =>
    block.split("\n").map((line) => {
      if (!line.startsWith("data: ")) throw new Error(`Bad SSE line: ${JSON.stringify(line)}`);
      return line.slice("data: ".length);
    }).join("\n")
  );
  return { events, raw };
}

/**
 * POSTs JSON.
 *
 * @param url Full URL.
 * @param body JSON body.
 * @param headers Extra headers.
 * @param signal Aborts the request.
 * @returns The response.
 */
export function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

/**
 * Waits until a condition holds, polling every 10 ms.
 *
 * @param condition Checked until true (it may be async: each check is awaited).
 * @param timeoutMs Most milliseconds to wait.
 * @returns Whether it held in time.
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

/**
 * The longest the event loop went without a turn while `work` ran: a test server runs in the
 * test's process, so a handler that holds the loop shows here (an HTTP probe from the same loop
 * cannot see it).
 *
 * @param work What to watch.
 * @returns The longest stall, in ms.
 */
export async function longestLoopStall(work: Promise<unknown>): Promise<number> {
  let done = false;
  let worst = 0;
  const ticking = (async () => {
    while (!done) {
      const started = performance.now();
      await new Promise((r) => setTimeout(r, 5));
      worst = Math.max(worst, performance.now() - started - 5);
    }
  })();
  await work;
  done = true;
  await ticking;
  return worst;
}
