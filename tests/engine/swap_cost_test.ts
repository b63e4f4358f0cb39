import { equal, ok } from "node:assert/strict";
import { AvailableMemory, CacheSwapCost, swapMemoryBound } from "../../src/engine/swap_cost.ts";

const MIB = 1024 * 1024;

Deno.test("an exchange is worth its bytes while evaluating the kept tokens again takes longer", () => {
  const cost = new CacheSwapCost();
  // Before any exchange is timed: 1 ms a MiB. 500 tokens at 1 ms each spare 500 ms.
  equal(cost.maxBytes(500, 1, 1), 500 * MIB);
  // Every request that waits for the exchange pays it.
  equal(cost.maxBytes(500, 1, 4), 125 * MIB);
  equal(cost.maxBytes(500, 1, 0), 500 * MIB, "the caller's own request counts at least");
  // On a GPU a prompt token costs hundredths of a millisecond: two 1.7 MB caches of a burst's
  // short prompts are not worth exchanging while 8 requests wait.
  ok(cost.maxBytes(53, 0.023, 8) < 1.7 * 1e6);
});

Deno.test("what an exchange costs is learnt from the exchanges made", () => {
  const cost = new CacheSwapCost();
  const before = cost.maxBytes(53, 0.9, 8);
  // bench-125m's 12 ms for 4 MiB inside serve_bench on 2 cores: 3 ms a MiB.
  for (let i = 0; i < 20; i++) cost.observe(4 * MIB, 12);
  const after = cost.maxBytes(53, 0.9, 8);
  ok(Math.abs(after - before / 3) < 0.01 * before, `${after} against ${before}`);
  // So a burst of 8 short prompts no longer waits for 4 MiB exchanges that spare 48 ms each.
  ok(after < 4 * MIB);
  cost.observe(0, 5);
  equal(cost.maxBytes(53, 0.9, 8), after, "an exchange of nothing teaches nothing");
});

Deno.test("an exchange takes at most a quarter of the memory available, and 1 GiB", () => {
  equal(swapMemoryBound(2 * 1024 * MIB), 512 * MIB);
  equal(swapMemoryBound(64 * 1024 * MIB), 1024 * MIB);
  equal(swapMemoryBound(0), 0);
});

Deno.test("the available memory is read at most once a second", () => {
  const readings = [100, 200, 300];
  let reads = 0;
  const memory = new AvailableMemory(() => readings[reads++] as number);
  equal(memory.bytes(5_000), 100);
  equal(memory.bytes(5_999), 100);
  equal(reads, 1);
  equal(memory.bytes(6_000), 200);
  equal(memory.bytes(6_500), 200);
  equal(memory.bytes(9_000), 300);
  equal(reads, 3);
  ok(new AvailableMemory().bytes() > 0, "the machine's own reading");
});
