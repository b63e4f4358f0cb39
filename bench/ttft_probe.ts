/**
 * First tokens, many times over, where `serve_bench.ts` sees one burst per level and round:
 * sends lone streamed requests (or bursts of `--burst` at once), 10 ms apart, to Shimmy and
 * llama-server in turn (same model, same library build, the benchmark's prompts), and prints per
 * server and round the medians of the TTFT, of each server's own time from starting the prompt to
 * its first token (`timings.prompt_ms`), and of their difference: the way in and out (reading,
 * parsing, tokenizing, queueing, writing) and, in a burst, the wait for the others' prompts.
 *
 *   deno run -A bench/ttft_probe.ts [--model PATH] [--burst 1] [--requests 50] [--rounds 2]
 *     [--prompt-tokens N] [--threads N] [--lib-dir DIR] [--llama-server PATH]
 *
 * `--prompt-tokens N` sends prompts of about N tokens instead of the ~37-token default (the slots
 * grow to hold them).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { fixtureModel, REPO_ROOT } from "../tests/fixtures/models.ts";
import { readBenchModel } from "./lib/model_info.ts";
import { PROMPT_ALLOWANCE, PromptSequence } from "./lib/prompts.ts";
import { type ServerName, ServerProcess, SERVERS } from "./lib/server_process.ts";
import { streamCompletion } from "./lib/sse_client.ts";
import { median } from "./lib/stats.ts";

/** Bursts sent before measuring, so both servers have their graphs and caches warm. */
const WARMUP_BURSTS = 5;
/** Pause between bursts, so each arrives at an idle server. */
const PAUSE_MS = 10;
/** Tokens each request generates: the first is measured, the rest end the stream. */
const TOKENS = 3;

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    burst: { type: "string", default: "1" },
    requests: { type: "string", default: "50" },
    rounds: { type: "string", default: "2" },
    "prompt-tokens": { type: "string" },
    threads: { type: "string", default: String(navigator.hardwareConcurrency || 1) },
    "lib-dir": { type: "string", default: join(REPO_ROOT, "lib/reference") },
    "llama-server": { type: "string", default: join(REPO_ROOT, "lib/reference/bin/llama-server") },
  },
});
const model = await readBenchModel(values.model ?? await fixtureModel("bench-125m"));
const burst = Number(values.burst);
const promptTokens = values["prompt-tokens"] === undefined
  ? undefined
  : Number(values["prompt-tokens"]);
const settings = {
  slots: Math.max(8, burst),
  ctxSize: Math.max(1024, (promptTokens ?? 0) + TOKENS + PROMPT_ALLOWANCE),
  threads: Number(values.threads),
  libDir: resolve(values["lib-dir"]),
  llamaServer: resolve(values["llama-server"]),
};

/** TTFT, the server's prompt time, and their difference, for each request of `count` bursts. */
async function measure(name: ServerName, count: number): Promise<number[][]> {
  const server = await ServerProcess.start(name, settings, model);
  const prompts = new PromptSequence(promptTokens);
  try {
    const rows: number[][] = [];
    for (let i = 0; i < WARMUP_BURSTS + count; i++) {
      const texts = Array.from({ length: burst }, () => prompts.next());
      const results = await Promise.all(
        texts.map((text) => streamCompletion(server.url, text, TOKENS)),
      );
      for (const result of i >= WARMUP_BURSTS ? results : []) {
        const ttft = result.firstAt - result.sentAt;
        rows.push([ttft, result.serverPromptMs, ttft - result.serverPromptMs]);
      }
      await new Promise((wake) => setTimeout(wake, PAUSE_MS));
    }
    return rows;
  } finally {
    await server.stop();
  }
}

const ms = (value: number) => value.toFixed(2).padStart(7);
const what = burst === 1 ? "lone requests" : `bursts of ${burst}`;
console.log(`${model.path}, ${values.requests} ${what} per round, medians in ms`);
console.log("round  server         TTFT   prompt  way in and out");
for (let round = 1; round <= Number(values.rounds); round++) {
  for (const name of SERVERS) {
    const rows = await measure(name, Number(values.requests));
    const column = (k: number) => median(rows.map((row) => row[k] as number));
    console.log(
      `${String(round).padStart(5)}  ${name.padEnd(12)} ${ms(column(0))} ${ms(column(1))} ` +
        `${ms(column(2))}`,
    );
  }
}
