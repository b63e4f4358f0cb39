import { equal } from "node:assert/strict";
import { pollLevel } from "../../src/ffi/threadpool.ts";

Deno.test("a thread pool that takes every core sleeps between tasks; one that leaves cores free spins", () => {
  equal(pollLevel(2, 2), 0);
  equal(pollLevel(16, 16), 0);
  equal(pollLevel(3, 2), 0, "more threads than cores");
  equal(pollLevel(4, 16), undefined, "ggml's default");
  equal(pollLevel(1, 2), undefined);
});
