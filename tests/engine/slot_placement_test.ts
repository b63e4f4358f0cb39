import { deepEqual, equal } from "node:assert/strict";
import {
  burstWindow,
  busyRuns,
  compactingMove,
  runKeepingTargets,
  splitPasses,
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

/** The passes of a batch in id order: `counts[seq]` tokens of each sequence (0: not in it). */
function stepPasses(counts: readonly number[], outputs: readonly boolean[]) {
  const { passes, outputsInOrder } = splitPasses(
    counts.flatMap((tokens, seq) =>
      tokens > 0 ? [{ seq, tokens, output: outputs[seq] ?? false, generating: false }] : []
    ),
  );
  return { passes, outputsInOrder };
}

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

Deno.test("a step's passes follow the batch's order, and tell which mix streams and prompts", () => {
  const stream = (seq: number) => ({ seq, tokens: 1, output: true, generating: true });
  const prompt = (seq: number, tokens: number) => ({
    seq,
    tokens,
    output: true,
    generating: false,
  });
  // A stream's token then the next slot's prompt: a pass of both (the prompt's first token), then
  // the prompt's rest.
  deepEqual(splitPasses([stream(3), prompt(4, 32)]), {
    passes: 2,
    outputsInOrder: true,
    mixedPasses: 1,
  });
  // The prompt first: sequence 3 does not follow 4, so the passes are the prompt's and the stream's.
  deepEqual(splitPasses([prompt(4, 32), stream(3)]), {
    passes: 2,
    outputsInOrder: true,
    mixedPasses: 0,
  });
  // A run of streams and a prompt in the slot after it, and in the slot before it.
  const streams = [stream(0), stream(1), stream(2)];
  equal(splitPasses([...streams, prompt(3, 20)]).mixedPasses, 1);
  deepEqual(splitPasses([prompt(3, 20), ...streams]), {
    passes: 2,
    outputsInOrder: true,
    mixedPasses: 0,
  });
  const later = [stream(1), stream(2), stream(3)];
  equal(splitPasses([prompt(0, 20), ...later]).mixedPasses, 1);
  equal(splitPasses([...later, prompt(0, 20)]).mixedPasses, 0);
  // Two prompts of one run: the shorter one ends in the first pass, its output out of the batch's
  // order when it comes second; first, or in a pass of its own, it keeps the order.
  equal(splitPasses([prompt(0, 9), prompt(1, 3)]).outputsInOrder, false);
  equal(splitPasses([prompt(1, 3), prompt(0, 9)]).outputsInOrder, true);
});
