import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { Batch, Context, Llama, Model, Sampler } from "../../src/ffi/mod.ts";
import type { SamplerStage } from "../../src/ffi/sampler.ts";
import { cString } from "../../src/ffi/cstring.ts";
import { bestNeeded } from "../../src/ffi/grammar_check.ts";
import {
  LLAMA_TOKEN_NULL,
  LlamaLogitBias,
  LlamaSamplerChainParams,
} from "../../src/ffi/layouts.ts";
import { jsonObjectGrammar } from "../../src/engine/structured/json_schema.ts";
import { fixtureModel } from "../fixtures/models.ts";

const llama = Llama.open();
const PROMPT = "Answer in JSON:";

/** Greedy-decodes up to `n` tokens, each picked by `pick` from the last row's logits. */
async function decodeWith(
  model: Model,
  n: number,
  pick: (ctx: Context, index: number) => number,
): Promise<number[]> {
  using ctx = await Context.create(model, { nCtx: 256, nBatch: 64 });
  using batch = new Batch(llama, 64);
  const prompt = [...model.tokenize(PROMPT)];
  prompt.forEach((token, i) => batch.add(token, i, 0, i === prompt.length - 1));
  await ctx.decode(batch);
  const tokens: number[] = [];
  for (let step = 0; step < n; step++) {
    const token = pick(ctx, batch.length - 1);
    tokens.push(token);
    if (model.isEog(token)) break;
    batch.clear();
    batch.add(token, prompt.length + step, 0, true);
    await ctx.decode(batch);
  }
  return tokens;
}

/**
 * A native chain that narrows every candidate by the grammar first, as the chain used to, then
 * applies `rest` (the calls that make the other stages).
 */
function narrowingFirst(
  model: Model,
  grammar: string,
  rest: ((s: typeof llama.symbols) => Deno.PointerValue)[],
): Deno.PointerObject {
  const s = llama.symbols;
  const chain = s.llama_sampler_chain_init(LlamaSamplerChainParams.alloc());
  if (chain === null) throw new Error("no chain");
  s.llama_sampler_chain_add(
    chain,
    s.llama_sampler_init_grammar(model.vocab, cString(grammar), cString("root")),
  );
  for (const make of rest) s.llama_sampler_chain_add(chain, make(s));
  return chain;
}

/** `llama_sampler_init_logit_bias`'s count and array for a bias map. */
function biasArgs(bias: ReadonlyMap<number, number>): [number, Uint8Array<ArrayBuffer>] {
  const entries = [...bias];
  const buf = new Uint8Array(entries.length * LlamaLogitBias.size);
  entries.forEach(([token, value], i) => {
    const row = buf.subarray(i * LlamaLogitBias.size, (i + 1) * LlamaLogitBias.size);
    LlamaLogitBias.set(row, "token", token);
    LlamaLogitBias.set(row, "bias", value);
  });
  return [entries.length, buf];
}

/** Decodes with a native chain, then frees it. */
function decodeWithNative(model: Model, n: number, chain: Deno.PointerObject): Promise<number[]> {
  const tokens = decodeWith(
    model,
    n,
    (ctx, index) => llama.symbols.llama_sampler_sample(chain, ctx.pointer, index),
  );
  return tokens.finally(() => llama.symbols.llama_sampler_free(chain));
}

