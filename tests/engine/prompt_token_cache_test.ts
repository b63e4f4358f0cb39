import { deepEqual, equal, ok } from "node:assert/strict";
import { Llama, Model } from "../../src/ffi/mod.ts";
import { CACHED_PIECE_CHARS } from "../../src/ffi/model.ts";
import { promptTokens, renderChatPrompt } from "../../src/engine/prompt.ts";
import { PromptTokenCache, promptTokenCache } from "../../src/engine/prompt_token_cache.ts";
import { fixtureModel } from "../fixtures/models.ts";

Deno.test("PromptTokenCache keeps pieces up to its limit, the least recently used dropped first", () => {
  const cache = new PromptTokenCache(10);
  cache.set("aaaa", Int32Array.of(1));
  cache.set("bbbb", Int32Array.of(2));
  deepEqual(cache.get("aaaa"), Int32Array.of(1)); // now the most recently used
  cache.set("cccc", Int32Array.of(3)); // 12 code units: "bbbb" goes
  equal(cache.get("bbbb"), undefined);
  deepEqual(cache.get("cccc"), Int32Array.of(3));
  cache.set("x".repeat(11), Int32Array.of(4)); // bigger than the whole cache: not kept
  deepEqual(cache.stats(), { hits: 2, misses: 1, pieces: 2, chars: 8 });
});

const WORDS = "the keeper climbs the stairs at dusk and lights the lamp while the sea beats on"
  .split(" ");

Deno.test("a chat's next turn tokenizes like the whole prompt, its earlier pieces from the cache", async () => {
  const llama = Llama.open();
  // llama-bpe's generated template writes ChatML markers that are no special tokens of its
  // vocabulary: nothing to cut at, so only the tokens are compared there.
  for (const [name, cuts] of [["qwen2", true], ["phi-3", true], ["llama-bpe", false]] as const) {
    using model = await Model.load(llama, await fixtureModel(name), { vocabOnly: true });
    let seed = 3;
    const sentence = (n: number) =>
      Array.from({ length: n }, () => WORDS[(seed = (seed * 7 + 3) % 101) % WORDS.length])
        .join(" ") + ".";
    const messages = [{ role: "system", content: sentence(30) }];
    for (let turn = 0; turn < 12; turn++) {
      messages.push({ role: "user", content: sentence(80) });
      const rendered = await renderChatPrompt(model, messages);
      const before = promptTokenCache(model).stats();
      const cached = await promptTokens(model, rendered.prompt, !rendered.addsBos, {
        offThread: true,
      });
      const whole = await promptTokens(model, rendered.prompt, !rendered.addsBos);
      deepEqual([...cached], [...whole], `${name}, turn ${turn}`);
      const after = promptTokenCache(model).stats();
      if (cuts && rendered.prompt.length > 4 * CACHED_PIECE_CHARS) {
        // All but the last piece before the new messages and theirs came from the cache.
        ok(after.hits - before.hits >= 2, `${name}, turn ${turn}: ${JSON.stringify(after)}`);
        ok(after.misses - before.misses <= 3, `${name}, turn ${turn}: ${JSON.stringify(after)}`);
      }
      messages.push({ role: "assistant", content: sentence(80) });
    }
  }
});
