import { deepEqual, equal } from "node:assert/strict";
import {
  countersBetween,
  describeCounters,
  readSchedulerCounters,
} from "../../bench/lib/scheduler_counters.ts";

const before = {
  slotMoves: 1,
  cacheSwaps: 0,
  extraPasses: 4,
  reorderedSteps: 0,
  brokenRunSteps: 2,
};
const after = {
  slotMoves: 3,
  cacheSwaps: 1,
  extraPasses: 10,
  reorderedSteps: 1,
  brokenRunSteps: 2,
};

Deno.test("a round's scheduler counters are their growth, printed by name", () => {
  const grown = countersBetween(before, after);
  deepEqual(grown, {
    slotMoves: 2,
    cacheSwaps: 1,
    extraPasses: 6,
    reorderedSteps: 1,
    brokenRunSteps: 0,
  });
  equal(
    describeCounters(grown!),
    "moves 2, cache swaps 1, extra passes 6, reordered steps 1, broken runs 0",
  );
  equal(countersBetween(undefined, after), undefined, "a server without /diag has none");
});

Deno.test("the counters are read from /diag, and a server without them has none", async () => {
  const answers: Record<string, () => Response> = {};
  await using server = Deno.serve({ port: 0, onListen() {} }, (request) => {
    const answer = answers[new URL(request.url).pathname.slice(1)];
    return answer ? answer() : new Response("not found", { status: 404 });
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  equal(await readSchedulerCounters(url), undefined, "404");
  answers.diag = () => Response.json({ models: [{ slots: { ...after, slots: 8, busySlots: 0 } }] });
  deepEqual(await readSchedulerCounters(url), after);
  answers.diag = () => Response.json({ models: [{ slots: { slotMoves: 1 } }] });
  equal(await readSchedulerCounters(url), undefined, "an older Shimmy without every counter");
});
