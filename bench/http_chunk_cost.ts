/**
 * What one streamed chunk costs the event loop's thread (Linux), with no model: a server sends
 * `--chunks` SSE events of a completion chunk's size, one every `--interval-ms` from a timer, to
 * a client in another process, and reads its own main thread's CPU time from `/proc`. Three ways,
 * interleaved over `--rounds`:
 *
 * - `wake`: the timer fires and sends nothing (what waking the event loop costs by itself),
 * - `serve`: each event goes out through `Deno.serve`'s response stream,
 * - `guard`: the same through Shimmy's connection guard (`src/server/connection_guard.ts`),
 * - `pushed`: through the guard from a body made by `streamBody` (`src/server/stream_body.ts`),
 *   as Shimmy's streamed answers are: the guard takes each event as it is sent, unread.
 *
 * The differences are what Deno's HTTP stack and the guard add per token of a streamed answer;
 * `bench/thread_placement.ts` measures the whole event loop of a served stream.
 *
 *   deno run -A bench/http_chunk_cost.ts [--chunks 1000] [--interval-ms 5] [--rounds 3]
 *
 * @module
 */

import { serveGuarded } from "../src/server/connection_guard.ts";
import { type SendChunk, streamBody } from "../src/server/stream_body.ts";
import { threadCpuNs } from "./lib/thread_stat.ts";
import { benchArgs } from "./lib/args.ts";

const WAYS = ["wake", "serve", "guard", "pushed"] as const;
type Way = typeof WAYS[number];

/** A completion chunk as Shimmy streams it, framed as one SSE event. */
const EVENT = new TextEncoder().encode(
  `data: ${
    JSON.stringify({
      id: "cmpl-0123456789abcdef",
      object: "text_completion",
      created: 1764720000,
      model: "bench-125m",
      choices: [{ text: " word", index: 0, logprobs: null, finish_reason: null }],
    })
  }\n\n`,
);

/** The client: reads the whole stream and throws the bytes away. */
const CLIENT = `
const response = await fetch(Deno.args[0]);
for await (const _ of response.body ?? []) { /* drained */ }
`;

/** CPU time of this process's main thread in milliseconds. */
function mainThreadCpuMs(): number {
  return threadCpuNs(Deno.pid, String(Deno.pid)) / 1e6;
}

/**
 * Serves one stream the given way to a client process.
 *
 * @returns The main thread's CPU time per chunk, in microseconds.
 */
async function measure(way: Way, chunks: number, intervalMs: number): Promise<number> {
  let cpuAtStart = 0;
  let streamed!: () => void;
  const done = new Promise<void>((resolve) => streamed = resolve);
  const handler = () => {
    cpuAtStart = mainThreadCpuMs();
    const headers = { "content-type": "text/event-stream" };
    /** Sends the events, one a tick; resolves after the last. */
    const produce = (send: SendChunk) =>
      new Promise<void>((resolve) => {
        let sent = 0;
        const tick = () => {
          if (way !== "wake") send(EVENT);
          if (++sent < chunks) return void setTimeout(tick, intervalMs);
          resolve();
          streamed();
        };
        tick();
      });
    if (way === "pushed") return streamBody(produce, new AbortController(), headers, () => {});
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        await produce((bytes) => controller.enqueue(bytes));
        controller.close();
      },
    });
    return new Response(body, { headers });
  };
  const server = way === "guard" || way === "pushed"
    ? serveGuarded({ port: 0 }, handler)
    : Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const url = `http://127.0.0.1:${server.addr.port}/`;
  const client = new Deno.Command(Deno.execPath(), {
    args: ["eval", CLIENT, url],
    stdout: "null",
  }).spawn();
  await done;
  const cpuMs = mainThreadCpuMs() - cpuAtStart;
  await client.status;
  if ("close" in server) await server.close();
  else await server.shutdown();
  return cpuMs * 1000 / chunks;
}

async function main(): Promise<void> {
  if (Deno.build.os !== "linux") throw new Error("This probe reads /proc: Linux only");
  const { values } = benchArgs({
    args: Deno.args,
    options: {
      chunks: { type: "string", default: "1000" },
      "interval-ms": { type: "string", default: "5" },
      rounds: { type: "string", default: "3" },
    },
  }, import.meta.url);
  const chunks = Number(values.chunks);
  const intervalMs = Number(values["interval-ms"]);
  const rounds = Number(values.rounds);
  const results: Record<Way, number[]> = { wake: [], serve: [], guard: [], pushed: [] };
  for (let round = 1; round <= rounds; round++) {
    const line: string[] = [];
    for (const way of WAYS) {
      const micros = await measure(way, chunks, intervalMs);
      results[way].push(micros);
      line.push(`${way} ${micros.toFixed(0)}`);
    }
    console.log(`round ${round}: main-thread CPU µs per chunk: ${line.join(", ")}`);
  }
  const median = (values: number[]) => values.toSorted((a, b) => a - b)[values.length >> 1] ?? 0;
  const [wake, serve, guard, pushed] = [
    median(results.wake),
    median(results.serve),
    median(results.guard),
    median(results.pushed),
  ];
  console.log(
    `medians: a wake ${wake.toFixed(0)} µs; Deno.serve adds ${(serve - wake).toFixed(0)} µs a ` +
      `chunk, the guard ${(guard - serve).toFixed(0)} µs more, pushed through the guard ` +
      `${(pushed - guard).toFixed(0)} µs against the guard reading the stream`,
  );
}

if (import.meta.main) await main();
