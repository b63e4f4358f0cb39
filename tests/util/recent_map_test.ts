import { deepEqual, equal, ok } from "node:assert/strict";
import { RecentMap } from "../../src/util/recent_map.ts";

Deno.test("RecentMap keeps the most recently used entries, by count", () => {
  const recent = new RecentMap<number>({ maxEntries: 2 });
  recent.set("a", 1);
  recent.set("b", 2);
  equal(recent.get("a"), 1); // now the most recent
  recent.set("c", 3);
  ok(!recent.has("b"), "the least recently used goes");
  equal(recent.get("a"), 1);
  equal(recent.get("c"), 3);
  recent.set("a", 4);
  equal(recent.get("a"), 4);
  ok(recent.has("c"));
});

Deno.test("RecentMap bounds the total size, and keeps nothing larger than it", () => {
  const recent = new RecentMap<string>({
    maxEntries: 10,
    maxSize: 10,
    sizeOf: (key, value) => key.length + value.length,
  });
  recent.set("a", "1234"); // 5
  recent.set("b", "1234"); // 10
  recent.set("c", "12"); // 13: "a" goes
  ok(!recent.has("a"));
  ok(recent.has("b") && recent.has("c"));
  recent.set("d", "x".repeat(20));
  ok(!recent.has("d"), "larger than the bound");
  ok(recent.has("b") && recent.has("c"), "and nothing else went for it");
  recent.set("b", "1"); // replacing an entry counts its new size only
  recent.set("e", "1234"); // 2 + 3 + 5 = 10
  ok(recent.has("b") && recent.has("c") && recent.has("e"));
});

Deno.test("RecentMap forgets an entry once it is older than its age limit, however often used", () => {
  let now = 0;
  const recent = new RecentMap<number>({ maxEntries: 10, maxAgeMs: 100, now: () => now });
  recent.set("a", 1);
  now = 60;
  recent.set("b", 2);
  equal(recent.get("a"), 1); // a use does not renew it
  now = 100;
  ok(!recent.has("a"), "set 100 ms ago");
  deepEqual(recent.values(), [2]);
  now = 159;
  equal(recent.get("b"), 2);
  now = 160;
  equal(recent.get("b"), undefined);
  deepEqual(recent.values(), []);
});

Deno.test("RecentMap.delete() forgets a key and gives back its size", () => {
  const recent = new RecentMap<string>({ maxEntries: 10, maxSize: 4 });
  recent.set("ab", "x");
  recent.set("cd", "y");
  ok(recent.delete("ab"));
  ok(!recent.delete("ab"), "already gone");
  recent.set("ef", "z"); // 2 + 2: fits because "ab" no longer counts
  deepEqual(recent.values(), ["y", "z"]);
});
