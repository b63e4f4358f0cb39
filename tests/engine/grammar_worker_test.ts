import { deepEqual, equal, match, ok } from "node:assert/strict";
import { GenerationError } from "../../src/engine/errors.ts";
import {
  GrammarWorker,
  MAX_QUEUED_GRAMMAR_CHARACTERS,
  MAX_QUEUED_GRAMMAR_CHECKS,
} from "../../src/engine/grammar_worker.ts";
import { toHttpError } from "../../src/server/http_error.ts";
import { SLOW_TO_REFUSE } from "../fixtures/grammars.ts";

Deno.test("GrammarWorker.check() drops 100 queued checks whose clients left, and the next check runs promptly", async () => {
  using worker = new GrammarWorker(Infinity);
  let started = performance.now();
  await settled(worker.check(slowGrammar(0), {})); // starts the worker, warms its search
  const slowMs = performance.now() - started;
  const running = settled(worker.check(slowGrammar(1), {}));
  let ran = false;
  void running.then(() => ran = true);
  const reason = new Error("The client left");
  const dropped: Promise<unknown>[] = [];
  // Two rounds of 50: the second fits in the queue only if the first left it.
  for (let round = 0; round < 2; round++) {
    const aborts = Array.from({ length: 50 }, () => new AbortController());
    aborts.forEach(({ signal }, i) => {
      dropped.push(worker.check(slowGrammar(2 + round * 50 + i), {}, signal));
    });
    for (const abort of aborts) abort.abort(reason);
  }
  for (const outcome of await Promise.allSettled(dropped)) {
    deepEqual(outcome, { status: "rejected", reason });
  }
  ok(!ran, "the dropped checks reject at once, while the worker still runs the one before them");
  started = performance.now();
  deepEqual((await worker.check('root ::= "honest"', {})).rules, ["root"]);
  const waited = performance.now() - started;
  ok(ran);
  // Behind the running check only (one slow check, slowMs): 100 more would take 100 times as long.
  ok(waited < 10 * slowMs, `the honest check waited ${waited} ms, a slow check takes ${slowMs}`);
});

Deno.test("GrammarWorker.check() refuses a check past 64 waiting with a 503 queue_full, and checks again once the queue drains", async () => {
  using worker = new GrammarWorker(Infinity);
  const running = settled(worker.check(slowGrammar(0), {}));
  let ran = false;
  void running.then(() => ran = true);
  const waiting = Array.from(
    { length: MAX_QUEUED_GRAMMAR_CHECKS },
    (_, i) => settled(worker.check(`root ::= "${i}"`, {})),
  );
  const grammar = 'root ::= "one too many"';
  const refused = await settled(worker.check(grammar, {}));
  ok(!ran, "refused at once, while the worker still runs the first check");
  ok(refused instanceof GenerationError, String(refused));
  equal(refused.code, "queue_full");
  equal(
    refused.message,
    "The grammar checks are backed up (64 checks wait, the most the server queues); " +
      "try again shortly",
  );
  const http = toHttpError(refused);
  equal(http.status, 503);
  equal(http.code, "queue_full");
  equal(http.type, "server_busy_error");
  for (const outcome of await Promise.all(waiting)) {
    ok(!(outcome instanceof Error), String(outcome));
  }
  await running;
  deepEqual((await worker.check(grammar, {})).rules, ["root"]);
});

Deno.test("GrammarWorker.check() refuses a check that would queue more than 32 Mi characters of grammar", async () => {
  using worker = new GrammarWorker(Infinity);
  // The worker runs this one while the others wait.
  const running = settled(worker.check('root ::= "a"', {}));
  const large = `root ::= "${"a".repeat(8 * 1024 * 1024 - 11)}"`;
  equal(large.length * 4, MAX_QUEUED_GRAMMAR_CHARACTERS);
  const abort = new AbortController();
  const waiting = Array.from({ length: 4 }, () => settled(worker.check(large, {}, abort.signal)));
  const refused = await settled(worker.check('root ::= "b"', {}));
  ok(refused instanceof GenerationError, String(refused));
  equal(refused.code, "queue_full");
  match(refused.message, /\(32 Mi characters of grammar wait, .* 32 Mi the server queues\)/);
  const reason = new Error("The client left");
  abort.abort(reason);
  for (const outcome of await Promise.all(waiting)) equal(outcome, reason);
  await running;
  deepEqual((await worker.check('root ::= "b"', {})).rules, ["root"]);
});

/** {@link SLOW_TO_REFUSE} with its prefix numbered: as slow to check, and a text of its own. */
function slowGrammar(n: number): string {
  return SLOW_TO_REFUSE.replace('"abcdefghijkl"', `"abcdefgh${String(n).padStart(4, "0")}"`);
}

/** What a promise settles with: its value or its rejection's reason. */
function settled(promise: Promise<unknown>): Promise<unknown> {
  return promise.then((value) => value, (reason: unknown) => reason);
}
