/**
 * `shimmy serve`: the HTTP server (OpenAI API, native API, SSE, WebSocket, metrics).
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { planDevices } from "../engine/gpu.ts";
import { attentionFor, type DeviceSamplingMode } from "../engine/loaded_model.ts";
import type { Switch } from "../engine/gpu.ts";
import type { KvCacheTypes } from "../engine/kv_cache_type.ts";
import { splitPathList } from "../models/discovery_roots.ts";
import {
  DEFAULT_MAX_MODELS,
  type ModelEntry,
  ModelRegistry,
  parseDuration,
} from "../models/registry.ts";
import { ModelNotFoundError } from "../models/model_names.ts";
import { loadTemplateOverride } from "../engine/templates.ts";
import { exitNow } from "../ffi/exit_now.ts";
import { Llama } from "../ffi/llama.ts";
import { Activity } from "../server/activity.ts";
import { Arrivals } from "../server/arrivals.ts";
import { ResponseStore } from "../server/response_store.ts";
import { createApp } from "../server/app.ts";
import { type GuardedServer, serveGuarded } from "../server/connection_guard.ts";
import { joinServers } from "../server/joined_servers.ts";
import { allowedOrigin } from "../server/origin_policy.ts";
import type { ServerContext } from "../server/context.ts";
import { Metrics } from "../server/metrics.ts";
import type { GlobalFlags } from "./global_flags.ts";
import { parseTemplateKwargs } from "./generate.ts";
import { discoverFor, entriesFrom, missingFileCheck, notPulledCheck } from "./model_lookup.ts";
import { isFile } from "../util/fs.ts";
import { isHubReference, isPullable } from "../models/hf_hub.ts";
import { findPulled, type PullProgress } from "../models/pull.ts";
import { ModelPulls } from "../models/pull_tracker.ts";
import { pullProgressPrinter } from "./pull.ts";
import { UsageError } from "./usage_error.ts";
import { printable } from "../util/printable.ts";
import { parseByteSize } from "../util/byte_size.ts";
import {
  gpuLayersFlag,
  gpusFlag,
  KV_CACHE_FLAGS,
  KV_CACHE_FLAGS_USAGE,
  kvCacheFlags,
  kvCacheTypes,
  parseFlags,
  poolingFlag,
  SPLIT_FLAGS,
  SPLIT_FLAGS_USAGE,
  type SplitFlags,
  splitFlags,
  switchFlag,
  threadsFlag,
} from "./flags.ts";
import { describePlan } from "../engine/multi_gpu_plan.ts";
import type { PoolingName } from "../engine/embedder.ts";
import { keepGrammarWorkerWarm } from "../engine/grammar_worker.ts";
import { keepTemplateWorkersWarm } from "../engine/template_worker.ts";

/** Usage text of `shimmy serve`. */
export const SERVE_USAGE = `Usage: shimmy serve [options]

Serves GGUF models over HTTP: OpenAI API (/v1/chat/completions, /v1/completions,
/v1/embeddings, /v1/models), rerank (/v1/rerank), Shimmy's native API (/api/generate, /ws/generate, /api/models),
llama-server's /completion, /tokenize, /detokenize and /apply-template,
Ollama's API (under /ollama, and at the root of --ollama-bind), /health, /metrics and /diag,
and a chat page at / (open http://127.0.0.1:11435/ in a browser).

Options:
  --bind HOST:PORT|auto   Address (default auto: SHIMMY_BIND_ADDRESS, else 127.0.0.1:11435,
                          else the first free port in 11435-11535, else any free port)
  --host HOST, --port N   The same as --bind HOST:N, as llama-server takes them (host
                          default 127.0.0.1, port default 11435)
  --ollama-bind HOST:PORT Also serve Ollama's API at the root of this address, e.g.
                          127.0.0.1:11434, for clients that only know Ollama's (off by
                          default; SHIMMY_OLLAMA_BIND too). The main port serves it under
                          /ollama either way
  --model PATH_OR_NAME    Model to serve and load at start; repeatable (--model-path too).
                          A Hugging Face reference (hf.co/ORG/REPO[:QUANT]) must be pulled,
                          or --allow-pull given
  --default-model NAME    The model of requests that name none (default: the one --model;
                          with several models and no default, such requests get a 400)
  --allow-pull            Pull hf.co/… models named by --model or by a request when they are
                          not on disk (progress on the console and in /health)
  --parallel N            Requests generated at once per model (default 4)
  --ctx-size N            Context tokens per request (default: model's, at most 4096)
  --batch-size N          Most tokens per decode step (default 2048)
  --max-queue N           Requests that may wait for a slot before 503 (default 64)
  --max-models N          Models loaded at once; the least recently used idle one is
                          unloaded for another (default 2, or as many as --model names)
  --load-wait D           How long a load waits for a busy model to go idle when
                          --max-models are loaded, before a 503 (default 30s)
  --keep-alive D          Unload a model idle this long: 30s, 5m, 1h, -1 = never (default 5m)
  --lora PATH[:SCALE]     LoRA adapter attached to the default model at load; repeatable
                          (SHIMMY_LORA_GGUF too)
  --slot-save-path DIR    Folder where POST /slots/N?action=save|restore keep slots' caches
                          (SHIMMY_SLOT_SAVE_PATH too; default: those actions are off)
  --slot-save-max-size S  Most the files in that folder take together: bytes, or e.g. 512MiB,
                          4GiB, 10GB (default 10GiB; unlimited lifts it; SHIMMY_SLOT_SAVE_MAX_SIZE
                          too). A save past it, or one that would leave the disk less than
                          1 GiB or 5 % free, is a 507
  --threads N             CPU threads (default: one per physical core; at most 4 with every
                          layer on a GPU)
  --api-key KEY           Require Authorization: Bearer KEY or x-api-key: KEY (or SHIMMY_API_KEY)
  --no-webui              Do not serve the chat page at /
  --no-prefill-assistant  Answer a chat whose last message is the assistant's with a new turn
                          instead of continuing that message
  --cors ORIGIN           Also allow browser pages from ORIGIN ('*' for any); repeatable,
                          or ','-separated (SHIMMY_ORIGINS too). Loopback origins always are
  --allowed-hosts NAMES   Also accept these Host names, ','-separated ('*' for any;
                          SHIMMY_ALLOWED_HOSTS too). Loopback names, the bound address and,
                          when bound to 0.0.0.0 or ::, IP addresses always are
  --header-timeout D      Close a connection whose request headers take longer (default 10s)
  --idle-timeout D        Close an idle keep-alive connection after D (default 30s)
  --body-timeout D        Answer 408 when a request body takes longer (default 30s)
  --max-connections N     Open connections at most; more get 503 (default 512)
  --shutdown-grace D      On SIGINT/SIGTERM, time in-flight requests get (default 5s);
                          a second signal exits at once
  --chat-template T       Chat format for every model: chatml, llama3, llama2, mistral,
                          gemma, phi3, openchat, zephyr, raw, or a .jinja file
                          (default: the model's own template)
  --chat-template-kwargs J  Template variables for every request, as a JSON object, e.g.
                          '{"enable_thinking":false}' (a request's chat_template_kwargs add to it)
  --gpu-backend B         auto | cpu | cuda | vulkan | metal (default auto)
  --n-gpu-layers N|all    Layers to offload (default: all on a GPU)
${SPLIT_FLAGS_USAGE}
  --replicas N            Independent copies of each model, one per GPU, each with its own
                          --parallel slots; a request goes to the least busy copy (default:
                          a copy per GPU when a model fits one GPU and --parallel is 8 or
                          more, else 1; on the CPU, N copies share the cores)
  --gpus 0,1,…            Use only these GPUs (default: all of the backend's)
  --model-dirs DIRS       Extra model folders, ';'-separated
  --device-sampling M     auto | on | off: sample inside the decode graph on the device
                          when a request's sampler allows it (default auto: on a GPU;
                          SHIMMY_DEVICE_SAMPLING too)
  --no-decode-thread      Decode a lone stream as every other step, through the event loop,
                          instead of on a thread that samples and goes on by itself (for
                          comparisons)
  --flash-attn M          auto | on | off: fused attention (default auto: on the CPU, the
                          faster of the two kernels on this machine, timed once at load;
                          else llama.cpp's choice, fused)
  --kv-unified M          auto | on | off: one KV cache shared by all slots, or a stream per
                          slot (default auto: a stream per slot, which decodes faster: each
                          token attends to its own slot's cells only)
${KV_CACHE_FLAGS_USAGE}
  --pooling P             Pooling of embeddings: none | mean | cls | last | rank (default:
                          each model's own from its GGUF; none, which /v1/embeddings refuses,
                          when it has none; SHIMMY_POOLING too)
  --no-mmap               Read the weights into memory instead of mapping the file (a file
                          truncated under a mapped model crashes the process)
  --verbose               Show llama.cpp's log

Examples:
  shimmy serve --model ./models/phi3.gguf
  shimmy serve --bind 0.0.0.0:8080 --parallel 8 --api-key secret
  shimmy serve --ollama-bind 127.0.0.1:11434   # Ollama's clients, unconfigured`;

