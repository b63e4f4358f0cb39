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
 *     [--decode-thread on|off] [--flash-attn on|off|auto]
 *
 * `--prompt-tokens N` sends prompts of about N tokens instead of the ~37-token default (the slots
 * grow to hold them).
 *
 * `--decode-thread off` starts Shimmy with `--no-decode-thread` (its lone streams' steps through the
 * event loop), for comparisons. `--flash-attn` gives both servers that attention kernel choice
 * (unset, each its own).
 *
 * `--during-stream` measures requests that arrive while another stream generates (a second user
 * of a chat server): a long stream of {@link LONG_TOKENS} tokens starts, and
 * {@link NEWCOMERS_PER_STREAM} requests follow it one by one, {@link NEWCOMER_PAUSE_MS} apart. It
 * also prints that stream's decode rate and the median of its longest gaps, one per newcomer: how
 * long each newcomer's prompt held it up.
 *
 * @module
 */

import { benchArgs } from "./lib/args.ts";
import { join, resolve } from "node:path";
import { fixtureModel, REPO_ROOT } from "../tests/fixtures/models.ts";
import { readBenchModel } from "./lib/model_info.ts";
import { PROMPT_ALLOWANCE, PromptSequence } from "./lib/prompts.ts";
import { flashAttnFlag, type ServerName, ServerProcess, SERVERS } from "./lib/server_process.ts";
import { streamCompletion, type StreamResult, tokenGaps } from "./lib/sse_client.ts";
import { median, percentile } from "./lib/stats.ts";

/** Bursts sent before measuring, so both servers have their graphs and caches warm. */
const WARMUP_BURSTS = 5;
/** Pause between bursts, so each arrives at an idle server. */
const PAUSE_MS = 10;
/** Tokens each request generates: the first is measured, the rest end the stream. */
const TOKENS = 3;
/** With `--during-stream`: tokens of the stream the newcomers arrive beside. */
const LONG_TOKENS = 300;
/** With `--during-stream`: requests sent one after another while one long stream generates. */
const NEWCOMERS_PER_STREAM = 3;
/** With `--during-stream`: pause after the long stream's first token and between newcomers. */
const NEWCOMER_PAUSE_MS = 100;

const { values } = benchArgs({
  options: {
    model: { type: "string" },
    burst: { type: "string", default: "1" },
    requests: { type: "string", default: "50" },
    rounds: { type: "string", default: "2" },
    "prompt-tokens": { type: "string" },
    "during-stream": { type: "boolean", default: false },
    "decode-thread": { type: "string", default: "on" },
    "flash-attn": { type: "string" },
    threads: { type: "string", default: String(navigator.hardwareConcurrency || 1) },
    "lib-dir": { type: "string", default: join(REPO_ROOT, "lib/reference") },
    "llama-server": { type: "string", default: join(REPO_ROOT, "lib/reference/bin/llama-server") },
  },
}, import.meta.url);
const model = await readBenchModel(values.model ?? await fixtureModel("bench-125m"));
const burst = Number(values.burst);
const promptTokens = values["prompt-tokens"] === undefined
  ? undefined
  : Number(values["prompt-tokens"]);
const duringStream = values["during-stream"];
if (duringStream && burst !== 1) throw new Error("--during-stream sends requests one at a time");
const settings = {
  slots: Math.max(8, burst),
  ctxSize: Math.max(
    1024,
    (promptTokens ?? 0) + (duringStream ? LONG_TOKENS : TOKENS) + PROMPT_ALLOWANCE,
  ),
  threads: Number(values.threads),
  libDir: resolve(values["lib-dir"]),
  llamaServer: resolve(values["llama-server"]),
  decodeThread: values["decode-thread"] !== "off",
  flashAttn: flashAttnFlag(values["flash-attn"]),
};

