/**
 * `shimmy serve`: the HTTP server (OpenAI API, native API, SSE, WebSocket, metrics).
 *
 * @module
 */

import { planDevices } from "../engine/gpu.ts";
import { type ModelEntry, ModelRegistry, parseDuration } from "../models/registry.ts";
import { loadTemplateOverride } from "../engine/templates.ts";
import { Llama } from "../ffi/llama.ts";
import { createApp } from "../server/app.ts";
import type { ServerContext } from "../server/context.ts";
import { Metrics } from "../server/metrics.ts";
import type { GlobalFlags } from "./global_flags.ts";
import { parseTensorSplit } from "./generate.ts";
import { discoverFor, entriesFrom } from "./model_lookup.ts";
import { UsageError } from "./usage_error.ts";
import { gpuLayersFlag, parseFlags } from "./flags.ts";

/** Usage text of `shimmy serve`. */
export const SERVE_USAGE = `Usage: shimmy serve [options]

Serves GGUF models over HTTP: OpenAI API (/v1/chat/completions, /v1/completions,
/v1/models), Shimmy's native API (/api/generate, /ws/generate, /api/models, /api/tags),
/health, /metrics and /diag.

Options:
  --bind HOST:PORT|auto   Address (default auto: SHIMMY_BIND_ADDRESS, else 127.0.0.1:11435,
                          else the first free port in 11435-11535, else any free port)
  --model PATH_OR_NAME    Model to serve and load at start; repeatable (--model-path too)
  --parallel N            Requests generated at once per model (default 4)
  --ctx-size N            Context tokens per request (default: model's, at most 4096)
  --batch-size N          Most tokens per decode step (default 2048)
  --max-queue N           Requests that may wait for a slot before 503 (default 64)
  --max-models N          Models loaded at once; the least recently used idle one is
                          unloaded for another (default 2)
  --keep-alive D          Unload a model idle this long: 30s, 5m, 1h, -1 = never (default 5m)
  --lora PATH[:SCALE]     LoRA adapter attached to the default model at load; repeatable
                          (SHIMMY_LORA_GGUF too)
  --threads N             CPU threads (default: one per core)
  --api-key KEY           Require Authorization: Bearer KEY (or SHIMMY_API_KEY)
  --cors ORIGIN           Allow cross-origin requests from ORIGIN ('*' for any)
  --chat-template T       Chat format for every model: chatml, llama3, llama2, mistral,
                          gemma, phi3, openchat, zephyr, raw, or a .jinja file
                          (default: the model's own template)
  --gpu-backend B         auto | cpu | cuda | vulkan | metal (default auto)
  --n-gpu-layers N|all    Layers to offload (default: all on a GPU)
  --tensor-split A,B,…    Share of each model per GPU, e.g. 3,1
  --model-dirs DIRS       Extra model folders, ';'-separated
  --verbose               Show llama.cpp's log

Examples:
  shimmy serve --model ./models/phi3.gguf
  shimmy serve --bind 0.0.0.0:8080 --parallel 8 --api-key secret`;

/** Parsed `serve` options. */
export interface ServeArgs {
  bind: string;
  models: string[];
  parallel: number;
  ctxSize?: number;
  batchSize?: number;
  maxQueue?: number;
  threads?: number;
  nGpuLayers?: number;
  tensorSplit?: number[];
  apiKey?: string;
  cors?: string;
  chatTemplate?: string;
  maxModels?: number;
  keepAliveMs?: number;
  lora: { path: string; scale: number }[];
}

function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new UsageError(`--${name} must be a positive integer, got "${value}"`);
  }
  return n;
}

/**
 * Parses `serve`'s arguments (global flags already removed).
 *
 * @param args Arguments after the command name.
 * @param env Environment lookup.
 * @returns The options, or undefined for `--help`.
 * @throws {UsageError}
 */
