import { deepEqual, throws } from "node:assert/strict";
import { pairedRatios } from "../../bench/lib/stats.ts";

Deno.test("pairedRatios() divides each round's value by the baseline's of the same round", () => {
  // Two clusters of rounds (a fast and a slow minute): the paired ratios stay at 1.1 where the
  // medians of each side would compare values from different rounds.
  deepEqual(pairedRatios([110, 220, 110, 220], [100, 200, 100, 200]), [1.1, 1.1, 1.1, 1.1]);
  deepEqual(pairedRatios([], []), []);
  throws(() => pairedRatios([1, 2], [1]), RangeError);
});
