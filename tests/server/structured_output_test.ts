import { deepEqual, equal, match, ok } from "node:assert/strict";
import { SLOW_TO_REFUSE } from "../fixtures/grammars.ts";
import { SCHEMA_CORPUS } from "../fixtures/schema_corpus.ts";
import { compileSchema } from "../engine/json_schema_ajv.ts";
import { buildTinyVocab } from "../fixtures/tiny_vocab.ts";
import { postJson, readSse, startServer, type TestServer } from "./harness.ts";
import { whileTicking } from "../helpers.ts";

const MODEL = "tiny-f32";
/** Room enough for every corpus schema's output to end; "length" is a failure. */
const MAX_TOKENS = 300;
const SEEDS = [1, 2, 3];

/** The three spellings a client may use for a schema. */
function schemaFields(schema: unknown, spelling: number): Record<string, unknown> {
  switch (spelling % 3) {
    case 0:
      return {
        response_format: {
          type: "json_schema",
          json_schema: { name: "out", schema, strict: true },
        },
      };
    case 1:
      return { json_schema: schema }; // llama-server, top level
    default:
      return { response_format: { type: "json_object", schema } }; // llama-server
  }
}

interface Output {
  text: string;
  finish: string;
}

/** One generation on chat or completions, streamed or not. */
async function generate(
  server: TestServer,
  chat: boolean,
  stream: boolean,
  fields: Record<string, unknown>,
): Promise<Output> {
  const body = {
    model: MODEL,
    ...(chat ? { messages: [{ role: "user", content: "Answer in JSON" }] } : { prompt: "JSON:" }),
    max_tokens: MAX_TOKENS,
    stream,
    ...fields,
  };
  const response = await postJson(
    `${server.url}/v1/${chat ? "chat/completions" : "completions"}`,
    body,
  );
  if (response.status !== 200) throw new Error(`${response.status}: ${await response.text()}`);
  if (!stream) {
    const json = await response.json();
    const choice = json.choices[0];
    return { text: chat ? choice.message.content : choice.text, finish: choice.finish_reason };
  }
  const { events } = await readSse(response);
  equal(events.at(-1), "[DONE]");
  let text = "";
  let finish = "";
  for (const event of events.slice(0, -1)) {
    const choice = JSON.parse(event).choices[0];
    text += chat ? choice.delta.content ?? "" : choice.text;
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  return { text, finish };
}

/** Runs tasks with at most `limit` in flight (the server has 4 slots). */
async function pool<T>(tasks: (() => Promise<T>)[], limit = 4): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}

Deno.test("every corpus schema constrains real generations, streamed and not, at several seeds", async () => {
  await using server = await startServer();
  const failures: string[] = [];
  const tasks = SCHEMA_CORPUS.flatMap((entry, i) => {
    const validate = compileSchema(entry.schema, entry.draft);
    const chat = i % 2 === 0;
    const check = (label: string, out: Output): void => {
      const where = `${entry.name} (${label}, ${chat ? "chat" : "completions"})`;
      if (out.finish !== "stop") {
        failures.push(`${where}: finish_reason ${out.finish}: ${out.text}`);
        return;
      }
      let value: unknown;
      try {
        value = JSON.parse(out.text);
      } catch {
        failures.push(`${where}: not JSON: ${out.text}`);
        return;
      }
      if (!validate(value)) {
        failures.push(`${where}: ${out.text} fails: ${JSON.stringify(validate.errors)}`);
      }
    };
    const run = (seed: number | undefined) => async () => {
      const sampling = seed === undefined ? { temperature: 0 } : { seed, temperature: 1 };
      const fields = { ...schemaFields(entry.schema, i + (seed ?? 0)), ...sampling };
      const whole = await generate(server, chat, false, fields);
      const streamed = await generate(server, chat, true, fields);
      const label = seed === undefined ? "greedy" : `seed ${seed}`;
      check(label, whole);
      check(`${label}, streamed`, streamed);
    };
    return [undefined, ...SEEDS].map(run);
  });
  await pool(tasks);
  deepEqual(failures, []);
});