export function parseServeArgs(
  args: string[],
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): ServeArgs | undefined {
  const parsed = parseFlags(args, {
    bind: { type: "string", default: "auto" },
    model: { type: "string", multiple: true },
    "model-path": { type: "string", multiple: true },
    parallel: { type: "string" },
    "ctx-size": { type: "string" },
    "batch-size": { type: "string" },
    "max-queue": { type: "string" },
    threads: { type: "string" },
    "n-gpu-layers": { type: "string" },
    "tensor-split": { type: "string" },
    "api-key": { type: "string" },
    cors: { type: "string" },
    "chat-template": { type: "string" },
    "max-models": { type: "string" },
    "keep-alive": { type: "string" },
    lora: { type: "string", multiple: true },
    help: { type: "boolean", short: "h", default: false },
  });
  const v = parsed.values;
  if (v.help) return undefined;
  const nGpuLayers = gpuLayersFlag(v["n-gpu-layers"]);
  let keepAliveMs: number | undefined;
  try {
    keepAliveMs = v["keep-alive"] === undefined ? undefined : parseDuration(v["keep-alive"]);
  } catch (error) {
    throw new UsageError(`--keep-alive: ${(error as Error).message}`);
  }
  const loraFlags = [
    ...(v.lora ?? []),
    ...(env("SHIMMY_LORA_GGUF") ? [env("SHIMMY_LORA_GGUF")!] : []),
  ];
  const out: ServeArgs = {
    bind: v.bind,
    models: [...(v.model ?? []), ...(v["model-path"] ?? [])],
    parallel: positiveInt("parallel", v.parallel) ?? 4,
    lora: loraFlags.map(parseLoraFlag),
  };
  const optional = {
    ctxSize: positiveInt("ctx-size", v["ctx-size"]),
    batchSize: positiveInt("batch-size", v["batch-size"]),
    maxQueue: positiveInt("max-queue", v["max-queue"]),
    threads: positiveInt("threads", v.threads),
    nGpuLayers,
    apiKey: v["api-key"] ?? env("SHIMMY_API_KEY"),
    cors: v.cors,
    chatTemplate: v["chat-template"],
    tensorSplit: v["tensor-split"] ? parseTensorSplit(v["tensor-split"]) : undefined,
    maxModels: positiveInt("max-models", v["max-models"]),
    keepAliveMs,
  };
  for (const [key, value] of Object.entries(optional)) {
    if (value !== undefined && value !== "") {
      (out as unknown as Record<string, unknown>)[key] = value;
    }
  }
  return out;
}

/**
 * Parses `--lora PATH[:SCALE]` (a Windows drive letter is not a scale).
 *
 * @param value The flag value.
 * @returns Path and scale (default 1).
 */
export function parseLoraFlag(value: string): { path: string; scale: number } {
  const at = value.lastIndexOf(":");
  const scale = at > 1 ? Number(value.slice(at + 1)) : Number.NaN;
  return Number.isFinite(scale) && value.slice(at + 1).trim() !== ""
    ? { path: value.slice(0, at), scale }
    : { path: value, scale: 1 };
}

/**
 * Parses `HOST:PORT` (IPv6 as `[::1]:PORT`).
 *
 * @param bind The address.
 * @returns Host and port.
 * @throws {UsageError} for a malformed address.
 */
export function parseBindAddress(bind: string): { hostname: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(bind);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`--bind must be HOST:PORT or auto, got "${bind}"`);
  }
  return { hostname: (match[1] ?? match[2]) as string, port };
}

/**
 * Starts listening: an explicit address, or `auto` (SHIMMY_BIND_ADDRESS, 11435, the first free
 * port up to 11535, any free port).
 *
 * @param bind `--bind` value.
 * @param handler The request handler.
 * @returns The running server (stop it with `shutdown()`).
 */