/** Parsed `serve` options (with the multi-GPU flags that were set). */
export interface ServeArgs extends SplitFlags {
  bind: string;
  /** `--default-model`: the model of requests that name none. */
  defaultModel?: string;
  /** `--allow-pull`: pull hub models that are not on disk. */
  allowPull: boolean;
  /** `--ollama-bind`: a second listener serving Ollama's API at its root; none when unset. */
  ollamaBind?: string;
  models: string[];
  parallel: number;
  ctxSize?: number;
  batchSize?: number;
  maxQueue?: number;
  threads?: number;
  nGpuLayers?: number;
  /** `--replicas`: copies of each model. */
  replicas?: number;
  /** `--gpus`: the GPUs to use, by number. */
  gpus?: number[];
  apiKey?: string;
  /** Extra browser origins allowed (`--cors`, `SHIMMY_ORIGINS`). */
  origins: string[];
  /** Extra Host names allowed (`--allowed-hosts`, `SHIMMY_ALLOWED_HOSTS`). */
  allowedHosts: string[];
  chatTemplate?: string;
  /** `--chat-template-kwargs`: template variables for every request. */
  chatTemplateKwargs?: Record<string, unknown>;
  maxModels?: number;
  /** `--load-wait`: how long a load waits for room (see `RegistryOptions.loadWaitMs`). */
  loadWaitMs?: number;
  keepAliveMs?: number;
  /** `--slot-save-path`: the folder of slot files; slot save and restore are off without it. */
  slotSavePath?: string;
  /** `--slot-save-max-size`: most bytes the slot files take together (`Infinity`: no bound). */
  slotSaveMaxBytes?: number;
  headerTimeoutMs?: number;
  idleTimeoutMs?: number;
  bodyTimeoutMs?: number;
  maxConnections?: number;
  /** Grace period for in-flight requests on shutdown. */
  shutdownGraceMs: number;
  /** Read weights into memory instead of mapping them. */
  noMmap: boolean;
  /** `--no-decode-thread`. */
  noDecodeThread: boolean;
  /** `--no-webui`: do not serve the chat page at `/`. */
  noWebui: boolean;
  /** `--no-prefill-assistant`: a last assistant message gets a new turn, not a continuation. */
  noPrefillAssistant: boolean;
  /** Where sampler chains run (`--device-sampling`). */
  deviceSampling: DeviceSamplingMode;
  /** Flash attention (`--flash-attn`). */
  flashAttn: Switch;
  /** One KV cache for all slots or a stream per slot (`--kv-unified`). */
  kvUnified: Switch;
  /** `--cache-type-k`, `--cache-type-v`. */
  kvCache: Partial<KvCacheTypes>;
  /** Pooling of every model's embeddings (`--pooling`); each model's own when unset. */
  pooling?: PoolingName;
  lora: { path: string; scale: number }[];
}