Deno.test("response_format json_object gives a JSON object on chat and completions", async () => {
  await using server = await startServer();
  // Free JSON has unbounded strings, which a random-weight model never ends; a bias towards
  // `"` and `}` makes it end them.
  const tokens = buildTinyVocab().tokens;
  const bias = { [tokens.indexOf('"')]: 8, [tokens.indexOf("}")]: 8 };
  for (const chat of [true, false]) {
    for (const stream of [false, true]) {
      const out = await generate(server, chat, stream, {
        response_format: { type: "json_object" },
        logit_bias: bias,
        seed: stream ? 1 : 2,
      });
      equal(out.finish, "stop");
      const value = JSON.parse(out.text);
      ok(typeof value === "object" && value !== null && !Array.isArray(value), out.text);
    }
  }
  // /diag counts the constrained tokens and the picks the grammar refused among them.
  const slots = (await (await fetch(`${server.url}/diag`)).json()).models[0].slots;
  ok(slots.grammarTokens >= 8, JSON.stringify(slots));
  ok(slots.grammarRefusals > 0 && slots.grammarRefusals <= slots.grammarTokens);
});

Deno.test("a schema holds under every sampler setting", async () => {
  await using server = await startServer();
  const entry = SCHEMA_CORPUS.find((e) => e.name === "OpenAI strict style")!;
  const validate = compileSchema(entry.schema);
  const settings = [
    { temperature: 0 },
    { temperature: 1.5, top_k: 0, top_p: 1, min_p: 0, seed: 5 },
    { temperature: 0.7, top_k: 5, top_p: 0.5, min_p: 0.2, seed: 6 },
    { temperature: 1, repeat_penalty: 1.3, presence_penalty: 1, frequency_penalty: 1, seed: 7 },
    { temperature: 1, logit_bias: { "5": 10, "7": -100 }, seed: 8 },
    { temperature: 3, seed: 9 },
  ];
  for (const sampling of settings) {
    const out = await generate(server, true, false, {
      ...schemaFields(entry.schema, 0),
      ...sampling,
    });
    equal(out.finish, "stop", JSON.stringify(sampling));
    ok(validate(JSON.parse(out.text)), `${JSON.stringify(sampling)}: ${out.text}`);
  }
});

Deno.test("native /api/generate honours response_format and json_schema", async () => {
  await using server = await startServer();
  const schema = {
    type: "object",
    properties: { ok: { type: "boolean" } },
    required: ["ok"],
    additionalProperties: false,
  };
  for (const fields of [{ json_schema: schema }, schemaFields(schema, 0)]) {
    const response = await postJson(`${server.url}/api/generate`, {
      model: MODEL,
      prompt: "x",
      max_tokens: 50,
      temperature: 0.8,
      seed: 3,
      stream: false,
      ...fields,
    });
    equal(response.status, 200);
    const body = await response.json();
    equal(body.finish_reason, "stop");
    equal(typeof JSON.parse(body.response).ok, "boolean");
  }
});

Deno.test('response_format {"type":"text"} leaves the output free', async () => {
  await using server = await startServer();
  const out = await generate(server, true, false, {
    response_format: { type: "text" },
    temperature: 0,
    max_tokens: 16,
  });
  equal(out.finish, "length");
  const plain = await generate(server, true, false, { temperature: 0, max_tokens: 16 });
  equal(out.text, plain.text);
});

/** Posts a chat request and returns the error body of a 400. */
async function badRequest(server: TestServer, fields: Record<string, unknown>) {
  const response = await postJson(`${server.url}/v1/chat/completions`, {
    model: MODEL,
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 4,
    ...fields,
  });
  const body = await response.json();
  equal(response.status, 400, JSON.stringify(body));
  equal(body.error.type, "invalid_request_error");
  return body.error as { message: string; param: string | null; code: string };
}

