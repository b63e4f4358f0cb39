/**
 * Where a CPU decode's threads run (Linux): starts `shimmy serve` on bench-125m with a thread per
 * core (4 slots of 1024 tokens, as `bench/serve_bench.ts` starts it), streams N completions one after another, and for each prints its rate, the CPU ticks of
 * every busy thread of the server, the event loop's CPU time per token, and in how many 20 ms
 * samples the two busiest threads (the compute threads) sat on the same CPU. This is how the
 * core pinning of `src/ffi/core_pinning.ts` was found (bench/README.md).
 *
 *   deno run -A bench/thread_placement.ts [--streams 10] [--tokens 256] [--lib-dir DIR]
 *
 * @module
 */

import { benchArgs } from "./lib/args.ts";
import { join } from "node:path";
import { fixtureModel, REPO_ROOT } from "../tests/fixtures/models.ts";
import { readBenchModel } from "./lib/model_info.ts";
import { ServerProcess } from "./lib/server_process.ts";
import { type ThreadSample, threadsOf, TICKS_PER_SECOND } from "./lib/thread_stat.ts";

async function stream(url: string, tokens: number): Promise<void> {
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      prompt: "Once upon a time",
      max_tokens: tokens,
      temperature: 0,
      stream: true,
      ignore_eos: true,
    }),
  });
  for await (const _ of response.body ?? []) { /* drained */ }
}

async function main(): Promise<void> {
  if (Deno.build.os !== "linux") throw new Error("This probe reads /proc: Linux only");
  const { values } = benchArgs({
    args: Deno.args,
    options: {
      streams: { type: "string", default: "10" },
      tokens: { type: "string", default: "256" },
      "lib-dir": { type: "string", default: join(REPO_ROOT, "lib/reference") },
    },
  }, import.meta.url);
  const streams = Number(values.streams);
  const tokens = Number(values.tokens);
  const cores = navigator.hardwareConcurrency;
  const server = await ServerProcess.start("shimmy", {
    slots: 4,
    ctxSize: 1024,
    threads: cores,
    libDir: values["lib-dir"] as string,
    llamaServer: "",
  }, await readBenchModel(await fixtureModel("bench-125m")));
  const url = server.url;
  try {
    await stream(url, 32);
    console.log(`${cores} cores, ${tokens} tokens per stream, one stream at a time`);
    for (let i = 0; i < streams; i++) {
      const before = new Map(threadsOf(server.pid).map((t) => [t.tid, t.ticks]));
      const samples: ThreadSample[][] = [];
      let done = false;
      const sampling = (async () => {
        while (!done) {
          samples.push(threadsOf(server.pid));
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })();
      const start = performance.now();
      await stream(url, tokens);
      const seconds = (performance.now() - start) / 1000;
      done = true;
      await sampling;
      const busy = threadsOf(server.pid)
        .map((t) => ({ tid: t.tid, ticks: t.ticks - (before.get(t.tid) ?? 0) }))
        .filter((t) => t.ticks > 3)
        .sort((a, b) => b.ticks - a.ticks);
      const compute = busy.filter((t) => t.tid !== String(server.pid)).slice(0, 2);
      const shared = samples.filter((sample) => {
        const cpus = compute.map((c) => sample.find((t) => t.tid === c.tid)?.cpu);
        return cpus.length === 2 && cpus[0] !== undefined && cpus[0] === cpus[1];
      }).length;
      const eventLoop = busy.find((t) => t.tid === String(server.pid))?.ticks ?? 0;
      console.log(
        `${(tokens / seconds).toFixed(0)} tok/s; busy threads ` +
          busy.map((t) => `${t.tid === String(server.pid) ? "event-loop" : t.tid}:${t.ticks}`)
            .join(" ") +
          `; event loop ${
            Math.round(eventLoop / TICKS_PER_SECOND * 1e6 / tokens)
          } µs CPU/token; the two compute threads on one CPU in ${shared}/${samples.length} samples`,
      );
    }
  } finally {
    await server.stop();
  }
}

if (import.meta.main) await main();