/** Grace period for in-flight requests on shutdown, unless `--shutdown-grace` says. */
export const SHUTDOWN_GRACE_MS = 5000;

function durationFlag(name: string, value: string | undefined, allowNever = false) {
  if (value === undefined) return undefined;
  let ms: number;
  try {
    ms = parseDuration(value);
  } catch (error) {
    throw new UsageError(`--${name}: ${(error as Error).message}`);
  }
  if (ms < 0 && !allowNever) throw new UsageError(`--${name} cannot be negative`);
  return ms;
}

function commaList(...values: (string | undefined)[]): string[] {
  return values.flatMap((v) => (v ?? "").split(",")).map((v) => v.trim()).filter((v) => v);
}

/** One `--cors` origin, normalized as browsers send it (see `allowedOrigin`). */
function originFlag(value: string): string {
  const origin = allowedOrigin(value);
  if (origin === undefined) {
    throw new UsageError(
      `--cors takes origins such as https://app.example or http://localhost:3000 (or *), got "${value}"`,
    );
  }
  return origin;
}

/**
 * `--max-models`: room for every model named with `--model`, which are loaded at start (by default
 * as many as they are, when more than the default); fewer is a usage error.
 */
function maxModelsFlag(value: string | undefined, named: number): number | undefined {
  const given = positiveInt("max-models", value);
  if (given === undefined) return named > DEFAULT_MAX_MODELS ? named : undefined;
  if (given < named) {
    throw new UsageError(
      `--max-models ${given} leaves no room for the ${named} models named with --model, which ` +
        `are all loaded at start: raise it to ${named} or name fewer`,
    );
  }
  return given;
}

/**
 * `--slot-save-max-size`: a byte size above 0, or `unlimited` (`Infinity`). Not 0, which some
 * servers read as no bound and others as no room: "unlimited" says which.
 */
