/**
 * `POST /infill` through real HTTP and libllama, as the editor plugins call it: llama.vim's and
 * llama.vscode's request bodies (their warm-up with `n_predict: 0` and their completion with
 * `samplers`, `n_indent`, `t_max_*_ms` and `response_fields`), the limits that end an answer at a
 * line (`n_indent`, `t_max_predict_ms`), a model without FIM tokens (501) and bad bodies (400
 * naming the field). The layout itself is checked against llama-server in
 * tests/oracle/infill_oracle_test.ts.
 */

import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { Ollama } from "ollama";
import OpenAI from "openai";
import { postJson, startServer } from "./harness.ts";
import { fixtureAvailable } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";

const ignore = !fixtureAvailable("starcoder-fim") &&
  skipBecause("infill", "the llama.cpp source with its vocab files is missing");

const CODE = {
  model: "starcoder-fim",
  input_prefix: "def add(a, b):\n    ",
  input_suffix: "\n    return total\n",
  prompt: "total =",
};

async function answer(url: string, body: Record<string, unknown>, status = 200) {
  const response = await postJson(`${url}/infill`, body);
  const json = await response.json();
  equal(response.status, status, JSON.stringify(json));
  return json;
}

Deno.test({
  name: "/infill takes llama.vim's warm-up and completion requests as they are",
  ignore,
  fn: async () => {
    // A batch under the context leaves room for the other files (llama-server's budget).
    await using server = await startServer({
      fixtures: ["starcoder-fim"],
      load: { batchSize: 128 },
    });
    const file = "import os\nimport sys\n\n\ndef cwd():\n    return os.getcwd()\n";
    const extra = [{ text: file, time: 1733450000, filename: "a.py" }];
    // The warm-up: the other files' prompt evaluated ahead, nothing generated or returned.
    const warm = await answer(server.url, {
      ...CODE,
      input_prefix: "",
      input_suffix: "",
      input_extra: extra,
      prompt: "",
      n_predict: 0,
      temperature: 0.0,
      stream: false,
      samplers: [],
      cache_prompt: true,
      t_max_prompt_ms: 1,
      t_max_predict_ms: 1,
      response_fields: [""],
    });
    deepEqual(warm, {});
    const fields = [
      "content",
      "timings/prompt_n",
      "timings/cache_n",
      "timings/prompt_ms",
      "timings/predicted_n",
      "timings/predicted_per_second",
      "truncated",
      "tokens_cached",
    ];
    const completion = await answer(server.url, {
      ...CODE,
      input_extra: extra,
      n_predict: 8,
      n_indent: 4,
      top_k: 40,
      top_p: 0.99,
      stream: false,
      samplers: ["top_k", "top_p", "infill"],
      cache_prompt: true,
      t_max_prompt_ms: 500,
      t_max_predict_ms: 1500,
      response_fields: fields,
      id_slot: 0,
    });
    deepEqual(Object.keys(completion).sort(), [...fields].sort());
    equal(typeof completion.content, "string");
    // The infill stage may end the answer at once (it favours ending): no token is a fine answer.
    equal(typeof completion["timings/predicted_n"], "number");
    equal(completion.truncated, false);
    // The warm-up left the other files' tokens in the cache.
    const extraTokens = (await (await postJson(`${server.url}/tokenize`, {
      model: "starcoder-fim",
      content: `\n\n--- snippet ---\n\n${file}`,
    })).json()).tokens.length;
    ok(completion["timings/cache_n"] >= extraTokens, JSON.stringify(completion));
  },
});

