/**
 * The registry's names for models a pull found (`fetchMissing`), without loading anything.
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import { MAX_ALIASES, type ModelEntry, ModelRegistry } from "../../src/models/registry.ts";

const ENTRY: ModelEntry = {
  name: "tiny-instruct-q4_k_m",
  path: "/models/tiny-instruct-Q4_K_M.gguf",
  source: "huggingface",
  sizeBytes: 1,
};

Deno.test("resolveOrFetch() fetches once for every spelling of a reference, and a model keeps at most 16 aliases", async () => {
  const fetched: string[] = [];
  const registry = new ModelRegistry([], {
    keepAliveMs: -1,
    fetchMissing: (name) => {
      fetched.push(name);
      return Promise.resolve(ENTRY);
    },
  });
  try {
    const spellings = [
      "hf.co/Org/Repo",
      "hf.co/org/repo/",
      " hf.co/org/repo ",
      "https://huggingface.co/org/repo",
      "org/repo//",
      "hf.co/org/repo:latest",
    ];
    for (const spelling of spellings) {
      equal((await registry.resolveOrFetch(spelling)).path, ENTRY.path, spelling);
    }
    deepEqual(fetched, ["hf.co/Org/Repo"]);
    deepEqual(registry.list()[0]!.aliases, ["hf.co/org/repo"]);
    const file = "https://huggingface.co/org/repo/resolve/main/tiny-instruct-Q4_K_M.gguf";
    for (const query of ["?download=true", "?x=1", ""]) await registry.resolveOrFetch(file + query);
    equal(fetched.length, 2, "a query on a /resolve/ URL is the same file");
    deepEqual(registry.list()[0]!.aliases, [
      "hf.co/org/repo",
      "hf.co/org/repo/tiny-instruct-q4_k_m.gguf",
    ]);
    for (let i = 0; i < 20; i++) await registry.resolveOrFetch(`hf.co/org/repo:q${i}`);
    const aliases = registry.list()[0]!.aliases!;
    equal(aliases.length, MAX_ALIASES);
    equal(aliases.at(-1), "hf.co/org/repo:q19");
    ok(!aliases.includes("hf.co/org/repo"), "the oldest went");
    equal(registry.list().length, 1);
  } finally {
    await registry.close();
  }
});
