import { deepEqual, equal, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { GrammarError, type GrammarOptions, type GrammarSummary } from "../../src/engine/gbnf.ts";
import { GenerationError } from "../../src/engine/errors.ts";
import { GrammarChecks } from "../../src/engine/grammar_checks.ts";
import {
  keepGrammarWorkerWarm,
  MAX_QUEUED_GRAMMAR_CHECKS,
} from "../../src/engine/grammar_worker.ts";
import { SLOW_TO_REFUSE } from "../fixtures/grammars.ts";
import { whileTicking } from "../helpers.ts";

Deno.test("GrammarChecks.check() checks a grammar once and repeats its verdict", () => {
  let asked = 0;
  const checks = new GrammarChecks({
    isSingleToken: (piece) => {
      asked++;
      return piece === "<|end|>";
    },
  });
  const grammar = 'root ::= "yes" <|end|>';
  const first = checks.check(grammar);
  strictEqual(checks.check(grammar), first);
  equal(asked, 1);
  // A refused grammar is refused again with the same error, without a second check.
  const ambiguous = 'root ::= (" "?){32} "b"';
  let refusal: unknown;
  throws(() => checks.check(ambiguous), (error) => {
    refusal = error;
    return error instanceof GrammarError && /maxSearchPaths/.test(error.message);
  });
  const started = performance.now();
  throws(() => checks.check(ambiguous), (error) => error === refusal);
  ok(performance.now() - started < 5, "the second verdict is remembered");
});

Deno.test("GrammarChecks keeps the 64 most recently used grammars", () => {
  const checks = new GrammarChecks({});
  const grammars = Array.from({ length: 66 }, (_, i) => `root ::= "${i}"`);
  const verdicts = grammars.slice(0, 64).map((g) => checks.check(g));
  strictEqual(checks.check(grammars[0]!), verdicts[0]); // used again: now the newest
  checks.check(grammars[64]!); // the 65th pushes out the least recently used: grammars[1]
  strictEqual(checks.check(grammars[0]!), verdicts[0]);
  strictEqual(checks.check(grammars[2]!), verdicts[2]);
  ok(checks.check(grammars[1]!) !== verdicts[1]);
});

Deno.test("GrammarChecks.prepare() reaches check()'s verdicts on the grammar worker, the vocabulary answered here", async () => {
  using _worker = keepGrammarWorkerWarm();
  const options: GrammarOptions = {
    isSingleToken: (piece) => piece !== "<|two pieces|>",
    endsGeneration: (token) => token === 2 || token === "<|eot|>",
  };
  const grammars = [
    'root ::= "yes" | "no"',
    'root ::= "a" <|end|> !<[2]> [0-9]{1,3}',
    'root ::= "a" <|two pieces|>', // not one token
    'root ::= "a"\n  <|eot|>', // ends generation, on line 2
    'root ::= "a" <[2]>',
    'root ::= (" "?){32} "b"', // too costly
    'root ::= "a" (', // syntax
  ];
  for (const grammar of grammars) {
    const here = verdict(() => new GrammarChecks(options).check(grammar));
    let prepared = false;
    const offThread = new GrammarChecks({
      isSingleToken: (piece) => !prepared && options.isSingleToken!(piece),
      endsGeneration: (token) => !prepared && options.endsGeneration!(token),
    });
    await offThread.prepare(grammar);
    prepared = true; // from now on every token would be refused
    // Remembered from the worker: no second check, and the same summary or refusal.
    const started = performance.now();
    deepEqual(verdict(() => offThread.check(grammar)), here, grammar);
    ok(performance.now() - started < 5, grammar);
  }
});

Deno.test("GrammarChecks.prepare() leaves the event loop free while a large grammar is checked", async () => {
  using _worker = keepGrammarWorkerWarm();
  await new GrammarChecks({}).prepare('root ::= "warm"'); // the worker has started
  // Two such grammars, about 0.2 s each cold: warmed by the suite's other grammar tests, one
  // alone was checked in 99 ms once, too close to the bound below to tell anything.
  const grammar = SLOW_TO_REFUSE;
  const grammars = [grammar, grammar.replace('"abcdefghijkl"', '"abcdefghijkm"')];
  const { longestGap: onThisThread } = await whileTicking(() => {
    for (const one of grammars) verdict(() => new GrammarChecks({}).check(one));
    return Promise.resolve();
  });
  const checks = new GrammarChecks({});
  const { longestGap: offThread } = await whileTicking(async () => {
    for (const one of grammars) await checks.prepare(one);
  });
  ok(onThisThread > 100, `the check held the event loop only ${onThisThread} ms`);
  ok(offThread < onThisThread / 4, `${offThread} ms against ${onThisThread} ms`);
  const started = performance.now();
  ok(verdict(() => checks.check(grammar)).error?.includes("too many to bound"));
  ok(performance.now() - started < 5, "the refusal is remembered");
});

Deno.test("GrammarChecks.prepare() keeps a check two requests share for the one still waiting when the other leaves", async () => {
  using _worker = keepGrammarWorkerWarm();
  const busy = whileWorkerBusy();
  const checks = new GrammarChecks({});
  const grammar = 'root ::= "shared"';
  const reason = new Error("The client left");
  const leaving = new AbortController();
  const left = checks.prepare(grammar, leaving.signal);
  const staying = checks.prepare(grammar, new AbortController().signal);
  leaving.abort(reason);
  await rejects(left, (error) => error === reason);
  ok(!busy.done(), "the request that left stops waiting at once");
  await staying;
  ok(busy.done());
  const started = performance.now();
  deepEqual(checks.check(grammar).rules, ["root"]);
  ok(performance.now() - started < 5, "the shared check's verdict is remembered");
});

Deno.test("GrammarChecks.prepare() drops a check from the worker's queue once every request waiting on it has left", async () => {
  using _worker = keepGrammarWorkerWarm();
  const busy = whileWorkerBusy();
  const others = new GrammarChecks({});
  const queued = Array.from(
    { length: MAX_QUEUED_GRAMMAR_CHECKS - 1 },
    (_, i) => others.prepare(`root ::= "${i}"`),
  );
  const checks = new GrammarChecks({});
  const aborts = [new AbortController(), new AbortController()];
  const waits = aborts.map(({ signal }) => checks.prepare('root ::= "shared"', signal));
  const next = 'root ::= "next"';
  const full = () =>
    rejects(others.prepare(next), (e) => e instanceof GenerationError && e.code === "queue_full");
  await full();
  aborts[0]!.abort();
  await rejects(waits[0]!, (e) => (e as Error).name === "AbortError");
  await full(); // the other request still waits on the shared check
  aborts[1]!.abort();
  await rejects(waits[1]!, (e) => (e as Error).name === "AbortError");
  queued.push(others.prepare(next)); // the shared check left the queue: room for one
  ok(!busy.done(), "all at once, while the worker runs the check before them");
  await Promise.all(queued);
});

Deno.test("GrammarChecks.prepare() lets a running check finish for no one and remembers its verdict", async () => {
  using _worker = keepGrammarWorkerWarm();
  await new GrammarChecks({}).prepare('root ::= "warm"'); // the worker has started
  const checks = new GrammarChecks({});
  const abort = new AbortController();
  const wait = checks.prepare(SLOW_TO_REFUSE, abort.signal); // the worker runs it at once
  abort.abort();
  await rejects(wait, (e) => (e as Error).name === "AbortError");
  await new GrammarChecks({}).prepare('root ::= "after"'); // queued behind it
  const started = performance.now();
  ok(verdict(() => checks.check(SLOW_TO_REFUSE)).error?.includes("too many to bound"));
  ok(performance.now() - started < 5, "the refusal is remembered");
});

/** Keeps the shared grammar worker busy with a slow check (about 0.1-0.3 s). */
function whileWorkerBusy(): { finished: Promise<void>; done: () => boolean } {
  let done = false;
  const finished = new GrammarChecks({}).prepare(SLOW_TO_REFUSE).finally(() => done = true);
  return { finished, done: () => done };
}

/** A check's summary, or its error's class, kind, message and position. */
function verdict(check: () => GrammarSummary): { summary?: GrammarSummary; error?: string } {
  try {
    return { summary: check() };
  } catch (error) {
    if (!(error instanceof GrammarError)) throw error;
    return { error: JSON.stringify([error.kind, error.message, error.position]) };
  }
}