function slotSaveMaxSizeFlag(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (value.trim().toLowerCase() === "unlimited") return Infinity;
  const bytes = parseByteSize(value);
  if (bytes === undefined) {
    throw new UsageError(
      `--slot-save-max-size must be bytes or a size such as 512MiB, 4GiB or 10GB, or ` +
        `unlimited, got "${value}"`,
    );
  }
  if (bytes === 0) {
    throw new UsageError(
      `--slot-save-max-size must be more than 0 bytes (unlimited lifts the bound), got "${value}"`,
    );
  }
  return bytes;
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
    host: { type: "string" },
    port: { type: "string" },
    "ollama-bind": { type: "string" },
    model: { type: "string", short: "m", multiple: true },
    "model-path": { type: "string", multiple: true },
    "default-model": { type: "string" },
    "allow-pull": { type: "boolean", default: false },
    parallel: { type: "string" },
    "ctx-size": { type: "string" },
    "batch-size": { type: "string" },
    "max-queue": { type: "string" },
    "slot-save-path": { type: "string" },
    "slot-save-max-size": { type: "string" },
    threads: { type: "string" },
    "n-gpu-layers": { type: "string" },
    ...SPLIT_FLAGS,
    replicas: { type: "string" },
    gpus: { type: "string" },
    "api-key": { type: "string" },
    cors: { type: "string", multiple: true },
    "allowed-hosts": { type: "string", multiple: true },
    "header-timeout": { type: "string" },
    "idle-timeout": { type: "string" },
    "body-timeout": { type: "string" },
    "max-connections": { type: "string" },
    "shutdown-grace": { type: "string" },
    "no-mmap": { type: "boolean", default: false },
    "no-decode-thread": { type: "boolean", default: false },
    "no-webui": { type: "boolean", default: false },
    "no-prefill-assistant": { type: "boolean", default: false },
    "device-sampling": { type: "string" },
    "flash-attn": { type: "string" },
    "kv-unified": { type: "string" },
    ...KV_CACHE_FLAGS,
    pooling: { type: "string" },
    "chat-template": { type: "string" },
    "chat-template-kwargs": { type: "string" },
    "max-models": { type: "string" },
    "keep-alive": { type: "string" },
    "load-wait": { type: "string" },
    lora: { type: "string", multiple: true },
    help: { type: "boolean", short: "h", default: false },
  });
  const v = parsed.values;
  if (v.help) return undefined;
  const nGpuLayers = gpuLayersFlag(v["n-gpu-layers"]);
  const keepAliveMs = durationFlag("keep-alive", v["keep-alive"], true);
  const loraFlags = [
    ...(v.lora ?? []),
    ...(env("SHIMMY_LORA_GGUF") ? [env("SHIMMY_LORA_GGUF")!] : []),
  ];
  const models = [...(v.model ?? []), ...(v["model-path"] ?? [])];
  const out: ServeArgs = {
    bind: bindFlag(v.bind, v.host, v.port),
    models,
    allowPull: v["allow-pull"],
    parallel: positiveInt("parallel", v.parallel) ?? 4,
    lora: loraFlags.map(parseLoraFlag),
    origins: commaList(...(v.cors ?? []), env("SHIMMY_ORIGINS")).map(originFlag),
    allowedHosts: commaList(...(v["allowed-hosts"] ?? []), env("SHIMMY_ALLOWED_HOSTS")),
    shutdownGraceMs: durationFlag("shutdown-grace", v["shutdown-grace"]) ?? SHUTDOWN_GRACE_MS,
    noMmap: v["no-mmap"],
    noDecodeThread: v["no-decode-thread"],
    noWebui: v["no-webui"],
    noPrefillAssistant: v["no-prefill-assistant"],
    deviceSampling: switchFlag(
      "--device-sampling",
      v["device-sampling"] ?? env("SHIMMY_DEVICE_SAMPLING"),
    ),
    flashAttn: switchFlag("--flash-attn", v["flash-attn"]),
    kvUnified: switchFlag("--kv-unified", v["kv-unified"]),
    kvCache: kvCacheFlags(v),
  };
  const optional = {
    ctxSize: positiveInt("ctx-size", v["ctx-size"]),
    batchSize: positiveInt("batch-size", v["batch-size"]),
    maxQueue: positiveInt("max-queue", v["max-queue"]),
    threads: threadsFlag(v.threads),
    nGpuLayers,
    apiKey: v["api-key"] ?? env("SHIMMY_API_KEY"),
    defaultModel: v["default-model"],
    ollamaBind: ollamaBindFlag(v["ollama-bind"] ?? env("SHIMMY_OLLAMA_BIND")),
    chatTemplate: v["chat-template"],
    chatTemplateKwargs: v["chat-template-kwargs"] !== undefined
      ? parseTemplateKwargs(v["chat-template-kwargs"])
      : undefined,
    ...splitFlags(v),
    replicas: positiveInt("replicas", v.replicas),
    gpus: gpusFlag(v.gpus),
    maxModels: maxModelsFlag(v["max-models"], new Set(models).size),
    loadWaitMs: durationFlag("load-wait", v["load-wait"]),
    keepAliveMs,
    slotSavePath: v["slot-save-path"] ?? env("SHIMMY_SLOT_SAVE_PATH"),
    slotSaveMaxBytes: slotSaveMaxSizeFlag(
      v["slot-save-max-size"] ?? env("SHIMMY_SLOT_SAVE_MAX_SIZE"),
    ),
    headerTimeoutMs: durationFlag("header-timeout", v["header-timeout"]),
    idleTimeoutMs: durationFlag("idle-timeout", v["idle-timeout"]),
    bodyTimeoutMs: durationFlag("body-timeout", v["body-timeout"]),
    maxConnections: positiveInt("max-connections", v["max-connections"]),
    pooling: poolingFlag(v.pooling ?? env("SHIMMY_POOLING")),
  };
  if (optional.batchSize !== undefined && optional.batchSize < out.parallel) {
    throw new UsageError(
      `--batch-size (${optional.batchSize}) must be at least --parallel (${out.parallel}): ` +
        `each step decodes one token of every slot`,
    );
  }
  for (const [key, value] of Object.entries(optional)) {
    if (value !== undefined && value !== "") {
      (out as unknown as Record<string, unknown>)[key] = value;
    }
  }
  return out;
}

