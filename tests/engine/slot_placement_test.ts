import { deepEqual, equal } from "node:assert/strict";
import { busyRuns, compactingMove, runKeepingTargets } from "../../src/engine/slot_placement.ts";

const flags = (text: string) => [...text].map((c) => c === "x");

Deno.test("busy runs are counted as llama.cpp splits a batch of one stream per slot", () => {
  equal(busyRuns(flags("....")), 0);
  equal(busyRuns(flags(".xx.")), 1);
  equal(busyRuns(flags("x.xx")), 2);
  equal(busyRuns(flags("x.x.x")), 3);
});

Deno.test("a new request takes a gap in the busy run, else a slot at one of its ends", () => {
  deepEqual(runKeepingTargets(flags("....")), [0, 1, 2, 3]);
  deepEqual(runKeepingTargets(flags("x.x..x")), [1, 3, 4]);
  deepEqual(runKeepingTargets(flags(".xx.")), [3, 0]);
  deepEqual(runKeepingTargets(flags("xx..")), [2]);
  deepEqual(runKeepingTargets(flags("..xx")), [1]);
  deepEqual(runKeepingTargets(flags("xxxx")), []);
});

Deno.test("a broken run is mended by moving its last request into its first gap", () => {
  equal(compactingMove(flags("xx.."), () => true), undefined);
  deepEqual(compactingMove(flags("x.xx"), () => true), { from: 3, to: 1 });
  // When the last request cannot move, the first one goes into the last gap.
  deepEqual(compactingMove(flags("x..x.x"), (from) => from !== 5), { from: 0, to: 4 });
  equal(compactingMove(flags("x.x"), () => false), undefined);
});