Deno.test({
  name:
    "/infill ends an answer at a line: n_indent cuts an under-indented line, t_max_predict_ms a late one",
  ignore,
  fn: async () => {
    await using server = await startServer({ fixtures: ["starcoder-fim"] });
    const lines = { ...CODE, grammar: 'root ::= "a\\n  b\\n    c\\n  d\\n"', temperature: 0 };
    const whole = await answer(server.url, lines);
    equal(whole.content, "a\n  b\n    c\n  d\n");
    const cut = await answer(server.url, { ...lines, n_indent: 3 });
    equal(cut.content, "a\n  ");
    equal(cut.stop_type, "limit");
    const deeper = await answer(server.url, { ...lines, n_indent: 2 });
    equal(deeper.content, "a\n  b\n    c\n  d\n");
    // Many lines, one token each at most: after 1 ms the answer ends at the next newline.
    const many = { ...CODE, grammar: 'root ::= ("ab\\n")+', temperature: 0, n_predict: 200 };
    const full = await answer(server.url, many);
    equal(full.tokens_predicted, 200);
    const quick = await answer(server.url, { ...many, t_max_predict_ms: 1 });
    ok((quick.tokens_predicted as number) < 200, `${quick.tokens_predicted} tokens`);
    match(String(quick.content), /^(ab\n)+$/);
    equal(quick.stop_type, "limit");
  },
});

Deno.test({
  name: "/infill: samplers decide the chain (top_k 1 alone draws the greedy tokens for any seed)",
  ignore,
  fn: async () => {
    await using server = await startServer({ fixtures: ["starcoder-fim"] });
    const base = { ...CODE, n_predict: 6, return_tokens: true };
    const greedy = (await answer(server.url, { ...base, temperature: 0 })).tokens;
    for (const seed of [1, 2, 3]) {
      const named = await answer(server.url, {
        ...base,
        seed,
        temperature: 1.5,
        top_k: 1,
        samplers: ["Top-K", "temp", "infill"],
      });
      deepEqual(named.tokens, greedy, `seed ${seed}`);
      deepEqual(named.generation_settings.samplers, ["top_k", "temperature", "infill"]);
      const letters = await answer(server.url, { ...base, seed, top_k: 1, samplers: "k" });
      deepEqual(letters.tokens, greedy, `letters, seed ${seed}`);
    }
    // The list's order counts: XTC at threshold 0 keeps only the least likely token it sees, so
    // after top-k 2 it leaves the second best, before it the least likely of all; without the
    // list a greedy draw has no XTC.
    const xtc = {
      ...base,
      n_predict: 1,
      temperature: 0,
      top_k: 2,
      xtc_probability: 1,
      xtc_threshold: 0,
    };
    const first = async (samplers?: string[]) =>
      (await answer(server.url, { ...xtc, ...(samplers ? { samplers } : {}) })).tokens[0];
    const second = await first(["top_k", "xtc"]);
    const least = await first(["xtc", "top_k"]);
    ok(
      second !== greedy[0] && least !== greedy[0] && second !== least,
      `${greedy[0]} ${second} ${least}`,
    );
    equal(await first(), greedy[0]);
    // Without the list, a high temperature draws other tokens for some seed.
    const drawn = await Promise.all(
      [1, 2, 3].map((seed) =>
        answer(server.url, { ...base, seed, temperature: 1.5, top_k: 0, min_p: 0 })
      ),
    );
    ok(drawn.some((d) => JSON.stringify(d.tokens) !== JSON.stringify(greedy)));
  },
});

