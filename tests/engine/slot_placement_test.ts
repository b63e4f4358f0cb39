import { deepEqual, equal } from "node:assert/strict";
import {
  burstWindow,
  busyRuns,
  compactingMove,
  runKeepingTargets,
  stepPasses,
} from "../../src/engine/slot_placement.ts";

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

Deno.test("requests that start together get the window of slots that holds most of their caches", () => {
  const cached = (values: number[]) => (id: number) => values[id] as number;
  deepEqual(burstWindow(flags("...."), 4, cached([5, 5, 5, 5])), [0, 1, 2, 3]);
  deepEqual(burstWindow(flags("...."), 2, cached([0, 0, 40, 40])), [2, 3]);
  deepEqual(burstWindow(flags("...."), 2, cached([0, 0, 0, 0])), [0, 1], "lowest first on ties");
  deepEqual(burstWindow(flags(".x.."), 2, cached([30, 0, 0, 40])), [2, 3]);
  deepEqual(burstWindow(flags(".x.."), 2, cached([30, 0, 40, 0])), [0, 2], "both sides of the run");
  deepEqual(burstWindow(flags("..xx"), 2, cached([9, 9, 0, 0])), [0, 1]);
  const used = (values: number[]) => (id: number) => values[id] as number;
  deepEqual(
    burstWindow(flags("...."), 2, cached([3, 3, 3, 3]), used([4, 3, 1, 2])),
    [2, 3],
    "as much reused: the caches used least recently",
  );
  equal(burstWindow(flags("x.x."), 1, cached([0, 0, 0, 0])), undefined, "a broken run");
  equal(burstWindow(flags(".xx."), 3, cached([0, 0, 0, 0])), undefined, "no room on either side");
});

Deno.test("a broken run is mended by moving its last request into its first gap", () => {
  equal(compactingMove(flags("xx.."), () => true), undefined);
  deepEqual(compactingMove(flags("x.xx"), () => true), { from: 3, to: 1 });
  // When the last request cannot move, the first one goes into the last gap.
  deepEqual(compactingMove(flags("x..x.x"), (from) => from !== 5), { from: 0, to: 4 });
  equal(compactingMove(flags("x.x"), () => false), undefined);
});

Deno.test("a step's passes: one per distinct token count along a run, outputs in pass order", () => {
  const all = [true, true, true, true];
  deepEqual(stepPasses([1, 1, 1, 1], all), { passes: 1, outputsInOrder: true });
  deepEqual(stepPasses([3, 6, 20, 20], all), { passes: 3, outputsInOrder: true });
  // Arrival order: the short prompts end first and break the run of the long ones.
  deepEqual(stepPasses([20, 6, 20, 3], all), { passes: 4, outputsInOrder: false });
  // Generating streams (one token each) before a new prompt: two passes, in order.
  deepEqual(stepPasses([1, 1, 30], all), { passes: 2, outputsInOrder: true });
  // A prompt chunk that does not end yet has no output to disorder.
  deepEqual(stepPasses([30, 1], [false, true]), { passes: 2, outputsInOrder: true });
  // A slot outside the batch splits the run.
  deepEqual(stepPasses([1, 0, 1], [true, false, true]), { passes: 2, outputsInOrder: true });
  deepEqual(stepPasses([0, 0], [false, false]), { passes: 0, outputsInOrder: true });
});
