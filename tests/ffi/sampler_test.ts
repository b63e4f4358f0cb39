import { deepEqual, equal, notEqual, ok } from "node:assert/strict";
import { Llama, Model, Sampler } from "../../src/ffi/mod.ts";
import { lazyTriggers, type SamplerStage } from "../../src/ffi/sampler.ts";
import { TokenCandidates } from "../../src/ffi/token_candidates.ts";
import { fixtureModel } from "../fixtures/models.ts";
import { whileTicking } from "../helpers.ts";

const llama = Llama.open();
const IM_START = "<|im_start|>";

/** The qwen2 fixture: a 151,936-token vocabulary whose `<|im_start|>` is a control token. */
async function qwen2(): Promise<Model> {
  return await Model.load(llama, await fixtureModel("qwen2"));
}

/** Whether the grammar of `sampler` lets `token` through now. */
function grammarAllows(sampler: Sampler, token: number): boolean {
  const grammar = sampler.grammarPlan?.grammar;
  if (!grammar) throw new Error("The chain has no grammar");
  const candidates = new TokenCandidates(1);
  candidates.setOne(token);
  llama.symbols.llama_sampler_apply(grammar, candidates.pointer);
  return candidates.logit(0) !== -Infinity;
}

/** A DRY stage whose breakers no other test uses (the templates are kept per settings). */
function dryStage(breakers: string[]): Extract<SamplerStage, { type: "dry" }> {
  return { type: "dry", multiplier: 0.8, base: 1.75, allowedLength: 2, lastN: 64, breakers };
}

/** 32 breakers of 64 characters, new to this process. */
function longBreakers(): string[] {
  const tag = crypto.randomUUID();
  return Array.from({ length: 32 }, (_, i) => `${tag} breaker ${i} `.padEnd(64, "x"));
}

Deno.test("lazyTriggers() waits for a marker that is one special token as that token", async () => {
  using model = await qwen2();
  const imStart = model.tokenize(IM_START, { addSpecial: false })[0] as number;
  const triggers = lazyTriggers(model, {
    // `<tool_call>` is not one token of this vocabulary, `Q` is an ordinary one.
    patterns: ["<\\|im_start\\|>", "<tool_call>", "Q", "<\\|im_start\\|>\\s*x"],
  });
  deepEqual(triggers, {
    patterns: ["<tool_call>", "Q", "<\\|im_start\\|>\\s*x"],
    tokens: [imStart],
  });
});

Deno.test("a lazy grammar waiting for a special token does not search the text before it", async () => {
  using model = await qwen2();
  const imStart = model.tokenize(IM_START, { addSpecial: false })[0] as number;
  const digit = model.tokenize("7", { addSpecial: false })[0] as number;
  const word = model.tokenize("hello", { addSpecial: false })[0] as number;
  using sampler = await Sampler.build(model, [
    {
      type: "grammar",
      grammar: `root ::= "${IM_START}" [0-9]+`,
      triggers: { patterns: ["<\\|im_start\\|>"] },
    },
    { type: "greedy" },
  ]);
  // 24 KB of text: searched once a token, it took over a second.
  const text = model.tokenize("hello world, here is a long answer. ".repeat(700), {
    addSpecial: false,
  });
  const started = performance.now();
  for (const token of text) sampler.accept(token);
  const took = performance.now() - started;
  ok(took < 150, `accepting ${text.length} tokens took ${took.toFixed(0)} ms`);
  ok(grammarAllows(sampler, word), "free text before the marker");
  sampler.accept(imStart);
  ok(grammarAllows(sampler, digit), "the grammar after the marker");
  ok(!grammarAllows(sampler, word), "only the grammar after the marker");
});

Deno.test("Sampler.build() makes a DRY stage with 32 long breakers while timers keep firing", async () => {
  using model = await qwen2();
  const { value: sampler, longestGap } = await whileTicking(() =>
    Sampler.build(model, [dryStage(longBreakers()), { type: "greedy" }])
  );
  sampler.close();
  ok(longestGap < 200, `the event loop stood still for ${longestGap.toFixed(0)} ms`);
});

Deno.test("a chain with an earlier chain's DRY settings does not match its breakers again", async () => {
  using model = await qwen2();
  const stages: SamplerStage[] = [dryStage(longBreakers()), { type: "greedy" }];
  let started = performance.now();
  Sampler.chain(model, stages).close();
  const first = performance.now() - started;
  started = performance.now();
  Sampler.chain(model, stages).close();
  const second = performance.now() - started;
  ok(second < first / 5, `first ${first.toFixed(1)} ms, second ${second.toFixed(1)} ms`);
});

Deno.test("a DRY stage cloned from a kept one penalises as a new one does", async () => {
  using model = await qwen2();
  const stage = dryStage(["\n", ":", '"', "*", crypto.randomUUID()]);
  Sampler.chain(model, [stage, { type: "greedy" }]).close(); // keeps the template
  using cloned = Sampler.chain(model, [stage, { type: "greedy" }]);
  const s = llama.symbols;
  const breakers = stage.breakers.map((b) => new TextEncoder().encode(b + "\0"));
  const pointers = BigUint64Array.from(
    breakers.map((b) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)))),
  );
  const fresh = s.llama_sampler_init_dry(
    model.vocab,
    stage.multiplier,
    stage.base,
    stage.allowedLength,
    stage.lastN,
    new Uint8Array(pointers.buffer),
    BigInt(breakers.length),
  );
  notEqual(fresh, null);
  try {
    // A repeat that a breaker cuts ("\n"), then one that grows.
    const history = model.tokenize("a b c d\na b c d e f a b c d e f a b c", { addSpecial: false });
    for (const token of history) {
      cloned.accept(token);
      s.llama_sampler_accept(fresh, token);
    }
    const flat = new Float32Array(model.nVocab);
    const a = new TokenCandidates(model.nVocab);
    const b = new TokenCandidates(model.nVocab);
    a.setAll(flat);
    b.setAll(flat);
    s.llama_sampler_apply(cloned.pointer, a.pointer);
    s.llama_sampler_apply(fresh, b.pointer);
    let penalised = 0;
    for (let i = 0; i < model.nVocab; i++) {
      equal(a.logit(i), b.logit(i), `token ${i}`);
      if (a.logit(i) < 0) penalised++;
    }
    ok(penalised > 0, "DRY penalised the token that would extend the repeat");
  } finally {
    s.llama_sampler_free(fresh);
  }
});