/** Shimmy's port, as in the original Shimmy. */
const DEFAULT_PORT = 11435;

/**
 * The address from `--bind`, or from llama-server's `--host` and `--port` (either may be left
 * out: 127.0.0.1 and 11435). Giving both forms is an error rather than one silently winning.
 */
function bindFlag(bind: string, host: string | undefined, port: string | undefined): string {
  if (host === undefined && port === undefined) return bind;
  if (bind !== "auto") {
    throw new UsageError("--bind and --host/--port name the address twice; give one of them");
  }
  const portNumber = port === undefined ? DEFAULT_PORT : Number(port);
  if (!Number.isInteger(portNumber) || portNumber < 0 || portNumber > 65535) {
    throw new UsageError(`--port must be a port number from 0 to 65535, got "${port}"`);
  }
  const name = host ?? "127.0.0.1";
  if (name === "") throw new UsageError("--host needs a host name or address");
  return `${name.includes(":") && !name.startsWith("[") ? `[${name}]` : name}:${portNumber}`;
}

/** Checks `--ollama-bind HOST:PORT` (no `auto`: Ollama's clients expect a fixed address). */
function ollamaBindFlag(value: string | undefined): string | undefined {
  if (value === undefined || value === "") return undefined;
  if (!/^(?:\[[^\]]+\]|[^:]+):\d+$/.test(value)) {
    throw new UsageError(`--ollama-bind must be HOST:PORT, e.g. 127.0.0.1:11434, got "${value}"`);
  }
  return value;
}

/**
 * Parses `--lora PATH[:SCALE]` (a Windows drive letter is not a scale).
 *
 * @param value The flag value.
 * @returns Path and scale (default 1).
 * @throws {UsageError} when what follows the last `:` of an existing file's path is not a number
 *   (`a.gguf:abc`), which would otherwise be reported as a missing file.
 */
export function parseLoraFlag(value: string): { path: string; scale: number } {
  const at = value.lastIndexOf(":");
  const suffix = value.slice(at + 1);
  const scale = at > 1 ? Number(suffix) : Number.NaN;
  if (Number.isFinite(scale) && suffix.trim() !== "") return { path: value.slice(0, at), scale };
  if (at > 1 && !isFile(value) && isFile(value.slice(0, at))) {
    throw new UsageError(`--lora ${value}: the scale after ":" must be a number, got "${suffix}"`);
  }
  return { path: value, scale: 1 };
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

/** Connection limits for {@link listen}. */
export type ConnectionLimits = Pick<
  ServeArgs,
  "headerTimeoutMs" | "idleTimeoutMs" | "maxConnections"
>;

/**
 * Starts listening: an explicit address, or `auto` (SHIMMY_BIND_ADDRESS, 11435, the first free
 * port up to 11535, any free port).
 *
 * @param bind `--bind` value.
 * @param limits Connection timeouts and count.
 * @param handler The request handler.
 * @returns The running server (stop it with `close()`).
 * @throws {UsageError} when the address is taken or cannot be used.
 */
export function listen(
  bind: string,
  limits: ConnectionLimits,
  handler: Parameters<typeof serveGuarded>[1],
): GuardedServer {
  const serve = (hostname: string, port: number) =>
    serveGuarded({
      hostname,
      port,
      ...(limits.headerTimeoutMs !== undefined ? { headerTimeoutMs: limits.headerTimeoutMs } : {}),
      ...(limits.idleTimeoutMs !== undefined ? { idleTimeoutMs: limits.idleTimeoutMs } : {}),
      ...(limits.maxConnections !== undefined ? { maxConnections: limits.maxConnections } : {}),
    }, handler);
  const fromEnv = Deno.env.get("SHIMMY_BIND_ADDRESS");
  if (bind !== "auto" || fromEnv) {
    const { hostname, port } = parseBindAddress(bind !== "auto" ? bind : fromEnv as string);
    try {
      return serve(hostname, port);
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) {
        throw new UsageError(
          `Cannot listen on ${bind !== "auto" ? bind : fromEnv}: the address is already in use ` +
            `(another Shimmy?); pick another with --bind HOST:PORT or --bind auto`,
        );
      }
      if (
        error instanceof Deno.errors.AddrNotAvailable ||
        error instanceof Deno.errors.PermissionDenied
      ) {
        throw new UsageError(`Cannot listen on ${hostname}:${port}: ${(error as Error).message}`);
      }
      throw error;
    }
  }
  for (let port = DEFAULT_PORT; port <= DEFAULT_PORT + 100; port++) {
    try {
      return serve("127.0.0.1", port);
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
  return serve("127.0.0.1", 0);
}

/**
 * Starts the `--ollama-bind` listener: Ollama's API at its root, with the main listener's
 * auth, CORS and Host/Origin policy (the Host check also admits its own address).
 *
 * @param bind `HOST:PORT`.
 * @param limits Connection timeouts and count.
 * @param ctx Server state.
 * @returns The running listener.
 * @throws {UsageError} when the address is taken (by Ollama itself, often) or cannot be used.
 */
function listenOllama(bind: string, limits: ConnectionLimits, ctx: ServerContext): GuardedServer {
  const { hostname, port } = parseBindAddress(bind);
  try {
    return serveGuarded({
      hostname,
      port,
      ...(limits.headerTimeoutMs !== undefined ? { headerTimeoutMs: limits.headerTimeoutMs } : {}),
      ...(limits.idleTimeoutMs !== undefined ? { idleTimeoutMs: limits.idleTimeoutMs } : {}),
      ...(limits.maxConnections !== undefined ? { maxConnections: limits.maxConnections } : {}),
    }, createApp(ctx, { ollamaRoot: true, boundHost: hostname }));
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new UsageError(
        `Cannot listen on ${bind} for --ollama-bind: the address is already in use (is Ollama ` +
          "running?); stop it or pick another address",
      );
    }
    if (
      error instanceof Deno.errors.AddrNotAvailable ||
      error instanceof Deno.errors.PermissionDenied
    ) {
      throw new UsageError(`Cannot listen on ${bind}: ${(error as Error).message}`);
    }
    throw error;
  }
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
      console.error(`Loading ${printable(entry.name)} (${printable(entry.path)})…`);
    }
    const quarter = Math.floor(fraction * 4);
    if (quarter <= last) return;
    reached.set(entry.name, quarter);
    if (quarter === 4) {
      console.error(`Loaded ${printable(entry.name)}`);
    } else if (quarter > 0) {
      console.error(`Loading ${printable(entry.name)}… ${quarter * 25}%`);
    }
  };
}

