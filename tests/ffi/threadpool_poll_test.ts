import { equal } from "node:assert/strict";
import { pollLevel } from "../../src/ffi/threadpool.ts";

Deno.test("a thread pool that takes every core of a 2-core machine sleeps between tasks; others spin", () => {
  equal(pollLevel(2, 2), 0);
  equal(pollLevel(3, 2), 0, "more threads than cores");
  equal(pollLevel(1, 1), 0);
  equal(pollLevel(16, 16), undefined, "many cores: waking every thread costs more than spinning");
  equal(pollLevel(4, 4), undefined);
  equal(pollLevel(4, 16), undefined, "ggml's default");
  equal(pollLevel(1, 2), undefined);
});
