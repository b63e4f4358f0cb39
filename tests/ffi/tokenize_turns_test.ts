import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { Llama, Model } from "../../src/ffi/mod.ts";
import { BIG_TEXT_CHARS, bigTextTurns, TokenizeTurns } from "../../src/ffi/tokenize_turns.ts";
import { fixtureModel } from "../fixtures/models.ts";

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

Deno.test("Model.tokenizeAsync: a big text waits for its turn, but not for the pieces its cache holds", async () => {
  const llama = Llama.open();
  using model = await Model.load(llama, await fixtureModel("qwen2"), { vocabOnly: true });
  const text = `<|im_start|>user\n${"hello world ".repeat(100)}<|im_end|>\n`.repeat(100);
  ok(text.length > BIG_TEXT_CHARS);
  const cache = new Map<string, Int32Array>();
  const expected = await model.tokenizeAsync(text, { pieceCache: cache });
  // Another big text holds the turn.
  let release!: () => void;
  const holding = bigTextTurns.run(1, () => new Promise<void>((resolve) => (release = resolve)));
  const cached = await Promise.race([
    model.tokenizeAsync(text, { pieceCache: cache }),
    new Promise<"waited">((resolve) => setTimeout(() => resolve("waited"), 2000)),
  ]);
  ok(cached !== "waited", "the cached pieces did not wait for the turn");
  deepEqual([...cached], [...expected], "the cached pieces came, in their order");
  let done = false;
  const fresh = model.tokenizeAsync(text, { pieceCache: new Map() }).then((tokens) => {
    done = true;
    return tokens;
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  equal(bigTextTurns.waiting, 1);
  equal(done, false, "uncached, the text waits for the turn");
  release();
  await holding;
  deepEqual([...await fresh], [...expected]);
});