/**
 * Runs `shimmy serve` until SIGINT/SIGTERM. It listens before loading models, so a taken port
 * fails at once and `/health` shows load progress.
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
  const { local, toPull } = localModels(options.models, options.allowPull);
  const report = await discoverFor(globals, local);
  const ctxSize = options.ctxSize ?? globals.ctxSize;
  const kvTypes = kvCacheTypes(options.kvCache, globals);
  // Refused at start, not by every model's first request.
  if (kvTypes) attentionFor(kvTypes, options.flashAttn);
  const entries: ModelEntry[] = entriesFrom(report, local);
  const preload = [...entries.slice(0, local.length).map((e) => e.name), ...toPull];
  const pulls = options.allowPull ? new ModelPulls({}, pullLogger()) : undefined;
  const gpuBackend = globals.gpuBackend ?? "auto";
  const llama = Llama.open({ gpuBackend, verbose: globals.verbose }); // fails fast without libraries
  if (options.lora.length > 0 && entries[0]) {
    entries[0] = { ...entries[0], startupLora: options.lora };
  }
  const arrivals = new Arrivals();
  const registry = new ModelRegistry(entries, {
    requestsOnTheWay: arrivals,
    gpuBackend,
    verbose: globals.verbose,
    parallel: options.parallel,
    onLoadProgress: loadProgressLogger(),
    onLoadWarning: (entry, warning) =>
      console.error(`Warning: ${printable(entry.name)}: ${warning}`),
    ...defaultModelOption(options, entries, toPull),
    ...(pulls ? { fetchMissing: fetchMissing(pulls, globals, toPull) } : {}),
    ...(options.noMmap ? { useMmap: false } : {}),
    deviceSampling: options.deviceSampling,
    decodeThread: !options.noDecodeThread,
    flashAttn: options.flashAttn,
    kvUnified: options.kvUnified,
    ...(kvTypes ? { kvCacheTypes: kvTypes } : {}),
    ...(options.pooling ? { pooling: options.pooling } : {}),
    availableMemory: () => {
      const plan = planDevices(llama.devices(), gpuBackend, options.nGpuLayers);
      return plan.devices.length > 0
        ? plan.devices.reduce((sum, d) => sum + d.freeBytes, 0)
        : Deno.systemMemoryInfo().available;
    },
    ...(ctxSize ? { ctxSize } : {}),
    ...(options.batchSize ? { batchSize: options.batchSize } : {}),
    ...(options.maxQueue ? { maxQueue: options.maxQueue } : {}),
    ...(options.threads ? { threads: options.threads } : {}),
    ...(options.nGpuLayers !== undefined ? { nGpuLayers: options.nGpuLayers } : {}),
    ...(options.tensorSplit ? { tensorSplit: options.tensorSplit } : {}),
    ...(options.splitMode ? { splitMode: options.splitMode } : {}),
    ...(options.mainGpu !== undefined ? { mainGpu: options.mainGpu } : {}),
    ...(options.replicas ? { replicas: options.replicas } : {}),
    ...(options.gpus ? { gpus: options.gpus } : {}),
    ...(options.maxModels ? { maxModels: options.maxModels } : {}),
    ...(options.keepAliveMs !== undefined ? { keepAliveMs: options.keepAliveMs } : {}),
    ...(options.loadWaitMs !== undefined ? { loadWaitMs: options.loadWaitMs } : {}),
  });
  checkDefaultModel(registry, options);
  const ctx: ServerContext = {
    registry,
    metrics: new Metrics(),
    startedAt: performance.now(),
    activity: new Activity(),
    arrivals,
    responses: new ResponseStore(),
    ...(pulls ? { pulls } : {}),
    discover: async () => entriesFrom(await discoverFor(globals, local), local),
    draining: false,
    settings: {
      parallel: options.parallel,
      gpuBackend,
      policy: {
        boundHost: "127.0.0.1",
        origins: options.origins,
        allowedHosts: options.allowedHosts,
      },
      adapterDirs: adapterDirs(globals, options.models),
      webui: !options.noWebui,
      prefillAssistant: !options.noPrefillAssistant,
      ...(options.bodyTimeoutMs !== undefined ? { bodyTimeoutMs: options.bodyTimeoutMs } : {}),
      ...(options.slotSavePath ? { slotSavePath: await slotSaveFolder(options.slotSavePath) } : {}),
      ...(options.slotSaveMaxBytes ? { slotSaveMaxBytes: options.slotSaveMaxBytes } : {}),
      ...(ctxSize ? { ctxSize } : {}),
      ...(options.apiKey ? { apiKey: options.apiKey } : {}),
      ...(options.chatTemplate
        ? { chatTemplate: await loadTemplateOverride(options.chatTemplate) }
        : {}),
      ...(options.chatTemplateKwargs ? { chatTemplateKwargs: options.chatTemplateKwargs } : {}),
    },
  };
  // Chat turns and new grammars come seconds or minutes apart: their workers stay warm while
  // serving.
  using _templates = keepTemplateWorkersWarm();
  using _grammars = keepGrammarWorkerWarm();
  let server: GuardedServer;
  try {
    server = listen(options.bind, options, createApp(ctx));
  } catch (error) {
    await registry.close();
    throw error;
  }
  ctx.settings.policy = { ...ctx.settings.policy, boundHost: server.addr.hostname };
  const { hostname, port } = server.addr;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  console.log(`Shimmy listening on http://${host}:${port}`);
  if (options.ollamaBind) {
    try {
      const ollama = listenOllama(options.ollamaBind, options, ctx);
      server = joinServers([server, ollama]);
      console.log(`Ollama API on http://${options.ollamaBind}`);
    } catch (error) {
      await server.close();
      await registry.close();
      throw error;
    }
  }
  const listening = server;
  arrivals.watch((withinMs) => listening.requestsArriving(withinMs));
  const shutdown = shutdownSignal();
  try {
    for (const name of preload) (await registry.acquire(name)).release();
  } catch (error) {
    await stop(server, ctx, 0);
    throw error;
  }
  for (const entry of entries) {
    console.log(
      `  ${printable(entry.name).padEnd(28)} ${registry.state(entry.name).padEnd(9)} ` +
        `${entry.source}: ${printable(entry.path)}`,
    );
    const group = registry.replicas().get(entry.name);
    if (group && (group.plan.kind !== "cpu" || group.copies.length > 1)) {
      for (const line of describePlan(group.plan, group.primary.model.nLayer)) {
        console.log(`    ${line}`);
      }
    }
  }
  if (entries.length === 0) console.log(NO_MODELS_HELP);
  const signal = await shutdown;
  console.error(
    `${signal}: stopping (in-flight requests get ${options.shutdownGraceMs / 1000}s)`,
  );
  await stop(server, ctx, options.shutdownGraceMs);
  return 0;
}

/** What `serve` prints when it found no model at all. */
export const NO_MODELS_HELP = `  No models found. To get one and serve it:
    shimmy pull Qwen/Qwen2.5-0.5B-Instruct-GGUF      (Q4_K_M, about 490 MB)
    shimmy serve --model Qwen/Qwen2.5-0.5B-Instruct-GGUF
  Or serve a GGUF file you have: shimmy serve --model ./model.gguf
  Or a folder of them:           shimmy serve --model-dirs ./models
  "shimmy discover" shows where models are searched.`;

