/**
 * How often a burst's first step starts without the rest of it: sends a few lone requests, then
 * bursts of `--burst` streamed requests one after another (`--pause` ms apart, each burst after
 * the last one's first tokens), to Shimmy and llama-server in turn, and counts the bursts whose
 * first request had its first token well before the others (under 0.6× the second one's TTFT):
 * those whose first step started with it alone, the others waiting for that step. Prints per
 * server and round the split bursts, the TTFT p50 over every request, and the p50 of the bursts'
 * own medians. With `--lone-between N`, N lone requests go before each burst, one after another
 * (the burst then follows lone traffic, as a burst after a quiet spell does), and their TTFT p50
 * is printed too. With `--fresh-connections`, each burst and the lone requests before it go
 * through a client of their own: the burst opens new connections, all but the one a lone request
 * left open (as a benchmark's first burst after a level of lone requests does).
 *
 *   deno run -A bench/burst_split.ts [--model PATH] [--burst 32] [--bursts 30] [--lone 3]
 *     [--pause 10] [--rounds 1] [--lone-between 0] [--fresh-connections] [--threads N]
 *     [--lib-dir DIR] [--llama-server PATH]
 *
 * The tiny model on a CPU stands in for a GPU: its first steps are too short for the scheduler's
 * linger (see `src/engine/burst_linger.ts`).
 *
 * @module
 */

import { join, resolve } from "node:path";
import { fixtureModel, REPO_ROOT } from "../tests/fixtures/models.ts";
import { readBenchModel } from "./lib/model_info.ts";
import { PromptSequence } from "./lib/prompts.ts";
import { type ServerName, ServerProcess, SERVERS } from "./lib/server_process.ts";
import { streamCompletion, type StreamOptions } from "./lib/sse_client.ts";
import { burstSplit, median } from "./lib/stats.ts";
import { benchArgs } from "./lib/args.ts";

/** Bursts sent before counting, so that both servers have warm graphs and a history of bursts. */
const WARMUP_BURSTS = 2;
/** Tokens each request generates: the first is measured, the rest end the stream. */
const TOKENS = 3;

const { values } = benchArgs({
  options: {
    model: { type: "string" },
    burst: { type: "string", default: "32" },
    bursts: { type: "string", default: "30" },
    lone: { type: "string", default: "3" },
    "lone-between": { type: "string", default: "0" },
    "fresh-connections": { type: "boolean", default: false },
    pause: { type: "string", default: "10" },
    rounds: { type: "string", default: "1" },
    threads: { type: "string", default: String(navigator.hardwareConcurrency || 1) },
    "lib-dir": { type: "string", default: join(REPO_ROOT, "lib/reference") },
    "llama-server": { type: "string", default: join(REPO_ROOT, "lib/reference/bin/llama-server") },
  },
}, import.meta.url);
const model = await readBenchModel(values.model ?? await fixtureModel("tiny-f32"));
const burst = Number(values.burst);
if (!Number.isInteger(burst) || burst < 2) {
  throw new Error(`--burst must be 2 or more, to tell a split burst: got ${values.burst}`);
}
const settings = {
  slots: Math.max(8, burst),
  ctxSize: 1024,
  threads: Number(values.threads),
  libDir: resolve(values["lib-dir"]),
  llamaServer: resolve(values["llama-server"]),
};

/** What one server did with `count` bursts. */
interface Splits {
  split: number;
  ttfts: number[];
  burstMedians: number[];
  /** First tokens of the lone requests sent between bursts (`--lone-between`). */
  loneTtfts: number[];
}

async function measure(name: ServerName, count: number): Promise<Splits> {
  const server = await ServerProcess.start(name, settings, model);
  const prompts = new PromptSequence();
  const measured: Splits = { split: 0, ttfts: [], burstMedians: [], loneTtfts: [] };
  try {
    for (let i = 0; i < Number(values.lone); i++) {
      await streamCompletion(server.url, prompts.next(), TOKENS);
    }
    for (let i = 0; i < WARMUP_BURSTS + count; i++) {
      using connections = new BurstConnections(values["fresh-connections"]);
      const options = connections.options();
      await sleep(Number(values.pause));
      for (let j = 0; j < Number(values["lone-between"]); j++) {
        const lone = await streamCompletion(server.url, prompts.next(), TOKENS, options);
        if (i >= WARMUP_BURSTS) measured.loneTtfts.push(lone.firstAt - lone.sentAt);
        await sleep(Number(values.pause));
      }
      const results = await Promise.all(
        Array.from(
          { length: burst },
          () => streamCompletion(server.url, prompts.next(), TOKENS, options),
        ),
      );
      if (i < WARMUP_BURSTS) continue;
      const ttfts = results.map((r) => r.firstAt - r.sentAt).sort((a, b) => a - b);
      if (burstSplit(ttfts)) measured.split++;
      measured.ttfts.push(...ttfts);
      measured.burstMedians.push(median(ttfts));
    }
    return measured;
  } finally {
    await server.stop();
  }
}

/** The connections of one burst: `fetch`'s shared pool, or a client of its own (closed after). */
class BurstConnections {
  readonly #client: Deno.HttpClient | undefined;

  constructor(fresh: boolean) {
    this.#client = fresh ? Deno.createHttpClient({}) : undefined;
  }

  options(): StreamOptions {
    return this.#client ? { client: this.#client } : {};
  }

  [Symbol.dispose](): void {
    this.#client?.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((wake) => setTimeout(wake, ms));
}

console.log(`${model.path}, ${values.bursts} bursts of ${burst} per round`);
console.log("round  server        split  TTFT p50  burst median p50  lone TTFT p50");
for (let round = 1; round <= Number(values.rounds); round++) {
  for (const name of SERVERS) {
    const { split, ttfts, burstMedians, loneTtfts } = await measure(name, Number(values.bursts));
    const lone = loneTtfts.length > 0 ? median(loneTtfts).toFixed(2) : "-";
    console.log(
      `${String(round).padStart(5)}  ${name.padEnd(12)} ${String(split).padStart(6)}  ` +
        `${median(ttfts).toFixed(2).padStart(8)}  ${median(burstMedians).toFixed(2).padStart(16)}` +
        `  ${lone.padStart(13)}`,
    );
  }
}