export function listen(
  bind: string,
  handler: Deno.ServeHandler<Deno.NetAddr>,
): Deno.HttpServer<Deno.NetAddr> {
  const serve = (hostname: string, port: number) =>
    Deno.serve({ hostname, port, onListen: () => {} }, handler);
  const fromEnv = Deno.env.get("SHIMMY_BIND_ADDRESS");
  if (bind !== "auto" || fromEnv) {
    const { hostname, port } = parseBindAddress(bind !== "auto" ? bind : fromEnv as string);
    return serve(hostname, port);
  }
  for (let port = 11435; port <= 11535; port++) {
    try {
      return serve("127.0.0.1", port);
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
  return serve("127.0.0.1", 0);
}

/**
 * Logs model loads on stderr: the start, every quarter, and the end.
 *
 * @returns A registry progress callback.
 */
export function loadProgressLogger(): (entry: ModelEntry, fraction: number) => void {
  const reached = new Map<string, number>();
  return (entry, fraction) => {
    let last = reached.get(entry.name);
    if (last === undefined || (fraction === 0 && last === 4)) {
      last = -1;
      console.error(`Loading ${entry.name} (${entry.path})…`);
    }
    const quarter = Math.floor(fraction * 4);
    if (quarter <= last) return;
    reached.set(entry.name, quarter);
    if (quarter === 4) {
      console.error(`Loaded ${entry.name}`);
    } else if (quarter > 0) {
      console.error(`Loading ${entry.name}… ${quarter * 25}%`);
    }
  };
}

/** Grace period for in-flight streams on shutdown. */
const SHUTDOWN_GRACE_MS = 5000;

/**
 * Runs `shimmy serve` until SIGINT/SIGTERM.
 *
 * @param args Arguments after the command name.
 * @param globals Global flags.
 * @returns The exit code.
 */
export async function serveMain(args: string[], globals: GlobalFlags): Promise<number> {
  const options = parseServeArgs(args);
  if (!options) {
    console.log(SERVE_USAGE);
    return 0;
  }
  const report = await discoverFor(globals, options.models);
  const entries: ModelEntry[] = entriesFrom(report, options.models);
  const preload = entries.slice(0, options.models.length);
  const gpuBackend = globals.gpuBackend ?? "auto";
  const llama = Llama.open({ gpuBackend, verbose: globals.verbose }); // fails fast without libraries
  if (options.lora.length > 0 && entries[0]) {
    entries[0] = { ...entries[0], startupLora: options.lora };
  }
  const registry = new ModelRegistry(entries, {
    gpuBackend,
    verbose: globals.verbose,
    parallel: options.parallel,
    onLoadProgress: loadProgressLogger(),
    availableMemory: () => {
      const plan = planDevices(llama.devices(), gpuBackend, options.nGpuLayers);
      return plan.devices.length > 0
        ? plan.devices.reduce((sum, d) => sum + d.freeBytes, 0)
        : Deno.systemMemoryInfo().available;
    },
    ...(options.ctxSize ? { ctxSize: options.ctxSize } : {}),
    ...(options.batchSize ? { batchSize: options.batchSize } : {}),
    ...(options.maxQueue ? { maxQueue: options.maxQueue } : {}),
    ...(options.threads ? { threads: options.threads } : {}),
    ...(options.nGpuLayers !== undefined ? { nGpuLayers: options.nGpuLayers } : {}),
    ...(options.tensorSplit ? { tensorSplit: options.tensorSplit } : {}),
    ...(options.maxModels ? { maxModels: options.maxModels } : {}),
    ...(options.keepAliveMs !== undefined ? { keepAliveMs: options.keepAliveMs } : {}),
  });
  for (const entry of preload) await registry.acquire(entry.name);
  const ctx: ServerContext = {
    registry,
    metrics: new Metrics(),
    startedAt: performance.now(),
    settings: {
      parallel: options.parallel,
      gpuBackend,
      ...(options.ctxSize ? { ctxSize: options.ctxSize } : {}),
      ...(options.apiKey ? { apiKey: options.apiKey } : {}),
      ...(options.cors ? { cors: options.cors } : {}),
      ...(options.chatTemplate
        ? { chatTemplate: await loadTemplateOverride(options.chatTemplate) }
        : {}),
    },
  };
  const server = listen(options.bind, createApp(ctx));
  const { hostname, port } = server.addr;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  console.log(`Shimmy listening on http://${host}:${port}`);
  for (const entry of entries) {
    console.log(
      `  ${entry.name.padEnd(28)} ${registry.state(entry.name).padEnd(9)} ${entry.source}: ` +
        entry.path,
    );
  }
  if (entries.length === 0) {
    console.log("  (no models found: pass --model PATH or --model-dirs DIRS)");
  }
  const shutdown = new Promise<string>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      try {
        Deno.addSignalListener(sig, () => resolve(sig));
      } catch {
        // SIGTERM cannot be listened to on Windows
      }
    }
  });
  const signal = await shutdown;
  console.error(`${signal}: stopping (in-flight requests get ${SHUTDOWN_GRACE_MS / 1000}s)`);
  const grace = setTimeout(() => void registry.close(), SHUTDOWN_GRACE_MS);
  await server.shutdown();
  clearTimeout(grace);
  await registry.close();
  return 0;
}