/**
 * Sorts the `--model` values: a missing file is an error that says so; a hub reference
 * already pulled becomes its file; one not pulled is left to pull once the server listens
 * (with `--allow-pull`; without, an error says how to get it).
 *
 * @param models `--model` values.
 * @param allowPull Whether to pull what is missing.
 * @returns Names and paths to discover, and references to pull.
 * @throws {ModelNotFoundError}
 */
export function localModels(
  models: readonly string[],
  allowPull: boolean,
): { local: string[]; toPull: string[] } {
  const local: string[] = [];
  const toPull: string[] = [];
  for (const model of models) {
    missingFileCheck(model);
    if (isFile(model) || !isPullable(model) || !model.includes("/")) {
      local.push(model);
      continue;
    }
    const pulled = findPulled(model);
    if (pulled) local.push(pulled.path);
    else if (allowPull) toPull.push(model);
    else notPulledCheck(model, "--allow-pull");
  }
  return { local, toPull };
}

/**
 * Refuses a `--default-model` that names no model found (a typo would make every request that
 * names none a 404), unless it is a hub reference that `--allow-pull` may fetch on first use.
 */
function checkDefaultModel(registry: ModelRegistry, options: ServeArgs): void {
  const name = options.defaultModel;
  if (!name || (options.allowPull && isPullable(name))) return;
  try {
    registry.resolve(name);
  } catch (error) {
    if (!(error instanceof ModelNotFoundError)) throw error;
    throw new UsageError(`--default-model ${name}: ${error.message}`);
  }
}