Deno.test("a grammar that checks the chain's greedy pick gives the tokens of one narrowing every candidate first, penalties and bias included", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const bias = new Map([[model.tokenize("{", { addSpecial: false })[0] as number, 3]]);
  // JSON (allowed tokens many), digits (few: the search falls back to every token), letters.
  for (const grammar of [jsonObjectGrammar(), "root ::= [0-9]+", "root ::= [a-z ]+"]) {
    for (const penalties of [false, true]) {
      const expected = await decodeWithNative(
        model,
        32,
        narrowingFirst(model, grammar, [
          ...(penalties
            ? [
              (s: typeof llama.symbols) =>
                s.llama_sampler_init_logit_bias(model.nVocab, ...biasArgs(bias)),
              (s: typeof llama.symbols) =>
                s.llama_sampler_init_penalties(model.nVocab, 64, 1.5, 0, 0),
            ]
            : []),
          (s) => s.llama_sampler_init_greedy(),
        ]),
      );
      const stages: SamplerStage[] = [
        ...(penalties ? [{ type: "logit_bias", bias } as const] : []),
        { type: "grammar", grammar },
        ...(penalties
          ? [{ type: "penalties", lastN: 64, repeat: 1.5, frequency: 0, presence: 0 } as const]
          : []),
        { type: "greedy" },
      ];
      using sampler = await Sampler.build(model, stages);
      const tokens = await decodeWith(model, 32, (ctx, index) => sampler.sample(ctx, index));
      deepEqual(tokens, expected, `${grammar.slice(0, 20)}, penalties ${penalties}`);
      // A model with random weights does not follow the format: its picks were refused, and the
      // penalties' history had to forget each refused pick for the tokens to match.
      ok(sampler.grammarRefusals > 0, `${sampler.grammarRefusals} refusals`);
      ok(sampler.grammarRefusals <= tokens.length);
    }
  }
});

Deno.test("a grammar that allows the model's picks refuses none, and a seeded draw under a grammar repeats", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const free = await decodeWith(model, 8, (ctx, index) => {
    using greedy = Sampler.chain(model, [{ type: "greedy" }]);
    return greedy.sample(ctx, index);
  });
  // The text greedy decoding makes, spelled out as the grammar's start.
  const text = new TextDecoder().decode(
    new Uint8Array(free.flatMap((token) => [...model.tokenBytes(token)])),
  );
  ok(/^[ -~]+$/.test(text), `printable ASCII: ${JSON.stringify(text)}`);
  using sampler = await Sampler.build(model, [
    { type: "grammar", grammar: `root ::= ${JSON.stringify(text)} [a-z]*` },
    { type: "greedy" },
  ]);
  const tokens = await decodeWith(model, 8, (ctx, index) => sampler.sample(ctx, index));
  deepEqual(tokens, free);
  equal(sampler.grammarRefusals, 0);

  const drawn = async () => {
    using chain = await Sampler.build(model, [
      { type: "grammar", grammar: jsonObjectGrammar() },
      { type: "top_k", k: 40 },
      { type: "temp", temperature: 0.8 },
      { type: "dist", seed: 7 },
    ]);
    const tokens = await decodeWith(model, 32, (ctx, index) => chain.sample(ctx, index));
    return { tokens, refusals: chain.grammarRefusals };
  };
  const first = await drawn();
  deepEqual(await drawn(), first, "the same seed, the same draws and refusals");
  ok(first.refusals > 0);
});

Deno.test("a seeded draw whose every pick the grammar refuses draws what narrowing first draws", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const grammar = "root ::= [0-9]+";
  const expected = await decodeWithNative(
    model,
    24,
    narrowingFirst(model, grammar, [
      (s) => s.llama_sampler_init_top_k(40),
      (s) => s.llama_sampler_init_temp(0.8),
      (s) => s.llama_sampler_init_dist(7),
    ]),
  );
  using sampler = await Sampler.build(model, [
    { type: "grammar", grammar },
    { type: "top_k", k: 40 },
    { type: "temp", temperature: 0.8 },
    { type: "dist", seed: 7 },
  ]);
  const tokens = await decodeWith(model, 24, (ctx, index) => sampler.sample(ctx, index));
  // Every first pick was refused: each draw that picked it was put back before the second.
  equal(sampler.grammarRefusals, tokens.length);
  deepEqual(tokens, expected);
});

