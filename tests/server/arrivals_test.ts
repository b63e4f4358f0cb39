import { equal } from "node:assert/strict";
import { Arrivals } from "../../src/server/arrivals.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("Arrivals counts a tracked handler until it hands its request over", async () => {
  const arrivals = new Arrivals();
  let handOver!: () => void;
  const handed = new Promise<void>((resolve) => handOver = resolve);
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => finish = resolve);
  const handler = arrivals.track(async () => {
    await sleep(1); // the hand-over happens after awaits, as in a real handler
    await handed;
    arrivals.handOver();
    await finished;
    return "answered";
  });
  equal(arrivals.count(60_000), 1);
  handOver();
  await sleep(5);
  equal(arrivals.count(60_000), 0, "handed over while its handler still runs");
  finish();
  equal(await handler, "answered");
  equal(arrivals.count(60_000), 0);
});

Deno.test("Arrivals stops counting a handler that ends without handing over, or that is old", async () => {
  const arrivals = new Arrivals();
  arrivals.handOver(); // outside any handler: nothing happens
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => finish = resolve);
  const slow = arrivals.track(() => finished);
  const failing = arrivals.track(() => Promise.reject(new Error("bad request")));
  equal(arrivals.count(60_000), 2);
  await failing.catch(() => {});
  equal(arrivals.count(60_000), 1);
  await sleep(20);
  equal(arrivals.count(60_000), 1);
  equal(arrivals.count(10), 0, "started more than 10 ms ago");
  finish();
  await slow;
  equal(arrivals.count(60_000), 0);
});

Deno.test("Arrivals adds the requests its listeners are still reading", () => {
  const arrivals = new Arrivals();
  const asked: number[] = [];
  arrivals.watch((withinMs) => (asked.push(withinMs), 2));
  arrivals.watch(() => 1);
  equal(arrivals.count(10), 3);
  equal(asked[0], 10);
});

Deno.test("Arrivals tells once when a handler ends without handing its request over", async () => {
  const arrivals = new Arrivals();
  const calls: string[] = [];
  arrivals.onceSettled(() => calls.push("first"));
  const cancel = arrivals.onceSettled(() => calls.push("cancelled"));
  cancel();
  await arrivals.track(() => Promise.resolve(arrivals.handOver()));
  equal(calls.length, 0, "a request handed over did not give up");
  await arrivals.track(() => Promise.resolve("answered by itself"));
  equal(calls.join(), "first");
  await arrivals.track(() => Promise.resolve("again"));
  equal(calls.join(), "first", "once");
});
