import { equal, match, ok } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { buildTinyVocab } from "../fixtures/tiny_vocab.ts";
import { fixtureModel } from "../fixtures/models.ts";

const TOKENS = buildTinyVocab().tokens;

Deno.test("a lazy grammar leaves text free until its trigger, then holds the rest to the grammar", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32"), threads: 1 });
  const prompt = loaded.model.tokenize("the weather today");
  const q = TOKENS.indexOf("Q");
  ok(q >= 0);
  let freeBeforeTrigger = 0;
  for (const seed of [1, 2, 3, 4]) {
    const generation = loaded.scheduler.submit({
      prompt,
      maxTokens: 120,
      sampling: {
        seed,
        temperature: 1,
        grammar: 'root ::= "Q" [0-9] [0-9] [0-9]',
        grammarTriggers: ["Q"],
        // Q comes sooner or later; the grammar decides what follows it.
        logitBias: new Map([[q, 4]]),
      },
    });
    for await (const _ of generation) { /* drain */ }
    const result = await generation.result;
    const at = result.text.indexOf("Q");
    ok(at >= 0, `the trigger came: ${JSON.stringify(result.text)}`);
    match(result.text.slice(at), /^Q[0-9]{3}$/, "after the trigger, exactly the grammar");
    equal(result.finishReason, "stop");
    if (at > 0) freeBeforeTrigger++;
  }
  ok(freeBeforeTrigger > 0, "the text before the trigger is not held to the grammar");
});
