/**
 * The first token of lone requests, split into each server's own time from starting the prompt
 * to its first token (`timings.prompt_ms`) and the way in and out around it (reading, parsing,
 * tokenizing, queueing, writing): streams short completions one at a time, 10 ms apart, against
 * Shimmy and llama-server in turn (same model, same library build), and prints the medians.
 *
 *   deno run -A bench/lone_ttft.ts [--model PATH] [--requests 50] [--rounds 2] [--threads N]
 *     [--lib-dir DIR] [--llama-server PATH]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { fixtureModel, REPO_ROOT } from "../tests/fixtures/models.ts";
import { readBenchModel } from "./lib/model_info.ts";
import { type ServerName, ServerProcess, SERVERS } from "./lib/server_process.ts";
import { streamCompletion } from "./lib/sse_client.ts";
import { median } from "./lib/stats.ts";

/** Requests sent before measuring, so both servers have their graphs and caches warm. */
const WARMUP_REQUESTS = 5;
/** Pause between requests, so each arrives at an idle server. */
const PAUSE_MS = 10;

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    requests: { type: "string", default: "50" },
    rounds: { type: "string", default: "2" },
    threads: { type: "string", default: String(navigator.hardwareConcurrency || 1) },
    "lib-dir": { type: "string", default: join(REPO_ROOT, "lib/reference") },
    "llama-server": { type: "string", default: join(REPO_ROOT, "lib/reference/bin/llama-server") },
  },
});
const model = await readBenchModel(values.model ?? await fixtureModel("bench-125m"));
const settings = {
  slots: 8,
  ctxSize: 1024,
  threads: Number(values.threads),
  libDir: resolve(values["lib-dir"]),
  llamaServer: resolve(values["llama-server"]),
};

/** TTFT, the server's prompt time, and their difference, for `count` lone requests. */
async function measure(name: ServerName, count: number): Promise<number[][]> {
  const server = await ServerProcess.start(name, settings, model);
  try {
    const rows: number[][] = [];
    for (let i = 0; i < WARMUP_REQUESTS + count; i++) {
      const prompt = `${i} The quick brown fox jumps over the lazy dog near the river bank`;
      const result = await streamCompletion(server.url, prompt, 3);
      const ttft = result.firstAt - result.sentAt;
      if (i >= WARMUP_REQUESTS) {
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
console.log(`${model.path}, ${values.requests} lone requests per round, medians in ms`);
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
