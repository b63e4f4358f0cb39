import { deepEqual, equal, ok } from "node:assert/strict";
import { summaryText } from "../../bench/lib/report.ts";
import type { LevelSample, RoundResult } from "../../bench/lib/samples.ts";
import { burstSplit } from "../../bench/lib/stats.ts";
import { splitBursts, summarize } from "../../bench/lib/summary.ts";

/** A burst of one request per first-token time, each with two token gaps of 1 ms. */
function burst(ttftMs: number[]): LevelSample {
  return {
    streams: ttftMs.length,
    aggregateTps: 100,
    streamTps: ttftMs.map(() => 100),
    ttftMs,
    serverPromptMs: ttftMs,
    gapsMs: ttftMs.map(() => [1, 1]),
    gaps: { count: 0, p50: 1, p90: 1, p99: 1, max: 1, worstStreamP99: 1 },
    promptTokens: 30,
    cachedTokens: 0,
    results: [],
  };
}

const ROUNDS: RoundResult[] = [
  {
    round: 1,
    server: "shimmy",
    otherCpu: null,
    levels: [burst([5.6]), burst([20.1, 6.5, 21.0, 20.4]), burst([11.2, 11.9, 11.4, 12.0])],
  },
  {
    round: 1,
    server: "llama-server",
    otherCpu: null,
    levels: [burst([5.5]), burst([12.0, 13.1, 14.2, 12.5]), burst([10.3, 9.8, 11.0, 12.2])],
  },
];

Deno.test("burstSplit() tells a burst whose first request started alone", () => {
  equal(burstSplit([20.1, 6.5, 21.0]), true, "6.5 is under 0.6 of 20.1");
  equal(burstSplit([11.2, 11.9, 11.4]), false);
  equal(burstSplit([5.6]), false, "one request is no burst");
});

Deno.test("splitBursts() counts per level of several streams the bursts that split, per server", () => {
  deepEqual(splitBursts(ROUNDS, [1, 4]), [
    { streams: 4, shimmy: { split: 1, bursts: 2 }, llamaServer: { split: 0, bursts: 2 } },
  ]);
});

Deno.test("serve_bench's summary prints the split bursts of each level", () => {
  const text = summaryText(summarize(ROUNDS, [1, 4]), ROUNDS, { reps: 1, bursts: 2 });
  ok(text.includes("4 streams shimmy 1/2, llama-server 0/2."), text);
});