Deno.test("a refused top-k draw or greedy pick searches the best candidates and gives narrowing first's tokens", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  // Digits get a large boost before each pick, so the first pick is always a digit, which the
  // grammar refuses; most other tokens it allows, so the best allowed ones are near the top.
  const grammar = "root ::= [^0-9]+";
  const digits = [...Array(model.nVocab).keys()].filter((token) =>
    /^[0-9]+$/.test(new TextDecoder().decode(model.tokenBytes(token)))
  );
  ok(digits.length > 0);
  const boosted =
    (pick: (ctx: Context, index: number) => number) => (ctx: Context, index: number) => {
      const logits = ctx.logits(index);
      for (const token of digits) logits[token] = (logits[token] as number) + 50;
      return pick(ctx, index);
    };
  const cases: {
    stages: SamplerStage[];
    native: ((s: typeof llama.symbols) => Deno.PointerValue)[];
  }[] = [
    {
      stages: [
        { type: "top_k", k: 40 },
        { type: "top_p", p: 0.9 },
        { type: "min_p", p: 0.05 },
        { type: "temp", temperature: 0.8 },
        { type: "dist", seed: 11 },
      ],
      native: [
        (s) => s.llama_sampler_init_top_k(40),
        (s) => s.llama_sampler_init_top_p(0.9, 1n),
        (s) => s.llama_sampler_init_min_p(0.05, 1n),
        (s) => s.llama_sampler_init_temp(0.8),
        (s) => s.llama_sampler_init_dist(11),
      ],
    },
    { stages: [{ type: "greedy" }], native: [(s) => s.llama_sampler_init_greedy()] },
  ];
  for (const { stages, native } of cases) {
    const chain = narrowingFirst(model, grammar, native);
    const expected = await decodeWith(
      model,
      24,
      boosted((ctx, index) => llama.symbols.llama_sampler_sample(chain, ctx.pointer, index)),
    );
    llama.symbols.llama_sampler_free(chain);
    using sampler = await Sampler.build(model, [{ type: "grammar", grammar }, ...stages]);
    const tokens = await decodeWith(model, 24, boosted((ctx, index) => sampler.sample(ctx, index)));
    equal(sampler.grammarRefusals, tokens.length, "every first pick was a digit");
    deepEqual(tokens, expected, stages.at(-1)?.type);
  }
});

Deno.test("bestNeeded() names the chains whose refused pick depends only on the best allowed tokens", () => {
  const penalties = {
    type: "penalties",
    lastN: 64,
    repeat: 1.1,
    frequency: 0,
    presence: 0,
  } as const;
  const draw = [{ type: "temp", temperature: 0.7 }, { type: "dist", seed: 1 }] as const;
  deepEqual(bestNeeded([{ type: "greedy" }]), { count: 1, greedy: true });
  deepEqual(bestNeeded([penalties, { type: "greedy" }]), { count: 1, greedy: true });
  deepEqual(bestNeeded([{ type: "top_k", k: 40 }, { type: "top_p", p: 0.9 }, ...draw]), {
    count: 40,
    greedy: false,
  });
  equal(bestNeeded([penalties, { type: "top_k", k: 40 }, ...draw]), undefined);
  equal(bestNeeded([{ type: "top_p", p: 0.9 }, ...draw]), undefined);
  equal(
    bestNeeded([{ type: "top_k", k: 100_000 }, ...draw]),
    undefined,
    "more than a search finds",
  );
  equal(
    bestNeeded([{ type: "top_k", k: 40 }, { type: "temp", temperature: 0.7 }, { type: "greedy" }]),
    undefined,
  );
});

Deno.test("a chain takes at most one grammar stage", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const grammar: SamplerStage = { type: "grammar", grammar: 'root ::= "a"' };
  throws(() => Sampler.chain(model, [grammar, grammar, { type: "greedy" }]), RangeError);
});

Deno.test("a grammar that allows no token gives no token, greedy or drawn, instead of llama.cpp's abort", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const eog = [...Array(model.nVocab).keys()].find((id) => model.isEog(id));
  ok(eog !== undefined);
  for (const pick of [[{ type: "greedy" }], [{ type: "dist", seed: 1 }]] as SamplerStage[][]) {
    // An end-of-generation token, which llama.cpp's grammar never lets through.
    using sampler = await Sampler.build(model, [
      { type: "grammar", grammar: `root ::= <[${eog}]> "a"` },
      ...pick,
    ]);
    using ctx = await Context.create(model, { nCtx: 256, nBatch: 64 });
    using batch = new Batch(llama, 64);
    const prompt = [...model.tokenize(PROMPT)];
    prompt.forEach((token, i) => batch.add(token, i, 0, i === prompt.length - 1));
    await ctx.decode(batch);
    equal(sampler.sample(ctx, batch.length - 1), LLAMA_TOKEN_NULL, JSON.stringify(pick));
  }
});
