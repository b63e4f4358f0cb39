/**
 * Seeded generators of bad requests for the reliability suite: a catalogue of wrong values
 * for every field the server reads (src/server/request_body.ts and the handlers), bodies that
 * are not JSON, not UTF-8 or too large, wrong content types, odd headers, odd paths, HTTP that
 * is not HTTP, and the path-traversal names the security test sends. Everything is drawn from
 * a {@link Prng} seed, so a failing run is reproduced by its printed seed.
 *
 * @module
 */

import { Prng } from "../fixtures/prng.ts";
import { REPO_ROOT } from "../fixtures/models.ts";
import { join } from "node:path";

/** A seeded random source with the helpers the generators need. */
export class Rand {
  readonly #prng: Prng;

  /** @param seed Equal seeds give equal sequences. */
  constructor(seed: number | string) {
    this.#prng = new Prng(seed);
  }

  /**
   * A uniform integer in [lo, hi].
   *
   * @param lo Lowest value.
   * @param hi Highest value.
   * @returns The integer.
   */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.#prng.next() * (hi - lo + 1));
  }

  /**
   * True with probability `p`.
   *
   * @param p Probability.
   * @returns The coin.
   */
  chance(p: number): boolean {
    return this.#prng.next() < p;
  }

  /**
   * One element of a non-empty array.
   *
   * @param items The choices.
   * @returns One of them.
   */
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)] as T;
  }

  /**
   * Short printable text (words and a little punctuation).
   *
   * @param maxWords Most words.
   * @returns The text.
   */
  text(maxWords = 6): string {
    const words = ["once", "upon", "a", "time", "hello", "the", "dog", "é", "日本", "🙂", "\n"];
    return Array.from({ length: this.int(1, maxWords) }, () => this.pick(words)).join(" ");
  }
}

/** JSON text inserted as is by {@link toJson} (for values too deep or too big to build). */
export class RawJson {
  /** @param text The JSON text. */
  constructor(readonly text: string) {}
}

/**
 * Serialises a value, inserting {@link RawJson} text verbatim.
 *
 * @param value The value (shallow objects and arrays, whose leaves may be RawJson).
 * @returns JSON text.
 */