Deno.test("what structured output cannot honour is a 400 that says why", async () => {
  await using server = await startServer();
  const sound = await badRequest(server, { response_format: { type: "sound" } });
  match(sound.message, /Unsupported response_format type "sound"/);
  equal(sound.param, "response_format");

  const keyword = await badRequest(server, schemaFields({ type: "array", uniqueItems: true }, 0));
  match(keyword.message, /"uniqueItems"/);
  equal(keyword.param, "response_format");

  const top = await badRequest(server, { json_schema: { type: "string", format: "iri" } });
  match(top.message, /"format".*iri/);
  equal(top.param, "json_schema");

  const missing = await badRequest(server, {
    response_format: { type: "json_schema", json_schema: { name: "x" } },
  });
  match(missing.message, /json_schema.schema" is missing/);

  const notObject = await badRequest(server, { response_format: "json" });
  equal(notObject.param, "response_format");

  const both = await badRequest(server, {
    grammar: 'root ::= "a"',
    response_format: { type: "json_object" },
  });
  match(both.message, /only one of "grammar" and "response_format"/);

  const twoSchemas = await badRequest(server, {
    json_schema: { type: "boolean" },
    response_format: {
      type: "json_schema",
      json_schema: { name: "x", schema: { type: "boolean" } },
    },
  });
  match(twoSchemas.message, /only one of/);
});

Deno.test("an invalid GBNF grammar is a 400 with the parser's message, naming the field", async () => {
  await using server = await startServer();
  const error = await badRequest(server, { grammar: 'root ::= "a" | ( "b"' });
  match(error.message, /^Invalid grammar at 1:\d+: expected '\)'/);
  equal(error.param, "grammar");
  const undefinedRule = await badRequest(server, { grammar: "root ::= nothing" });
  match(undefinedRule.message, /'nothing' is used but never defined/);
  equal(undefinedRule.param, "grammar");
});

Deno.test("a grammar whose text matches in too many ways is a 400 at once, not minutes per token", async () => {
  // On qwen2's 152k vocabulary, llama.cpp's sampler takes about 15 s per token for 24 optional
  // spaces in a row and hours for 32 (its runs of spaces match them in C(24, k) ways).
  await using server = await startServer({ fixtures: ["qwen2"] });
  const started = performance.now();
  for (const count of [24, 32]) {
    const response = await postJson(`${server.url}/completion`, {
      model: "qwen2",
      prompt: "Hello",
      n_predict: 1,
      grammar: `root ::= (" "?){${count}} "b"`,
    });
    const body = await response.json();
    equal(response.status, 400, JSON.stringify(body));
    match(body.error.message, /more than 100000 parse stacks to check one token .*maxSearchPaths/);
  }
  // A pattern too large for an automaton is written as it reads, and refused the same way.
  const schemaRequest = (pattern: string) =>
    postJson(`${server.url}/v1/chat/completions`, {
      model: "qwen2",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 1,
      response_format: {
        type: "json_schema",
        json_schema: { name: "x", schema: { type: "string", pattern } },
      },
    });
  const schema = await schemaRequest("^(?:[^\\s]{1,30}\\s?){1,50}$");
  const schemaBody = await schema.json();
  equal(schema.status, 400, JSON.stringify(schemaBody));
  match(schemaBody.error.message, /maxSearchPaths/);
  equal(schemaBody.error.param, "response_format");
  ok(performance.now() - started < 5_000, `${performance.now() - started} ms`);
  // The 24 optional spaces as a pattern: its automaton reads them one way.
  const automaton = await schemaRequest("^( ?){24}b$");
  equal(automaton.status, 200, await automaton.clone().text());
  await automaton.body?.cancel();
  // The same spaces as one repetition are one way each: served.
  const fine = await postJson(`${server.url}/completion`, {
    model: "qwen2",
    prompt: "Hello",
    n_predict: 2,
    grammar: 'root ::= " "{0,24} "b"',
  });
  equal(fine.status, 200, await fine.clone().text());
  await fine.body?.cancel();
});

Deno.test("a large grammar is checked off the event loop, which serves others meanwhile", async () => {
  await using server = await startServer();
  // The server shares this process: its event loop is the one the timer ticks on.
  const started = performance.now();
  const { value: response, longestGap } = await whileTicking(() =>
    postJson(`${server.url}/completion`, {
      prompt: "Hello",
      n_predict: 2,
      grammar: SLOW_TO_REFUSE, // about 0.2 s, which the event loop used to spend on it
    })
  );
  const took = performance.now() - started;
  equal(response.status, 400);
  match((await response.json()).error.message, /too many to bound/);
  ok(took > 100, `the check took only ${took} ms`);
  ok(longestGap < took / 4, `the event loop stood still ${longestGap} ms of ${took}`);
});

Deno.test("a grammar asking for a token that ends generation is a 400, and the server serves on", async () => {
  await using server = await startServer();
  // <|im_end|> is one token of tiny-f32's vocabulary, and ends generation.
  const error = await badRequest(server, { grammar: 'root ::= <|im_end|> "a"' });
  match(error.message, /<\|im_end\|> ends the generation/);
  const health = await fetch(`${server.url}/health`);
  equal(health.status, 200);
  await health.body?.cancel();
});