/** The registry's default model: `--default-model`, else the one `--model`. */
function defaultModelOption(
  options: ServeArgs,
  entries: readonly ModelEntry[],
  toPull: readonly string[],
) {
  if (options.defaultModel) return { defaultModel: options.defaultModel };
  if (options.models.length !== 1) return {};
  const only = toPull[0] ?? entries[0]?.name;
  return only ? { defaultModel: only } : {};
}

/**
 * Registry entries for hub references pulled on demand (`--allow-pull`). A plain URL is pulled
 * only when `--model` names it: one named by a request could reach any address the server can.
 */
function fetchMissing(pulls: ModelPulls, globals: GlobalFlags, toPull: readonly string[]) {
  return async (name: string): Promise<ModelEntry | undefined> => {
    const allowed = isHubReference(name) || toPull.includes(name);
    if (!allowed || !name.includes("/")) return undefined;
    const pulled = findPulled(name) ?? await pulls.pull(name);
    return entriesFrom(await discoverFor(globals, [pulled.path]), [pulled.path])[0];
  };
}

/** Logs pulls on the console: a line per file and every quarter of it. */
function pullLogger(): (model: string, progress: PullProgress) => void {
  const printer = pullProgressPrinter(false, false);
  return (model, progress) => {
    if (progress.status === "listing") console.error(`Pulling ${model}…`);
    printer.update(progress);
    if (progress.status === "done") console.error(`Pulled ${model}`);
  };
}

/** Exit statuses after a second signal: 128 plus the signal's number, as shells report them. */
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * Resolves with the name of the first SIGINT or SIGTERM. A second one (Ctrl-C again) ends the
 * process at once, without waiting for the grace period or the step under way.
 */
function shutdownSignal(): Promise<string> {
  let first: string | undefined;
  return new Promise<string>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      try {
        Deno.addSignalListener(sig, () => {
          if (first === undefined) {
            first = sig;
            resolve(sig);
            return;
          }
          console.error(`${sig} again: exiting now, in-flight requests are cut off`);
          exitNow(SIGNAL_EXIT[sig]);
        });
      } catch {
        // SIGTERM cannot be listened to on Windows
      }
    }
  });
}

/** Time the final frames and responses of cancelled streams get to reach their clients. */
const FLUSH_MS = 1000;

/**
 * Graceful shutdown that always finishes: new requests are refused and idle connections
 * closed; in-flight work (SSE, JSON, WebSocket) gets the grace period; what is left is then
 * cancelled, so each stream still ends with its final event or frame; last, every connection
 * (stalled uploads included) is closed and the models freed.
 */
async function stop(server: GuardedServer, ctx: ServerContext, graceMs: number): Promise<void> {
  ctx.draining = true;
  ctx.registry.refuseLoads(); // A load waiting for room ends now, with a 503.
  server.stopAccepting();
  server.closeIdle();
  if (!await ctx.activity.idle(graceMs)) {
    console.error(`Grace period over: cancelling ${ctx.activity.count} request(s)`);
  }
  const unfreed = await ctx.registry.close(FLUSH_MS);
  await ctx.activity.idle(FLUSH_MS);
  // A response counts as done once written to the guard; let the guard pass it on.
  const flushed = performance.now() + FLUSH_MS;
  while (server.connections() > 0 && performance.now() < flushed) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await server.close();
  if (unfreed.length > 0) console.error(`Left in use at exit: ${unfreed.join(", ")}`);
}

/** Folders whose adapter files `POST /api/lora` may name by path. */
/**
 * The `--slot-save-path` folder, made absolute.
 *
 * @throws {UsageError} when it is not an existing folder.
 */
async function slotSaveFolder(path: string): Promise<string> {
  const isFolder = await Deno.stat(path).then((info) => info.isDirectory, () => false);
  if (!isFolder) throw new UsageError(`--slot-save-path: ${path} is not a folder`);
  return resolve(path);
}

function adapterDirs(globals: GlobalFlags, models: readonly string[]): string[] {
  const dirs = globals.modelDirs ? splitPathList(globals.modelDirs) : [];
  return [...dirs, ...models.filter(isFile).map((m) => dirname(resolve(m)))];
}