export function toJson(value: unknown): string {
  if (value instanceof RawJson) return value.text;
  if (Array.isArray(value)) return `[${value.map(toJson).join(",")}]`;
  if (typeof value === "object" && value !== null) {
    return `{${
      Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`).join(",")
    }}`;
  }
  return JSON.stringify(value) ?? "null";
}

const memo = new Map<string, unknown>();
/** Builds a large value once. */
function once<T>(key: string, build: () => T): T {
  if (!memo.has(key)) memo.set(key, build());
  return memo.get(key) as T;
}

/**
 * `depth` nested arrays around `inner`, as JSON text.
 *
 * @param depth Nesting depth.
 * @param inner The innermost JSON.
 * @returns The raw JSON.
 */
export function deepArray(depth: number, inner = "1"): RawJson {
  return once(
    `deepArray:${depth}:${inner}`,
    () => new RawJson("[".repeat(depth) + inner + "]".repeat(depth)),
  );
}

/**
 * `depth` nested objects `{"a":…}`, as JSON text.
 *
 * @param depth Nesting depth.
 * @returns The raw JSON.
 */
export function deepObject(depth: number): RawJson {
  return once(
    `deepObject:${depth}`,
    () => new RawJson('{"a":'.repeat(depth) + "1" + "}".repeat(depth)),
  );
}

/**
 * A JSON array of `count` copies of `item`.
 *
 * @param count How many.
 * @param item One element's JSON.
 * @returns The raw JSON.
 */
export function bigArray(count: number, item: string): RawJson {
  return once(
    `bigArray:${count}:${item}`,
    () => new RawJson(`[${Array(count).fill(item).join(",")}]`),
  );
}

/** A grammar with 20,000 nested parentheses (it used to overflow the grammar parser). */
export const NESTED_GRAMMAR = `root ::= ${"(".repeat(20_000)}"a"${")".repeat(20_000)}`;
/** A repetition whose bounds are reversed (it used to hang or crash the server). */
export const REVERSED_REPETITION_GRAMMAR = 'root ::= "a"{5,2}';

const BIG = 2 ** 31;
/** Values wrong for any field: types, specials, sizes. */
function anyWrong(): unknown[] {
  return once("anyWrong", () => [
    true,
    "x",
    [],
    {},
    -1,
    1.5,
    new RawJson("1e400"),
    new RawJson("-0"),
    "\u0000",
    "\ud800",
    once("long100k", () => "z".repeat(100_000)),
    deepArray(5_000),
  ]);
}

/**
 * Wrong (and edge) values for every request field the server reads, by field name.
 * Built on first use; big values are built once and shared.
 *
 * @returns Field → values.
 */
export function fieldValues(): Record<string, unknown[]> {
  return once("fieldValues", () => ({
    model: [
      1,
      [],
      "",
      "nope",
      "TINY-F32",
      "tiny-f32.gguf",
      "../../etc/passwd",
      "/etc/passwd",
      "/dev/zero",
      "C:\\Windows\\win.ini",
      "%2e%2e%2fetc%2fpasswd",
      "\u0000",
      once("longName", () => "m".repeat(10_000)),
    ],
    prompt: [
      "",
      1,
      null,
      ["a", "b"],
      [1, 2, 3],
      [[1]],
      { text: "x" },
      "\u0000\u0001\u0002",
      "\ud800\udfff\ud800",
      "<|im_end|><|eot_id|></s>",
      once("prompt200k", () => "hello ".repeat(35_000)),
      deepArray(20_000, '"x"'),
    ],
    messages: [
      [],
      "x",
      {},
      [{}],
      [null],
      [{ role: "user" }],
      [{ role: "", content: "x" }],
      [{ role: 1, content: "x" }],
      [{ role: "user", content: 5 }],
      [{ role: "user", content: { text: "x" } }],
      [{
        role: "user",
        content: [{ type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } }],
      }],
      [{ role: "user", content: [{ type: "input_audio", input_audio: { data: "AAAA" } }] }],
      [{ role: "user", content: [{ type: "text", text: 1 }] }],
      [{ role: "user", content: [null] }],
      [{ role: "user", content: [{ type: "text", text: "a" }, "b"] }],
      [{ role: "user", content: deepArray(20_000, '{"type":"text","text":"x"}') }],
      [{ role: "user", content: bigArray(10_000, '{"type":"text","text":"x"}') }],
      [{ role: "assistant", content: null, tool_calls: deepObject(10_000) }],
      [{ role: "tool", content: "x", tool_call_id: 5 }],
      [{ role: "system", content: "x" }],
      [{ role: "ünïcødé\u0000", content: "x" }],
      bigArray(20_000, '{"role":"user","content":"hi"}'),
      // Continued (prefill): the last message is the assistant's.
      [{ role: "user", content: "x" }, { role: "assistant", content: "y" }],
      [{ role: "assistant", content: "y" }, { role: "assistant", content: "z" }],
      [{ role: "assistant", content: "", reasoning_content: 5 }],
      [{ role: "assistant", content: "", reasoning_content: "x".repeat(100_000) }],
      deepArray(20_000),
    ],
    system: [1, [], { a: 1 }, "", once("system100k", () => "s".repeat(100_000))],
    raw: ["yes", 1, []],
    max_tokens: [
      0,
      -1,
      BIG,
      BIG - 1,
      2 ** 40,
      new RawJson("1e300"),
      1.5,
      "8",
      new RawJson("1e400"),
      2 ** 53 + 2,
    ],
    max_completion_tokens: [0, -1, BIG, new RawJson("1e300"), "8"],
    n_predict: [-1, -2, BIG, new RawJson("1e300"), "x"],
    temperature: [-1, 101, new RawJson("1e300"), "0.5", 0, 100, new RawJson("1e-320")],
    top_k: [-1, 0, BIG, 2 ** 40, 1.5, "40"],
    top_p: [-0.1, 1.1, 0, 1, "1", new RawJson("1e-320")],
    min_p: [-0.1, 1.1, 0, 1],
    presence_penalty: [-3, 3, 2, -2],
    frequency_penalty: [-3, 3, 2, -2],
    repeat_penalty: [-1, 0, new RawJson("1e300"), 1000],
    seed: [-1, 2 ** 64, 2 ** 70, 1.5, "1", -(2 ** 63), 0, 4294967295],
    logit_bias: [
      { "-1": 1 },
      { "1e9": 1 },
      { "abc": 1 },
      { "1": 1000 },
      { "1": "x" },
      { "1": null },
      { "1.5": 1 },
      { "0": -100, "1": 100 },
      [[1, false]],
      [[1]],
      [["a", 1]],
      [[1e9, 1]],
      [[1, "x"]],
      { "4294967296": 1 },
      [],
      "x",
      once(
        "bias10k",
        () => Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [String(i), 1])),
      ),
    ],
    stop: [
      123,
      [1],
      ["a", 2],
      [""],
      ["", ""],
      "\n",
      once("stops10k", () => Array.from({ length: 10_000 }, (_, i) => `s${i}`)),
      [once("stop100k", () => "q".repeat(100_000))],
      [deepArray(100)],
    ],
    n: [0, 2, -1, 1.5, new RawJson("1e9"), "1"],
    stream: ["true", 1, [], {}],
    stream_options: ["x", [], { include_usage: "yes" }, { include_usage: 1 }, {
      include_usage: true,
    }, {}],
    grammar: [
      "",
      "root ::= ",
      REVERSED_REPETITION_GRAMMAR,
      NESTED_GRAMMAR,
      "root ::= root",
      'root ::= root "a" | "a"',
      "root ::= undefined-rule",
      "root ::= [",
      'root ::= "a"{0,100000}',
      "root ::= [^\\x00-\\U0010FFFF]",
      'root ::= "\\x00"',
      "not a grammar at all",
      once("grammar1m", () => `root ::= ${Array(50_000).fill('"ab"').join(" ")}`),
      1,
      ['root ::= "a"'],
    ],
    lora: [
      "x",
      1,
      [1],
      {},
      [{}],
      [{ name: 1 }],
      [{ name: "nope" }],
      [{ name: "../../etc/passwd" }],
      [{ path: "/etc/passwd" }],
      [{ name: "/dev/zero" }],
      [{ name: "x", scale: "1" }],
      [{ name: "x", scale: new RawJson("1e400") }],
      bigArray(1_000, '{"name":"nope"}'),
    ],
    tools: [
      "x",
      {},
      [1],
      [{ type: "function" }],
      [{ type: "function", function: { name: "f", parameters: deepObject(10_000) } }],
      bigArray(5_000, '{"type":"function","function":{"name":"f"}}'),
      deepArray(20_000),
    ],
    tool_choice: ["x", 1, { type: "function", function: { name: 1 } }, "required"],
    thinking_budget_tokens: [-2, 0, 1, 1.5, "x", 2 ** 31, 1e300],
    // SillyTavern's fields for other backends (folded on /completion, /infill, /v1/completions).
    max_new_tokens: [-1, 0, 5, "x", 1e300],
    rep_pen: [0, 1.2, "x"],
    top_a: [0, 0.5, "x"],
    custom_token_bans: ["1,2", "x", [1], 5],
    dynatemp_low: [0, "x"],
    api_type: ["llamacpp", 5],
    reasoning_budget_tokens: [0, -1, []],
    reasoning_budget_message: [5, "", "x".repeat(100_000), "</think>".repeat(1_000)],
    reasoning_control: ["yes", 1, true],
    continue_final_message: [true, "content", "reasoning_content", "x", 1, {}],
    background: [true, "yes", 1],
    echo: [true, false, "yes", 1],
    response_format: [
      "x",
      { type: "json_object" },
      { type: "json_schema", json_schema: { schema: deepObject(5_000) } },
      { type: "json_schema", json_schema: "x" },
      { type: "nope" },
    ],
    ignore_eos: ["yes", 1, []],
    truncate: ["yes", 1],
    cache_prompt: ["yes", 1],
    logprobs: ["x", 5],
    top_logprobs: [-1, 1000, "x"],
    // llama-server's own fields (/completion, /infill; the other routes refuse them).
    samplers: [
      5,
      {},
      [1],
      ["top_k", "nope"],
      "kz",
      "",
      [],
      ["infill", "infill", "temperature"],
      bigArray(10_000, '"top_k"'),
    ],
    n_indent: [-1, "x", 2 ** 40, 1],
    t_max_predict_ms: [-5, "x", 1, 2 ** 40],
    t_max_prompt_ms: [-1, "x"],
    response_fields: [5, [1], "content", ["a/b/c", "", "/"], bigArray(10_000, '"timings/x"')],
    n_probs: [-1, 21, "x", 1e9, 20],
    post_sampling_probs: [true, "x"],
    n_cmpl: [0, 1_000, "x", 2],
    id_slot: [-5, "x", 1e12],
    input_prefix: [5, [], null, "x".repeat(100_000)],
    input_suffix: [{}, true],
    input_extra: [
      "x",
      [1],
      [{ text: 5 }],
      [{ text: "a", filename: [] }],
      bigArray(2_000, '{"text":"def f(): pass","filename":"a.py"}'),
    ],
  }));
}

/** Routes that generate (and take the sampling fields). */
export const GENERATING_ROUTES = [
  "/v1/chat/completions",
  "/v1/completions",
  "/api/generate",
  "/completion",
  "/infill",
];

/** The routes of src/server/app.ts `ROUTES` known when the suite was written. */
const KNOWN_ROUTES: Record<string, string[]> = {
  "/health": ["GET"],
  "/v1/models": ["GET"],
  "/v1/chat/completions": ["POST"],
  "/v1/completions": ["POST"],
  "/api/generate": ["POST"],
  "/api/models": ["GET"],
  "/api/tags": ["GET"],
  "/api/models/load": ["POST"],
  "/api/models/unload": ["POST"],
  "/api/ps": ["GET"],
  "/api/lora": ["GET", "POST"],
  "/ws/generate": ["GET"],
  "/metrics": ["GET"],
  "/diag": ["GET"],
};

/**
 * Every route and its methods: the known table plus whatever `ROUTES` in src/server/app.ts
 * lists now (read from the source, so a new route is fuzzed without editing the suite).
 *
 * @returns Path → methods.
 */
export function routeTable(): Record<string, string[]> {
  const table: Record<string, string[]> = structuredClone(KNOWN_ROUTES);
  try {
    const source = Deno.readTextFileSync(join(REPO_ROOT, "src", "server", "app.ts"));
    const block = /const ROUTES[^=]*=\s*\{([\s\S]*?)\n\};/.exec(source)?.[1] ?? "";
    for (const m of block.matchAll(/"(\/[^"]*)":\s*\{([^}]*)\}/g)) {
      const methods = [...(m[2] as string).matchAll(/\b([A-Z]+):/g)].map((x) => x[1] as string);
      table[m[1] as string] = [...new Set([...(table[m[1] as string] ?? []), ...methods])];
    }
  } catch {
    // The known table is enough.
  }
  return table;
}

/** Every method the matrix sends to every route. */
export const METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"];

/** One generated request. */
export interface FuzzCase {
  /** What it is, for reports (`field max_tokens=-1 on /v1/completions`). */
  label: string;
  method: string;
  path: string;
  headers: [string, string][];
  body?: Uint8Array;
  /** Raw bytes to send instead of building a request (HTTP-level garbage). */
  rawBytes?: Uint8Array;
  /**
   * What the answer must be: `answer` (2xx JSON/SSE or a JSON error), `413`, or `protocol`
   * (not valid HTTP: any 4xx, or the connection closed).
   */
  expect: "answer" | "413" | "protocol";
}

const encoder = new TextEncoder();
const JSON_HEADERS: [string, string][] = [["Content-Type", "application/json"]];

/** Generates fuzz cases for one server: a coverage pass, then random mutations. */
export class FuzzGenerator {
  readonly #rand: Rand;
  readonly #model: string;
  readonly #routes: Record<string, string[]>;
  readonly #coverage: FuzzCase[];
  #next = 0;

  /**
   * @param seed The seed (print it).
   * @param model The served model's name.
   */
  constructor(seed: number, model: string) {
    this.#rand = new Rand(seed);
    this.#model = model;
    this.#routes = routeTable();
    this.#coverage = this.#coveragePass();
  }

  /** How many cases the coverage pass holds (every route × method, every field value…). */
  get coverageSize(): number {
    return this.#coverage.length;
  }

  /**
   * The next case: the coverage pass in order, then random ones.
   *
   * @returns A case.
   */
  next(): FuzzCase {
    const covered = this.#coverage[this.#next++];
    return covered ?? this.#random();
  }

  /** A valid body for a generating route, with small max_tokens. */
  base(path: string): Record<string, unknown> {
    const r = this.#rand;
    const body: Record<string, unknown> = {
      model: this.#model,
      max_tokens: r.int(1, 8),
      ...(r.chance(0.5) ? { temperature: r.pick([0, 0.7, 1.5]) } : {}),
      stream: r.chance(0.4), // said either way: /api/generate streams when it is left out
    };
    if (path === "/v1/chat/completions" || (path === "/api/generate" && r.chance(0.5))) {
      body.messages = [{ role: "user", content: r.text() }];
    } else {
      body.prompt = r.text();
    }
    if (path === "/infill") {
      body.input_prefix = r.text();
      body.input_suffix = r.text();
    }
    return body;
  }

  #json(label: string, path: string, body: unknown, headers = JSON_HEADERS): FuzzCase {
    return {
      label,
      method: "POST",
      path,
      headers,
      body: encoder.encode(toJson(body)),
      expect: "answer",
    };
  }

  #coveragePass(): FuzzCase[] {
    const cases: FuzzCase[] = [];
    for (const [path, allowed] of Object.entries(this.#routes)) {
      for (const method of METHODS) {
        const body = ["POST", "PUT", "PATCH"].includes(method)
          ? encoder.encode(
            toJson(GENERATING_ROUTES.includes(path) ? this.base(path) : { model: this.#model }),
          )
          : undefined;
        cases.push({
          label: `matrix ${method} ${path}${allowed.includes(method) ? "" : " (wrong method)"}`,
          method,
          path,
          headers: body ? JSON_HEADERS : [],
          ...(body ? { body } : {}),
          expect: "answer",
        });
      }
    }
    let turn = 0;
    for (const [field, values] of Object.entries(fieldValues())) {
      for (const value of values) {
        const path = GENERATING_ROUTES[turn++ % GENERATING_ROUTES.length] as string;
        cases.push(this.#mutated(path, [[field, value]]));
      }
    }
    const fields = Object.keys(fieldValues());
    anyWrong().forEach((value, i) => {
      const path = GENERATING_ROUTES[i % GENERATING_ROUTES.length] as string;
      cases.push(this.#mutated(path, [[fields[(i * 7) % fields.length] as string, value]]));
    });
    for (const c of this.#modelRouteCases()) cases.push(c);
    for (const c of this.#slotCases()) cases.push(c);
    for (const c of this.#bodyCases()) cases.push(c);
    for (const c of this.#headerCases()) cases.push(c);
    for (const c of this.#pathCases()) cases.push(c);
    for (const c of protocolCases()) cases.push(c);
    for (const c of hugeBodyCases(this.#model)) cases.push(c);
    return cases;
  }

  #mutated(path: string, changes: [string, unknown][]): FuzzCase {
    const body = this.base(path);
    for (const [field, value] of changes) {
      if (field === "n_predict" || field === "max_completion_tokens") delete body.max_tokens;
      if (field === "messages") delete body.prompt;
      if (field === "prompt") delete body.messages;
      body[field] = value;
    }
    const label = changes.map(([f, v]) => `${f}=${describe(v)}`).join(" ");
    return this.#json(`field ${label} on ${path}`, path, body);
  }

  /**
   * `POST /slots/N?action=…`: slot numbers, actions and file names that are wrong in every way
   * (the server runs with a slot folder), and good ones, so that saves and restores run beside
   * the generations.
   */
  #slotCases(): FuzzCase[] {
    const names: unknown[] = [
      "fuzz.bin",
      "fuzz.bin",
      "",
      "../fuzz.bin",
      "/etc/passwd",
      "a\\b",
      "nul\u0000",
      "lone\ud800",
      "x".repeat(300),
      ".",
      "..",
      "missing.bin",
      7,
      null,
      ["a"],
      { name: "a" },
    ];
    const cases = names.map((filename, i) =>
      this.#json(
        `slot filename=${describe(filename)}`,
        `/slots/${i % 5 === 4 ? 1 : 0}?action=${i % 2 === 0 ? "save" : "restore"}`,
        { filename },
      )
    );
    for (
      const query of [
        "99?action=save",
        "-1?action=save",
        "x?action=erase",
        "1e0?action=erase",
        "0?action=load",
        "0",
        "0?action=erase&model=nope",
        "0?action=restore&model=%00",
      ]
    ) {
      cases.push(this.#json(`slot ${query}`, `/slots/${query}`, { filename: "fuzz.bin" }));
    }
    return cases;
  }

  #modelRouteCases(): FuzzCase[] {
    const models = fieldValues().model as unknown[];
    const adapters: unknown[] = [
      "x",
      1,
      [1],
      [{}],
      [{ name: 1 }],
      [{ name: "nope" }],
      [{ path: "/etc/passwd" }],
      [{ path: "/dev/zero" }],
      [{ path: "../../etc/passwd" }],
      [{ path: "" }],
      [{ name: "x", scale: "1" }],
      [{ path: "/proc/self/environ", scale: 1 }],
      bigArray(1_000, '{"name":"nope"}'),
      deepArray(10_000),
    ];
    const cases: FuzzCase[] = [];
    for (const model of models) {
      cases.push(this.#json(`load model=${describe(model)}`, "/api/models/load", { model }));
      cases.push(this.#json(`unload model=${describe(model)}`, "/api/models/unload", { model }));
      cases.push(this.#json(`lora model=${describe(model)}`, "/api/lora", { model, adapters: [] }));
      if (typeof model === "string" && model.length < 200) {
        cases.push({
          label: `GET /api/lora?model=${describe(model)}`,
          method: "GET",
          path: `/api/lora?model=${encodeURIComponent(model)}`,
          headers: [],
          expect: "answer",
        });
      }
    }
    for (const value of adapters) {
      cases.push(
        this.#json(`lora adapters=${describe(value)}`, "/api/lora", {
          model: this.#model,
          adapters: value,
        }),
      );
    }
    return cases;
  }

  #bodyCases(): FuzzCase[] {
    const posts = [...GENERATING_ROUTES, "/api/models/load", "/api/models/unload", "/api/lora"];
    const texts = [
      "",
      "{",
      "}",
      "[]",
      "null",
      "1",
      '"s"',
      '{"a":}',
      "{'prompt':'x'}",
      '{"prompt":"x",}',
      "NaN",
      '{"prompt": NaN}',
      '{"prompt":"x"} trailing',
      '\ufeff{"prompt":"x","max_tokens":2}',
      '{"prompt":"x","prompt":"y","max_tokens":2}',
      '{"__proto__":{"stream":true},"prompt":"x","max_tokens":2}',
      '{"constructor":{"prototype":{"stream":true}},"prompt":"x","max_tokens":2}',
      "[".repeat(100_000),
      " ".repeat(1_000_000),
      '{"prompt":"\\ud800","max_tokens":2}',
      '{"prompt":"\\u0000","max_tokens":2}',
    ];
    const bytes: [string, number[]][] = [
      ["0xff 0xfe in a string", [0xff, 0xfe]],
      ["overlong slash", [0xc0, 0xaf]],
      ["CESU surrogate", [0xed, 0xa0, 0x80]],
      ["truncated multibyte", [0xe6, 0x97]],
      ["raw NUL", [0x00]],
      ["raw control chars", [0x01, 0x1b, 0x7f]],
    ];
    const cases: FuzzCase[] = [];
    texts.forEach((text, i) => {
      const path = posts[i % posts.length] as string;
      cases.push({
        label: `body ${describe(text)} on ${path}`,
        method: "POST",
        path,
        headers: JSON_HEADERS,
        body: encoder.encode(text),
        expect: "answer",
      });
    });
    bytes.forEach(([what, raw], i) => {
      const path = posts[i % posts.length] as string;
      const head = encoder.encode(`{"model":"${this.#model}","max_tokens":2,"prompt":"a`);
      const tail = encoder.encode(`b","messages":[{"role":"user","content":"x"}]}`);
      const body = new Uint8Array([...head, ...raw, ...tail]);
      cases.push({
        label: `invalid UTF-8 (${what}) on ${path}`,
        method: "POST",
        path,
        headers: JSON_HEADERS,
        body,
        expect: "answer",
      });
    });
    const types = [
      undefined,
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/json; charset=utf-16",
      "application/jsonp",
      "application/json, text/html",
      "application/vnd.api+json",
      "APPLICATION/JSON",
      "application/json; " + "x".repeat(2_000),
      "",
    ];
    types.forEach((type, i) => {
      const path = posts[i % posts.length] as string;
      const body = encoder.encode(
        toJson(GENERATING_ROUTES.includes(path) ? this.base(path) : { model: "nope" }),
      );
      cases.push({
        label: `content-type ${JSON.stringify(type)} on ${path}`,
        method: "POST",
        path,
        headers: type === undefined ? [] : [["Content-Type", type]],
        body,
        expect: "answer",
      });
    });
    cases.push({
      label: "UTF-16 body with charset=utf-16",
      method: "POST",
      path: "/v1/completions",
      headers: [["Content-Type", "application/json; charset=utf-16"]],
      body: utf16(`{"prompt":"x","max_tokens":2}`),
      expect: "answer",
    });
    for (const path of posts) {
      cases.push({
        label: `empty body (Content-Length: 0) on ${path}`,
        method: "POST",
        path,
        headers: [...JSON_HEADERS, ["Content-Length", "0"]],
        expect: "answer",
      });
      cases.push({
        label: `no body, no length on ${path}`,
        method: "POST",
        path,
        headers: JSON_HEADERS,
        expect: "answer",
      });
    }
    return cases;
  }

  #headerCases(): FuzzCase[] {
    const path = "/v1/completions";
    const body = () => encoder.encode(toJson(this.base(path)));
    const odd: [string, [string, string][]][] = [
      ["huge Authorization", [["Authorization", `Bearer ${"k".repeat(10_000)}`]]],
      ["Basic auth", [["Authorization", "Basic Zm9vOmJhcg=="]]],
      ["cookie junk", [["Cookie", "a=b; " + "c=d; ".repeat(500)]]],
      ["Accept: text/event-stream", [["Accept", "text/event-stream"]]],
      ["Accept-Encoding: gzip", [["Accept-Encoding", "gzip"]]],
      ["X-Forwarded-*", [["X-Forwarded-For", "1.2.3.4"], ["X-Forwarded-Host", "evil.example"], [
        "Forwarded",
        "for=1.2.3.4;host=evil.example",
      ]]],
      ["Origin: null", [["Origin", "null"]]],
      ["Range", [["Range", "bytes=0-10"]]],
      ["If-None-Match", [["If-None-Match", "*"]]],
      ["TE: trailers", [["TE", "trailers"]]],
      ["Content-Encoding: gzip (plain body)", [["Content-Encoding", "gzip"]]],
      ["Expect: 100-continue", [["Expect", "100-continue"]]],
      ["long User-Agent", [["User-Agent", "u".repeat(8_000)]]],
      ["obs-text in a header value", [["X-Note", "caf\u00e9"]]],
      [
        "many small headers",
        Array.from({ length: 60 }, (_, i) => [`X-H${i}`, String(i)] as [string, string]),
      ],
      ["Host: localhost", [["Host", "localhost"]]],
      ["Host: 127.0.0.1 (no port)", [["Host", "127.0.0.1"]]],
      ["Host: evil", [["Host", "evil.example"]]],
      ["Keep-Alive", [["Connection", "keep-alive"], ["Keep-Alive", "timeout=1000"]]],
    ];
    const cases = odd.map(([what, headers]): FuzzCase => ({
      label: `header ${what}`,
      method: "POST",
      path,
      headers: [...JSON_HEADERS, ...headers],
      body: body(),
      expect: "answer",
    }));
    cases.push({
      label: "WebSocket upgrade without Sec-WebSocket-Key",
      method: "GET",
      path: "/ws/generate",
      headers: [["Upgrade", "websocket"], ["Connection", "Upgrade"], [
        "Sec-WebSocket-Version",
        "13",
      ]],
      expect: "answer",
    });
    return cases;
  }

  #pathCases(): FuzzCase[] {
    const paths = [
      "/v1/completions/",
      "//v1//completions",
      "/V1/COMPLETIONS",
      "/v1/completions?x=1&x=2",
      "/%2e%2e/%2e%2e/etc/passwd",
      "/api/../health",
      "/api/lora?model=../../etc/passwd",
      "/api/lora?model=%00",
      "/api/lora?model=%ff%fe",
      "/api/lora?model=",
      "/api/lora",
      `/health?${"q".repeat(8_000)}`,
      `/${"a".repeat(8_000)}`,
      "/",
      "/favicon.ico",
      "/%",
      "/health%00",
      "/v1/models/tiny-f32",
      "/api/generate?stream=true",
      "/ws/generate",
      "*",
      "http://evil.example/health",
      `http://127.0.0.1/api/ps`,
    ];
    const cases: FuzzCase[] = [];
    for (const path of paths) {
      for (const method of path === "*" ? ["OPTIONS"] : ["GET", "POST"]) {
        cases.push({
          label: `path ${describe(path)} ${method}`,
          method,
          path,
          headers: method === "POST" ? JSON_HEADERS : [],
          ...(method === "POST"
            ? { body: encoder.encode(toJson({ model: this.#model, prompt: "x", max_tokens: 2 })) }
            : {}),
          expect: "answer",
        });
      }
    }
    return cases;
  }

  #random(): FuzzCase {
    const r = this.#rand;
    const roll = r.int(0, 99);
    if (roll < 65) {
      const values = fieldValues();
      const fields = Object.keys(values);
      const changes: [string, unknown][] = Array.from({ length: r.int(1, 3) }, () => {
        const field = r.pick(fields);
        let value = r.pick(r.chance(0.25) ? anyWrong() : values[field] as unknown[]);
        // The coverage pass sent every big value once; repeats are rarer so the run stays short.
        if (isBig(value) && r.chance(0.8)) value = r.pick(values[field] as unknown[]);
        return [field, value];
      });
      return this.#mutated(r.pick(GENERATING_ROUTES), changes);
    }
    if (roll < 75) {
      const path = r.pick(GENERATING_ROUTES);
      return this.#json(`valid ${path}`, path, this.base(path));
    }
    if (roll < 81) return r.pick(this.#modelRouteCases());
    if (roll < 83) return r.pick(this.#slotCases());
    if (roll < 91) return r.pick(this.#bodyCases());
    if (roll < 95) return r.pick(this.#headerCases());
    if (roll < 98) return r.pick(this.#pathCases());
    return r.pick(protocolCases());
  }

  /**
   * A random first WebSocket frame: a valid body, a mutated one, or one that is not JSON.
   *
   * @returns The label and the frame text.
   */
  wsFrame(): { label: string; frame: string } {
    const r = this.#rand;
    if (r.chance(0.2)) {
      const text = r.pick(["", "{", "null", "[]", '"x"', '{"stop":true}', "x".repeat(1000)]);
      return { label: `ws frame ${describe(text)}`, frame: text };
    }
    const body = this.base("/api/generate");
    delete body.stream;
    let label = "ws valid";
    if (r.chance(0.8)) {
      const values = fieldValues();
      const field = r.pick(Object.keys(values));
      const value = r.pick(values[field] as unknown[]);
      if (field === "n_predict" || field === "max_completion_tokens") delete body.max_tokens;
      body[field] = value;
      label = `ws ${field}=${describe(value)}`;
    }
    return { label, frame: toJson(body) };
  }
}

function utf16(text: string): Uint8Array {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    out[2 * i] = c & 0xff;
    out[2 * i + 1] = c >> 8;
  }
  return out;
}

/** Requests that are not valid HTTP/1.1 (the server may answer 4xx or close). */
export function protocolCases(): FuzzCase[] {
  return once("protocol", () => {
    const raw = (label: string, text: string): FuzzCase => ({
      label: `protocol ${label}`,
      method: "RAW",
      path: "",
      headers: [],
      rawBytes: encoder.encode(text),
      expect: "protocol",
    });
    const post = (headers: string, body: string) =>
      `POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n${headers}Connection: close\r\n\r\n${body}`;
    const body = '{"prompt":"x","max_tokens":2}';
    return [
      raw(
        "conflicting Content-Length",
        post(`Content-Length: 5\r\nContent-Length: ${body.length}\r\n`, body),
      ),
      raw(
        "duplicate Content-Length",
        post(`Content-Length: ${body.length}\r\nContent-Length: ${body.length}\r\n`, body),
      ),
      raw(
        "Content-Length with Transfer-Encoding",
        post(
          `Content-Length: 3\r\nTransfer-Encoding: chunked\r\n`,
          `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
        ),
      ),
      raw("bad chunk size", post("Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n0\r\n\r\n")),
      raw("Transfer-Encoding: gzip", post("Transfer-Encoding: gzip\r\n", body)),
      raw("negative Content-Length", post("Content-Length: -1\r\n", body)),
      raw("Content-Length 2^70", post("Content-Length: 1180591620717411303424\r\n", body)),
      raw("header without a colon", post("NoColonHere\r\n", body)),
      raw("space in a header name", post("Bad Name: x\r\n", body)),
      raw("NUL in a header value", post("X-A: a\u0000b\r\n", body)),
      raw("request line garbage", "GARBAGE\r\n\r\n"),
      raw("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
      raw("HTTP/9.9", "GET /health HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n"),
      raw(
        "100 KiB header",
        `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${
          "b".repeat(100_000)
        }\r\nConnection: close\r\n\r\n`,
      ),
      raw(
        "200 headers",
        `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n${
          Array.from({ length: 200 }, (_, i) => `X-${i}: ${i}\r\n`).join("")
        }Connection: close\r\n\r\n`,
      ),
      raw("bare LF line endings", "GET /health HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n"),
      raw(
        "non-ASCII request target",
        "GET /h\u00e9alth HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
      ),
      raw(
        "long method",
        `${"X".repeat(5_000)} /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      ),
      raw(
        "two Host headers",
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
      ),
      raw("HTTP/1.0 without Host", "GET /health HTTP/1.0\r\n\r\n"),
      raw("CONNECT", "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n"),
      raw(
        "Upgrade: websocket on a POST route",
        post("Upgrade: websocket\r\nConnection: Upgrade\r\n", body).replace(
          "Connection: close\r\n",
          "",
        ),
      ),
      raw(
        "Upgrade: h2c",
        post(
          "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n",
          body,
        ).replace("Connection: close\r\n", ""),
      ),
      raw(
        "WebSocket upgrade with a bad version",
        "GET /ws/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: bad\r\nSec-WebSocket-Version: 99\r\n\r\n",
      ),
    ];
  });
}

/** Bodies around the 8 MiB limit: over it (413 expected) and just under it. */
export function hugeBodyCases(model: string): FuzzCase[] {
  return once(`huge:${model}`, () => {
    const over = 9 * 1024 * 1024;
    const prefix = `{"model":"${model}","max_tokens":2,"prompt":"`;
    const json = (size: number) =>
      encoder.encode(prefix + "a".repeat(size - prefix.length - 2) + '"}');
    const nineMiB = json(over);
    const chunked = new Uint8Array([
      ...encoder.encode(`${nineMiB.length.toString(16)}\r\n`),
      ...nineMiB,
      ...encoder.encode("\r\n0\r\n\r\n"),
    ]);
    const headers: [string, string][] = [["Content-Type", "application/json"]];
    return [
      {
        label: "9 MiB body with Content-Length",
        method: "POST",
        path: "/v1/completions",
        headers,
        body: nineMiB,
        expect: "413",
      },
      {
        label: "9 MiB body on /api/lora",
        method: "POST",
        path: "/api/lora",
        headers,
        body: nineMiB,
        expect: "413",
      },
      {
        label: "9 MiB chunked body",
        method: "POST",
        path: "/api/generate",
        headers: [...headers, ["Transfer-Encoding", "chunked"]],
        body: chunked,
        expect: "413",
      },
      {
        label: "Content-Length 9 MiB declared, 100 bytes sent",
        method: "POST",
        path: "/v1/chat/completions",
        headers: [...headers, ["Content-Length", String(over)]],
        body: encoder.encode("x".repeat(100)),
        expect: "413",
      },
      {
        label: "8 MiB - 64 KiB prompt",
        method: "POST",
        path: "/v1/completions",
        headers,
        body: json(8 * 1024 * 1024 - 64 * 1024),
        expect: "answer",
      },
    ];
  });
}

const sizes = new Map<unknown, number>();
/** Whether a value's JSON is over 20,000 characters (sizes are cached). */
function isBig(value: unknown): boolean {
  if (typeof value !== "object" || value === null) {
    return typeof value === "string" && value.length > 20_000;
  }
  let size = sizes.get(value);
  if (size === undefined) sizes.set(value, size = toJson(value).length);
  return size > 20_000;
}

/**
 * A short description of a value for labels.
 *
 * @param value Any value.
 * @returns At most 60 characters.
 */
export function describe(value: unknown): string {
  const text = value instanceof RawJson ? value.text : JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 40)}…(${text.length} chars)` : text;
}

/**
 * Names that try to reach files outside the model folders, for every field that names a model
 * or an adapter. Add the per-test ones (a FIFO, a symlink) next to these.
 */
export const TRAVERSAL_NAMES: readonly string[] = [
  "../../etc/passwd",
  "../../../../../../../../etc/passwd",
  "/etc/passwd",
  "/dev/zero",
  "/proc/self/environ",
  "C:\\Windows\\win.ini",
  "..\\..\\..\\Windows\\win.ini",
  "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
  "..%2f..%2f..%2fetc%2fpasswd",
  "%252e%252e%252fetc%252fpasswd",
  "....//....//etc/passwd",
  "file:///etc/passwd",
  "/etc/passwd\u0000.gguf",
];