/** A request's TTFT, the server's prompt time, and their difference. */
function row(result: StreamResult): number[] {
  const ttft = result.firstAt - result.sentAt;
  return [ttft, result.serverPromptMs, ttft - result.serverPromptMs];
}

/** What `--during-stream` measured on one server. */
interface Measured {
  /** {@link row} of each newcomer (or of each request of a burst). */
  rows: number[][];
  /** The long streams' decode rates, tok/s. */
  rates: number[];
  /** The long streams' longest gaps, one per newcomer, ms. */
  stalls: number[];
}

/** TTFT, the server's prompt time, and their difference, for each request of `count` bursts. */
async function measure(name: ServerName, count: number): Promise<Measured> {
  const server = await ServerProcess.start(name, settings, model);
  const prompts = new PromptSequence(promptTokens);
  try {
    if (duringStream) return await newcomers(server.url, prompts, count);
    const rows: number[][] = [];
    for (let i = 0; i < WARMUP_BURSTS + count; i++) {
      const texts = Array.from({ length: burst }, () => prompts.next());
      const results = await Promise.all(
        texts.map((text) => streamCompletion(server.url, text, TOKENS)),
      );
      for (const result of i >= WARMUP_BURSTS ? results : []) rows.push(row(result));
      await sleep(PAUSE_MS);
    }
    return { rows, rates: [], stalls: [] };
  } finally {
    await server.stop();
  }
}

/** `--during-stream`: `count` requests, a few beside each long stream (after one warm-up stream). */
async function newcomers(url: string, prompts: PromptSequence, count: number): Promise<Measured> {
  const measured: Measured = { rows: [], rates: [], stalls: [] };
  const streams = 1 + Math.ceil(count / NEWCOMERS_PER_STREAM);
  for (let i = 0; i < streams; i++) {
    let started = () => {};
    const firstToken = new Promise<void>((resolve) => (started = resolve));
    const long = streamCompletion(url, prompts.next(), LONG_TOKENS, { onText: () => started() });
    await firstToken;
    const rows: number[][] = [];
    for (let k = 0; k < NEWCOMERS_PER_STREAM; k++) {
      await sleep(NEWCOMER_PAUSE_MS);
      rows.push(row(await streamCompletion(url, prompts.next(), TOKENS)));
    }
    const stream = await long;
    if (i === 0) continue; // warm-up
    measured.rows.push(...rows);
    measured.rates.push((stream.textAt.length - 1) / ((stream.lastAt - stream.firstAt) / 1000));
    const gaps = tokenGaps(stream).sort((a, b) => b - a);
    measured.stalls.push(...gaps.slice(0, NEWCOMERS_PER_STREAM));
  }
  return measured;
}

function sleep(ms: number): Promise<void> {
  return new Promise((wake) => setTimeout(wake, ms));
}

const ms = (value: number) => value.toFixed(2).padStart(7);
const what = duringStream
  ? `requests arriving during a ${LONG_TOKENS}-token stream`
  : burst === 1
  ? "lone requests"
  : `bursts of ${burst}`;
console.log(`${model.path}, ${values.requests} ${what} per round, medians in ms`);
console.log(
  "round  server         TTFT   prompt  way in and out" +
    (duringStream ? "  TTFT p90  stream tok/s  stream's stall" : ""),
);
for (let round = 1; round <= Number(values.rounds); round++) {
  for (const name of SERVERS) {
    const { rows, rates, stalls } = await measure(name, Number(values.requests));
    const column = (k: number) => median(rows.map((row) => row[k] as number));
    const stream = duringStream
      ? `  ${ms(percentile(rows.map((row) => row[0] as number), 90))}` +
        `  ${median(rates).toFixed(1).padStart(12)}  ${ms(median(stalls)).padStart(14)}`
      : "";
    console.log(
      `${String(round).padStart(5)}  ${name.padEnd(12)} ${ms(column(0))} ${ms(column(1))} ` +
        `${ms(column(2))}${stream}`,
    );
  }
}
