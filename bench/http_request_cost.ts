/**
 * What one short request costs the server process (Linux), with no model: a client in another
 * process sends `--requests` POSTs of a completion request's size over 8 keep-alive connections,
 * and the handler parses the JSON body and answers a small JSON object. Two ways, alternating over
 * `--rounds`:
 *
 * - `serve`: `Deno.serve` directly,
 * - `guard`: Shimmy's connection guard (`src/server/connection_guard.ts`), which serves such
 *   requests itself (`src/server/http1_serve.ts`).
 *
 * It prints the CPU time of the whole server process and of its main thread per request, and the
 * requests per second. `bench/http_chunk_cost.ts` measures a streamed chunk the same way.
 *
 *   deno run -A bench/http_request_cost.ts [--requests 4000] [--rounds 3]
 *
 * @module
 */

import { serveGuarded } from "../src/server/connection_guard.ts";
import type { ServedRequest } from "../src/server/served_request.ts";
import { threadSample, TICKS_PER_SECOND } from "./lib/thread_stat.ts";
import { benchArgs } from "./lib/args.ts";

const WAYS = ["serve", "guard"] as const;
type Way = typeof WAYS[number];

/** The client: 8 connections, each sending its share of the requests one after another. */
const CLIENT = `
const [url, total] = [Deno.args[0], Number(Deno.args[1])];
const body = JSON.stringify({ model: "bench", prompt: "x".repeat(200), max_tokens: 16 });
await Promise.all(Array.from({ length: 8 }, async () => {
  for (let i = 0; i < total / 8; i++) {
    const response = await fetch(url, {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
    });
    await response.text();
  }
}));
`;

/** CPU time of this process, all threads, in ms (10 ms resolution). */
function processCpuMs(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(") ") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 1000 / TICKS_PER_SECOND;
}

/** CPU time of this process's main thread in ms. */
function mainThreadCpuMs(): number {
  return threadSample(Deno.pid, String(Deno.pid)).ticks * 1000 / TICKS_PER_SECOND;
}

/** One way's figures: CPU µs per request (process, main thread) and requests per second. */
interface Cost {
  processMicros: number;
  mainMicros: number;
  perSecond: number;
}

/** Serves `requests` requests the given way to a client process. */
async function measure(way: Way, requests: number): Promise<Cost> {
  const handler = async (request: ServedRequest) => {
    const body = JSON.parse(await request.text());
    return Response.json({ id: "cmpl-0123456789abcdef", model: body.model, choices: [] });
  };
  const server = way === "guard"
    ? serveGuarded({ port: 0 }, handler)
    : Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const url = `http://127.0.0.1:${server.addr.port}/v1/completions`;
  const [process, main, start] = [processCpuMs(), mainThreadCpuMs(), performance.now()];
  const status = await new Deno.Command(Deno.execPath(), {
    args: ["eval", CLIENT, url, String(requests)],
  }).output();
  if (!status.success) throw new Error(new TextDecoder().decode(status.stderr));
  const cost = {
    processMicros: (processCpuMs() - process) * 1000 / requests,
    mainMicros: (mainThreadCpuMs() - main) * 1000 / requests,
    perSecond: requests / ((performance.now() - start) / 1000),
  };
  if ("close" in server) await server.close();
  else await server.shutdown();
  return cost;
}

async function main(): Promise<void> {
  if (Deno.build.os !== "linux") throw new Error("This probe reads /proc: Linux only");
  const { values } = benchArgs({
    args: Deno.args,
    options: {
      requests: { type: "string", default: "4000" },
      rounds: { type: "string", default: "3" },
    },
  }, import.meta.url);
  const requests = Number(values.requests);
  const rounds = Number(values.rounds);
  const results: Record<Way, Cost[]> = { serve: [], guard: [] };
  for (let round = 1; round <= rounds; round++) {
    const line: string[] = [];
    for (const way of WAYS) {
      const cost = await measure(way, requests);
      results[way].push(cost);
      line.push(
        `${way} ${cost.processMicros.toFixed(0)} (main thread ${cost.mainMicros.toFixed(0)}), ` +
          `${cost.perSecond.toFixed(0)} req/s`,
      );
    }
    console.log(`round ${round}: CPU µs per request: ${line.join("; ")}`);
  }
  const median = (costs: Cost[]) =>
    costs.map((c) => c.processMicros).toSorted((a, b) => a - b)[costs.length >> 1] ?? 0;
  console.log(
    `medians: Deno.serve ${median(results.serve).toFixed(0)} µs of CPU a request, the guard ` +
      `${median(results.guard).toFixed(0)}`,
  );
}

if (import.meta.main) await main();
