/**
 * `shimmy bench NAME [--prompt-tokens N] [--gen-tokens N] [--reps R] [--json]`: measures a
 * model's prompt processing and generation speed through the same engine `serve` uses (one
 * slot, greedy, no HTTP), like llama.cpp's `llama-bench` pp/tg tests.
 *
 * @module
 */

import { basename } from "node:path";
import { loadProgressPrinter } from "./progress.ts";
import { LoadedModel } from "../engine/loaded_model.ts";
import type { GlobalFlags } from "./global_flags.ts";
import { findModelPath } from "./model_lookup.ts";
import { UsageError } from "./usage_error.ts";
import { median } from "../util/median.ts";
import {
  gpuLayersFlag,
  KV_CACHE_FLAGS,
  KV_CACHE_FLAGS_USAGE,
  kvCacheFlags,
  kvCacheTypes,
  parseFlags,
  SPLIT_FLAGS,
  SPLIT_FLAGS_USAGE,
  splitFlags,
  switchFlag,
  threadsFlag,
} from "./flags.ts";

/** Usage text of `shimmy bench`. */
export const BENCH_USAGE = `Usage: shimmy bench NAME [options]

Measures prompt processing (pp) and generation (tg) speed of a model through Shimmy's engine.

Options:
  --prompt-tokens N     Prompt length for pp (default 512)
  --gen-tokens N        Tokens generated for tg (default 128; --max-tokens too)
  --reps R              Repetitions; medians are reported (default 3)
  --threads N           CPU threads (default: one per physical core; at most 4 with every
                        layer on a GPU)
  --n-gpu-layers N|all  Layers to offload (default: all on a GPU)
${SPLIT_FLAGS_USAGE}
  --gpu-backend B       auto | cpu | cuda | vulkan | metal
  --device-sampling M   auto | on | off: sample inside the decode graph (default auto: on a GPU)
  --flash-attn M        auto | on | off: fused attention (default auto: on the CPU, the faster
                        of the two kernels on this machine, timed once at load)
${KV_CACHE_FLAGS_USAGE}
  --no-decode-thread    Decode through the event loop as a step shared by several streams
                        would, not on the thread that serves a lone stream
  --json                Print one JSON object

Examples:
  shimmy bench ./models/llama-1b.gguf
  shimmy bench phi3 --gpu-backend cuda --prompt-tokens 1024 --json`;

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer`);
  return n;
}

/**
 * Runs `shimmy bench`.
 *
 * @param args Arguments after the command name.
 * @param globals Global flags.
 * @returns The exit code.
 */
export async function benchMain(args: string[], globals: GlobalFlags): Promise<number> {
  const parsed = parseFlags(args, {
    "prompt-tokens": { type: "string" },
    "gen-tokens": { type: "string" },
    "max-tokens": { type: "string" },
    reps: { type: "string" },
    threads: { type: "string" },
    "n-gpu-layers": { type: "string" },
    ...SPLIT_FLAGS,
    "device-sampling": { type: "string" },
    "flash-attn": { type: "string" },
    ...KV_CACHE_FLAGS,
    "no-decode-thread": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  }, 1);
  const v = parsed.values;
  if (v.help) {
    console.log(BENCH_USAGE);
    return 0;
  }
  const name = parsed.positionals[0];
  if (!name) throw new UsageError("Name the model to benchmark: shimmy bench NAME");
  const promptTokens = positive("prompt-tokens", v["prompt-tokens"], 512);
  if (v["gen-tokens"] !== undefined && v["max-tokens"] !== undefined) {
    throw new UsageError("--max-tokens is another name for --gen-tokens; give one of them");
  }
  // `--max-tokens`: the original Shimmy's name for it.
  const genTokens = positive("gen-tokens", v["gen-tokens"] ?? v["max-tokens"], 128);
  const reps = positive("reps", v.reps, 3);
  const nGpuLayers = gpuLayersFlag(v["n-gpu-layers"]);
  const split = splitFlags(v);
  const kvTypes = kvCacheTypes(kvCacheFlags(v), globals);
  const path = await findModelPath(name, globals);
  const progress = loadProgressPrinter(path);
  await using loaded = await LoadedModel.open({
    path,
    onProgress: progress.update,
    gpuBackend: globals.gpuBackend ?? "auto",
    verbose: globals.verbose,
    ctxSize: promptTokens + genTokens + 8,
    batchSize: Math.max(512, promptTokens),
    ...(v.threads ? { threads: threadsFlag(v.threads) } : {}),
    ...(nGpuLayers !== undefined ? { nGpuLayers } : {}),
    ...split,
    deviceSampling: switchFlag("--device-sampling", v["device-sampling"]),
    flashAttn: switchFlag("--flash-attn", v["flash-attn"]),
    ...(kvTypes ? { kvCacheTypes: kvTypes } : {}),
    decodeThread: !v["no-decode-thread"],
  });
  progress.done();
  // Progress on stderr, so stdout keeps only the report (or the JSON).
  console.error(
    `Loaded ${basename(path)} in ${(loaded.model.loadMs / 1000).toFixed(1)}s; warm-up run…`,
  );
  const vocab = loaded.model.nVocab;
  const pp: number[] = [];
  const tg: number[] = [];
  for (let rep = 0; rep <= reps; rep++) {
    // Distinct random prompts, so no prefix is reused; rep 0 is a warm-up.
    const prompt = Int32Array.from(
      { length: promptTokens },
      () => 1 + Math.floor(Math.random() * (vocab - 1)),
    );
    const generation = loaded.scheduler.submit({
      prompt,
      maxTokens: genTokens,
      ignoreEos: true,
      sampling: { temperature: 0 },
    });
    for await (const _ of generation) { /* drain */ }
    const result = await generation.result;
    if (rep === 0) continue;
    pp.push(result.timings.promptPerSecond);
    tg.push(result.timings.generatePerSecond);
    console.error(
      `Run ${rep}/${reps}: pp ${result.timings.promptPerSecond.toFixed(1)} tok/s, ` +
        `tg ${result.timings.generatePerSecond.toFixed(1)} tok/s`,
    );
  }
  await loaded.context.idle(); // the last run on the decode thread reports its time as it halts
  const stats = loaded.scheduler.stats();
  const perStep = (ms: number) => Math.round((ms / Math.max(1, stats.steps)) * 1000);
  const perCall = (ms: number, calls: number) => Math.round((ms / Math.max(1, calls)) * 1000);
  const decodesOnWorker = loaded.context.decodeCount - loaded.context.decodesOnEventLoop;
  const report = {
    model: path,
    description: loaded.model.description,
    backend: loaded.devices.backend,
    offload: loaded.model.offload,
    prompt_tokens: promptTokens,
    gen_tokens: genTokens,
    reps,
    device_sampling: loaded.scheduler.stats().deviceSampledRequests > 0,
    pp_tokens_per_second: Math.round(median(pp) * 10) / 10,
    tg_tokens_per_second: Math.round(median(tg) * 10) / 10,
    steps: stats.steps,
    graphs_reused: loaded.context.perf().graphsReused,
    decodes_on_event_loop: loaded.context.decodesOnEventLoop,
    decodes_on_worker: decodesOnWorker,
    device_wait_turns: loaded.context.deviceWaitTurns,
    step_us: {
      decode: perStep(stats.time.decodeMs),
      llama_decode: perStep(stats.time.llamaDecodeMs),
      llama_decode_on_loop_call: perCall(
        stats.time.llamaDecodeOnLoopMs,
        loaded.context.decodesOnEventLoop,
      ),
      llama_decode_elsewhere_call: perCall(
        stats.time.llamaDecodeMs - stats.time.llamaDecodeOnLoopMs,
        decodesOnWorker,
      ),
      device_wait: perStep(stats.time.deviceWaitMs),
      sample: perStep(stats.time.sampleMs),
      host: perStep(stats.time.hostMs),
    },
  };
  if (v.json) {
    console.log(JSON.stringify(report));
  } else {
    console.log(`${loaded.model.description} on ${report.backend} (${path})`);
    console.log(`pp${promptTokens}: ${report.pp_tokens_per_second} tok/s`);
    console.log(
      `tg${genTokens}: ${report.tg_tokens_per_second} tok/s  (median of ${reps}, sampling on ` +
        `${report.device_sampling ? "the device" : "the CPU"})`,
    );
    const { decode, llama_decode, device_wait, sample, host } = report.step_us;
    console.log(
      `per step (${stats.steps} steps, ${report.graphs_reused} reusing the last graph, ` +
        `${report.decodes_on_event_loop} on the event loop, ` +
        `${report.device_wait_turns} loop turns waiting for the device): ` +
        `decode ${decode} µs (llama_decode ${llama_decode}, device ${device_wait}, ` +
        `${restOfDecode(decode - llama_decode - device_wait)}), sample ${sample} µs, ` +
        `other host work ${host} µs`,
    );
    console.log(
      `llama_decode a call: ${report.step_us.llama_decode_on_loop_call} µs on the event loop ` +
        `(${report.decodes_on_event_loop} calls), ${report.step_us.llama_decode_elsewhere_call} ` +
        `µs on a worker thread (${report.decodes_on_worker})`,
    );
  }
  return 0;
}

/**
 * The part of a step's decode outside `llama_decode` and the device wait; on the decode thread a
 * step's decode overlaps the event loop's work on the step before, so the loop's wait can be the
 * shorter.
 */
function restOfDecode(micros: number): string {
  return micros >= 0 ? `rest ${micros}` : `${-micros} decoded ahead of the event loop's wait`;
}
