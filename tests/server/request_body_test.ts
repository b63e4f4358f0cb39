import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { HttpError } from "../../src/server/http_error.ts";
import { parseJsonObject } from "../../src/server/request_body.ts";

/** Milliseconds `work` takes. */
function timed(work: () => unknown): number {
  const started = performance.now();
  work();
  return performance.now() - started;
}

Deno.test("parseJsonObject() refuses 8 MiB of empty arrays or 700,000 keys far sooner than JSON.parse reads them", () => {
  const keys = Array.from({ length: 700_000 }, (_, i) => `"k${i}":0`).join(",");
  const bodies = [`{"prompt":[${"[],".repeat(2_796_000)}[]]}`, `{"logit_bias":{${keys}}}`];
  for (const body of bodies) {
    const parsing = timed(() => JSON.parse(body));
    let error: unknown;
    const refusing = timed(() => {
      try {
        parseJsonObject(body);
      } catch (thrown) {
        error = thrown;
      }
    });
    ok(error instanceof HttpError, String(error));
    equal(error.status, 400);
    ok(
      /^Request body holds more than 300000 strings, arrays and objects/.test(error.message),
      error.message,
    );
    ok(
      refusing < parsing / 3,
      `refused in ${refusing.toFixed(0)} ms, parsed in ${parsing.toFixed(0)} ms`,
    );
  }
});

Deno.test("parseJsonObject() reads a prompt of a million token ids and a logit_bias over a 262,144-token vocabulary", () => {
  const prompt = Array.from({ length: 1_048_576 }, (_, i) => i % 151_000);
  const bias = Object.fromEntries(Array.from({ length: 262_144 }, (_, i) => [i, -1]));
  const body = parseJsonObject(JSON.stringify({ prompt, logit_bias: bias, n_predict: 1 }));
  equal((body.prompt as number[]).length, 1_048_576);
  equal(Object.keys(body.logit_bias as object).length, 262_144);
  deepEqual(parseJsonObject('{"a":["b",{}]}'), { a: ["b", {}] });
  throws(() => parseJsonObject("[]"), /must be a JSON object/);
});
