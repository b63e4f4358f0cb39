import { deepEqual, equal, rejects } from "node:assert/strict";
import { TokenizeTurns } from "../../src/ffi/tokenize_turns.ts";

/** A piece of work that ends when told to, recording when it started. */
function heldWork(name: string, log: string[]) {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return {
    work: async () => {
      log.push(name);
      await done;
      return name;
    },
    finish: () => finish(),
  };
}

Deno.test("TokenizeTurns runs one text at a time, the one that would finish first next", async () => {
  const turns = new TokenizeTurns();
  const log: string[] = [];
  const first = heldWork("first", log);
  const big = heldWork("big", log);
  const small = heldWork("small", log);
  const running = turns.run(1_000, first.work);
  const bigDone = turns.run(8_000_000, big.work);
  const smallDone = turns.run(300_000, small.work);
  await Promise.resolve();
  deepEqual(log, ["first"]);
  equal(turns.waiting, 2);
  first.finish();
  await running;
  // The small text arrived later, but would end seconds before the 8 MB one.
  small.finish();
  equal(await smallDone, "small");
  big.finish();
  equal(await bigDone, "big");
  deepEqual(log, ["first", "small", "big"]);
  equal(turns.waiting, 0);
});

Deno.test("TokenizeTurns: a wait that is aborted leaves the line and never runs", async () => {
  const turns = new TokenizeTurns();
  const log: string[] = [];
  const first = heldWork("first", log);
  const gone = heldWork("gone", log);
  const running = turns.run(1_000, first.work);
  const abort = new AbortController();
  const waiting = turns.run(1_000, gone.work, abort.signal);
  equal(turns.waiting, 1);
  abort.abort(new Error("client gone"));
  await rejects(waiting, /client gone/);
  equal(turns.waiting, 0);
  first.finish();
  await running;
  deepEqual(log, ["first"]);
  // The line is free again: the next text runs at once.
  equal(await turns.run(10, () => Promise.resolve("next")), "next");
});

Deno.test("TokenizeTurns: a failed work frees the turn", async () => {
  const turns = new TokenizeTurns();
  await rejects(turns.run(10, () => Promise.reject(new Error("boom"))), /boom/);
  equal(await turns.run(10, () => Promise.resolve(1)), 1);
});
