import { equal, ok, strictEqual, throws } from "node:assert/strict";
import { GrammarError } from "../../src/engine/gbnf.ts";
import { GrammarChecks } from "../../src/engine/grammar_checks.ts";

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