Deno.test({
  name: "/infill refuses a model without FIM tokens (501) and bad bodies (400 naming the field)",
  ignore,
  fn: async () => {
    await using server = await startServer({ fixtures: ["starcoder-fim", "qwen2"] });
    const refused = await answer(server.url, { ...CODE, model: "qwen2" }, 501);
    equal(refused.error.code, "not_supported");
    match(refused.error.message, /no FIM prefix, suffix, middle token/);
    // The openai SDK retries a 5xx unless told not to: one request, not three.
    let requests = 0;
    const client = new OpenAI({
      baseURL: `${server.url}/v1`,
      apiKey: "unused",
      fetch: (url: string | URL | Request, init?: RequestInit) => {
        requests++;
        return fetch(url, init);
      },
    });
    await rejects(
      client.completions.create({ model: "qwen2", prompt: "def f(", suffix: "1", max_tokens: 3 }),
      (error: unknown) => error instanceof OpenAI.APIError && error.status === 501,
    );
    equal(requests, 1);
    for (
      const [body, param] of [
        [{ input_suffix: "" }, "input_prefix"],
        [{ input_prefix: "" }, "input_suffix"],
        [{ ...CODE, input_extra: "x" }, "input_extra"],
        [{ ...CODE, input_extra: [{ filename: "a" }] }, "input_extra"],
        [{ ...CODE, input_extra: [{ text: "a", filename: 3 }] }, "input_extra"],
        [{ ...CODE, n_keep: 2 }, "n_keep"],
        [{ ...CODE, n_probs: 21 }, "n_probs"],
        [{ ...CODE, n_probs: 2, post_sampling_probs: true }, "post_sampling_probs"],
        [{ ...CODE, n_cmpl: 5 }, "n_cmpl"],
        [{ ...CODE, samplers: ["top_k", "tail_free"] }, "samplers"],
        [{ ...CODE, samplers: "kq" }, "samplers"],
        [{ ...CODE, samplers: [3] }, "samplers"],
        [{ ...CODE, samplers: ["top_k"], top_p: 0.5 }, "top_p"],
        [{ ...CODE, samplers: ["top_k"], temperature: 0.8 }, "temperature"],
        [{ ...CODE, samplers: ["top_k"], mirostat: 2 }, "samplers"],
        [{ ...CODE, id_slot: -2 }, "id_slot"],
        [{ ...CODE, n_indent: -1 }, "n_indent"],
        [{ ...CODE, t_max_predict_ms: "1" }, "t_max_predict_ms"],
        [{ ...CODE, response_fields: [3] }, "response_fields"],
        [{ ...CODE, response_fields: "content" }, "response_fields"],
      ] as const
    ) {
      const json = await answer(server.url, { model: "starcoder-fim", ...body }, 400);
      equal(json.error.param, param, JSON.stringify(body));
    }
    // SillyTavern's list names samplers llama.cpp dropped or leaves idle: no stage, no error.
    const idle = await answer(server.url, {
      ...CODE,
      n_predict: 1,
      samplers: [
        "penalties",
        "dry",
        "top_n_sigma",
        "top_k",
        "typ_p",
        "tfs_z",
        "typical_p",
        "xtc",
        "top_p",
        "adaptive_p",
        "min_p",
        "temperature",
      ],
    });
    equal(idle.tokens_predicted, 1);
  },
});

Deno.test({
  name:
    "Ollama's suffix and OpenAI's suffix fill the gap as /infill does (ollama and openai clients)",
  ignore,
  fn: async () => {
    await using server = await startServer({ fixtures: ["starcoder-fim"], ollamaListener: true });
    const before = "def add(a, b):\n    ";
    const after = "\n    return total\n";
    const infilled = await answer(server.url, {
      model: "starcoder-fim",
      input_prefix: before,
      input_suffix: after,
      n_predict: 6,
      temperature: 0,
    });
    equal(infilled.tokens_predicted as number, 6, JSON.stringify(infilled));
    const ollama = new Ollama({ host: server.ollamaUrl! });
    const generated = await ollama.generate({
      model: "starcoder-fim",
      prompt: before,
      suffix: after,
      options: { num_predict: 6, temperature: 0 },
    });
    equal(generated.response, infilled.content);
    equal(generated.prompt_eval_count, infilled.tokens_evaluated);
    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
    const completed = await openai.completions.create({
      model: "starcoder-fim",
      prompt: before,
      suffix: after,
      max_tokens: 6,
      temperature: 0,
    });
    equal(completed.choices[0]?.text, infilled.content);
    // An empty prefix is a gap at the start of the file, not a model load.
    const atStart = await ollama.generate({
      model: "starcoder-fim",
      prompt: "",
      suffix: after,
      options: { num_predict: 2, temperature: 0 },
    });
    ok((atStart.prompt_eval_count ?? 0) > 0);
  },
});

Deno.test({
  name:
    "/infill cuts a file of 300,000 tokens in input_extra to the budget (it once failed with a 500)",
  ignore,
  fn: async () => {
    await using server = await startServer({ fixtures: ["starcoder-fim"] });
    const answered = await answer(server.url, {
      ...CODE,
      input_extra: [{ filename: "big.txt", text: "a ".repeat(300_000) }],
      n_predict: 1,
    });
    ok((answered.tokens_evaluated as number) <= 512, `${answered.tokens_evaluated} tokens`);
  },
});
