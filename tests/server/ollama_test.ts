import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { type ChatRequest, Ollama, type Tool } from "ollama";
import { Sampler } from "../../src/ffi/sampler.ts";
import { compileSchema } from "../engine/json_schema_ajv.ts";
import { fixtureModel, llamaSourceDir } from "../fixtures/models.ts";
import { WEATHER_PARAMETERS } from "../fixtures/tool_fixtures.ts";
import { postJson, startServer, type TestServer, waitFor } from "./harness.ts";
import type { ModelPulls } from "../../src/models/pull_tracker.ts";
import type { PullResult } from "../../src/models/pull.ts";

const MODEL = "tiny-f32";
const SOURCE = llamaSourceDir();
/** llama.cpp's copies of real chat templates (tests that need them are skipped without). */
const TEMPLATES = join(SOURCE ?? ".", "models", "templates");
const validateWeather = compileSchema(WEATHER_PARAMETERS);

/** ollama-js's `ResponseError` (which the package does not export): the server's text. */
interface ResponseError extends Error {
  error: string;
  status_code: number;
}

function isResponseError(error: unknown): error is ResponseError {
  return error instanceof Error && error.name === "ResponseError" && "status_code" in error;
}

/**
 * Serves tiny-f32 (embedding with mean pooling) with both Ollama entry points, and Qwen 2.5's
 * template (Hermes tool calls) when llama.cpp's copy is at hand.
 */
async function serve(settings: { apiKey?: string } = {}): Promise<TestServer> {
  const server = await startServer({
    load: { ctxSize: 2048, threads: 1, pooling: "mean" },
    ollamaListener: true,
    settings,
  });
  const source = llamaSourceDir();
  if (source) {
    const file = join(source, "models", "templates", "Qwen-Qwen2.5-7B-Instruct.jinja");
    server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(file), path: file };
  }
  return server;
}

/** The two places Ollama's API lives for every client: under /ollama on the main port, and --ollama-bind. */
function bases(server: TestServer): [string, string][] {
  return [["/ollama", `${server.url}/ollama`], ["--ollama-bind", server.ollamaUrl!]];
}

/**
 * ollama-js at both places, and at the main port's root, where its User-Agent gets it all of
 * Ollama's API (Shimmy's own /api/generate answers other clients there).
 */
function clients(server: TestServer): [string, Ollama][] {
  return [...bases(server), ["the main port's root", server.url]].map((
    [where, host],
  ) => [where!, new Ollama({ host })]);
}

/** Checks Ollama's final counters: present, integers, durations in nanoseconds. */
function checkCounters(
  final: Record<string, unknown>,
  wallMs: number,
  evalCount: number,
  where: string,
): void {
  for (
    const key of [
      "total_duration",
      "load_duration",
      "prompt_eval_count",
      "prompt_eval_duration",
      "eval_count",
      "eval_duration",
    ]
  ) {
    ok(Number.isInteger(final[key]), `${where}: ${key} is ${final[key]}`);
  }
  equal(final.eval_count, evalCount, where);
  ok((final.prompt_eval_count as number) > 0, where);
  const total = final.total_duration as number;
  // Nanoseconds: more than the milliseconds it took as a number, not more than the wall time.
  ok(total > wallMs * 1e5 && total <= (wallMs + 1) * 1e6, `${where}: ${total} ns in ${wallMs} ms`);
  ok((final.eval_duration as number) > 0 && (final.eval_duration as number) <= total, where);
}

Deno.test("ollama-js lists, shows and reports version and loaded models through /ollama, --ollama-bind and the main port's root", async () => {
  await using server = await serve();
  for (const [where, ollama] of clients(server)) {
    const { version } = await ollama.version();
    match(version, /^\d+\.\d+\.\d+$/, where);

    const { models } = await ollama.list();
    const tiny = models.find((m) => m.name === MODEL);
    ok(tiny, where);
    match(tiny.digest, /^[0-9a-f]{64}$/, where);
    ok(tiny.size > 0, where);
    ok(!Number.isNaN(Date.parse(String(tiny.modified_at))), where);
    equal(tiny.details.format, "gguf", where);
    equal(tiny.details.family, "llama", where);
    ok(tiny.details.families.includes("llama"), where);
    match(tiny.details.parameter_size, /^\d+(\.\d+)?[KMB]?$/, where);
    equal(tiny.details.quantization_level, "F32", where);

    const shown = await ollama.show({ model: `${MODEL}:latest` });
    equal(shown.details.family, "llama", where);
    ok(shown.capabilities.includes("completion"), where);
    const info = shown.model_info as unknown as Record<string, unknown>;
    equal(info["general.architecture"], "llama", where);
    equal(info["tokenizer.ggml.tokens"], null, `${where}: arrays only when verbose`);
    match(shown.modelfile, /^FROM /m, where);

    await ollama.generate({ model: MODEL, prompt: "hi", options: { num_predict: 1 } });
    const ps = await ollama.ps();
    const loaded = ps.models.find((m) => m.name === MODEL);
    ok(loaded, where);
    equal(loaded.size_vram, 0, `${where}: a CPU load has nothing in VRAM`);
    equal(loaded.digest, tiny.digest, where);
    ok(Date.parse(String(loaded.expires_at)) > Date.now(), where);
  }
});

Deno.test("generate and chat stop at options.num_predict, streamed and not, with Ollama's counters in nanoseconds", async () => {
  await using server = await serve();
  for (const [where, ollama] of clients(server)) {
    const options = { num_predict: 6, temperature: 0, seed: 1 };
    let start = performance.now();
    const whole = await ollama.generate({ model: MODEL, prompt: "Once upon a time", options });
    checkCounters({ ...whole }, performance.now() - start, 6, `${where} generate`);
    equal(whole.done, true);
    equal(whole.done_reason, "length");
    ok((whole.response ?? "").length > 0);

    start = performance.now();
    let text = "";
    let last: Record<string, unknown> = {};
    const stream = await ollama.generate({
      model: MODEL,
      prompt: "Once upon a time",
      options,
      stream: true,
    });
    for await (const chunk of stream) {
      text += chunk.response;
      last = { ...chunk };
    }
    checkCounters(last, performance.now() - start, 6, `${where} generate stream`);
    equal(last.done_reason, "length");
    equal(text, whole.response, `${where}: the streamed pieces make the whole reply`);

    const messages = [{ role: "user", content: "Say something" }];
    start = performance.now();
    const chat = await ollama.chat({ model: MODEL, messages, options });
    checkCounters({ ...chat }, performance.now() - start, 6, `${where} chat`);
    equal(chat.message.role, "assistant");
    equal(chat.done_reason, "length");

    start = performance.now();
    let content = "";
    let final: Record<string, unknown> = {};
    for await (
      const chunk of await ollama.chat({ model: MODEL, messages, options, stream: true })
    ) {
      content += chunk.message.content;
      final = { ...chunk };
    }
    checkCounters(final, performance.now() - start, 6, `${where} chat stream`);
    equal(content, chat.message.content, where);
  }
});

Deno.test("options.num_ctx bounds prompt and answer together; a prompt that fills it is a 400", async () => {
  await using server = await serve();
  const ollama = new Ollama({ host: `${server.url}/ollama` });
  const reply = await ollama.generate({
    model: MODEL,
    prompt: "Once upon a time",
    raw: true,
    options: { num_ctx: 12, num_predict: 100 },
  });
  equal(reply.done_reason, "length");
  equal(reply.prompt_eval_count + reply.eval_count, 12, JSON.stringify(reply));
  await rejects(
    ollama.generate({ model: MODEL, prompt: "one two three four five", options: { num_ctx: 2 } }),
    (e: unknown) => isResponseError(e) && e.status_code === 400 && /num_ctx/.test(e.message),
  );
});

Deno.test("show reads a file's header once while its size and modification time stay the same", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "copied.gguf");
  await Deno.copyFile(await fixtureModel("tiny-f32"), path);
  const { size, mtime } = await Deno.stat(path);
  await using server = await startServer({
    extraEntries: [{ name: "copied", path, source: "test", sizeBytes: size }],
  });
  const show = (verbose: boolean) =>
    postJson(`${server.url}/ollama/api/show`, { model: "copied", verbose });
  const plain = await (await show(false)).json();
  const verbose = await (await show(true)).json();
  equal(plain.model_info["tokenizer.ggml.tokens"], null);
  ok(verbose.model_info["tokenizer.ggml.tokens"].length > 0);
  // The same size and time, but no GGUF header any more: what was shown is shown again.
  await Deno.writeFile(path, new Uint8Array(size));
  await Deno.utime(path, mtime!, mtime!);
  deepEqual(await (await show(false)).json(), plain);
  deepEqual(await (await show(true)).json(), verbose);
  // A new time: the file is read again, and is no model.
  await Deno.utime(path, mtime!, new Date(mtime!.getTime() + 1000));
  const reread = await show(false);
  await reread.body?.cancel();
  ok(!reread.ok, `status ${reread.status}`);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("show tells an embedding model's capabilities (embedding) from a chat model's", async () => {
  await using server = await startServer({
    fixtures: ["tiny-f32", "tiny-bert"],
    load: { ctxSize: 2048, threads: 1 },
  });
  const ollama = new Ollama({ host: `${server.url}/ollama` });
  deepEqual((await ollama.show({ model: "tiny-bert" })).capabilities, ["embedding"]);
  // Tools on every chat model: a template that knows none gets them described.
  deepEqual((await ollama.show({ model: "tiny-f32" })).capabilities, ["completion", "tools"]);
});

Deno.test("embed and the older embeddings return unit-length vectors of the model's size", async () => {
  await using server = await serve();
  for (const [where, ollama] of clients(server)) {
    const result = await ollama.embed({ model: MODEL, input: ["hello world", "a cat"] });
    equal(result.model, MODEL);
    equal(result.embeddings.length, 2, where);
    for (const vector of result.embeddings) {
      ok(Math.abs(Math.hypot(...vector) - 1) < 1e-4, where);
    }
    ok(result.prompt_eval_count > 0 && Number.isInteger(result.total_duration), where);
    const one = await ollama.embed({ model: MODEL, input: "hello world" });
    equal(one.embeddings[0]!.length, result.embeddings[0]!.length, where);
    const old = await ollama.embeddings({ model: MODEL, prompt: "hello world" });
    equal(old.embedding.length, result.embeddings[0]!.length, where);
    // `dimensions` keeps the first values, back at unit length.
    const short = await ollama.embed({ model: MODEL, input: "hello world", dimensions: 8 });
    const head = one.embeddings[0]!.slice(0, 8);
    const scale = Math.hypot(...head);
    short.embeddings[0]!.forEach((v, i) =>
      ok(Math.abs(v - (head[i] as number) / scale) < 1e-6, `${where} ${i}`)
    );

    // The same vectors and token count as /v1/embeddings gives.
    const openai = await (await postJson(`${server.url}/v1/embeddings`, {
      model: MODEL,
      input: ["hello world", "a cat"],
    })).json();
    equal(result.prompt_eval_count, openai.usage.prompt_tokens, where);
    result.embeddings.forEach((vector, i) => {
      const dot = vector.reduce((sum, v, j) => sum + v * openai.data[i].embedding[j], 0);
      ok(dot > 0.9999, `${where}: input ${i}`);
    });

    // Longer than the embedding context: cut to fit by default, a 400 with truncate false.
    const long = "hello world ".repeat(3000);
    const cut = await ollama.embed({ model: MODEL, input: long });
    ok(cut.prompt_eval_count <= 2048 && cut.prompt_eval_count > 1000, where);
    await rejects(ollama.embed({ model: MODEL, input: long, truncate: false }), (e: unknown) => {
      ok(isResponseError(e) && e.status_code === 400, where);
      match(e.message, /more than the embedding context/);
      return true;
    });
  }
});

Deno.test("chat with a JSON schema as format returns content that validates", async () => {
  await using server = await serve();
  for (const [where, ollama] of clients(server)) {
    for (const seed of [1, 2]) {
      const reply = await ollama.chat({
        model: MODEL,
        messages: [{ role: "user", content: "Weather in Paris as JSON" }],
        format: WEATHER_PARAMETERS,
        options: { seed, num_predict: 200 },
      });
      const parsed = JSON.parse(reply.message.content);
      ok(validateWeather(parsed), `${where}: ${reply.message.content}`);
    }
    const json = await ollama.chat({
      model: MODEL,
      messages: [{ role: "user", content: "JSON please" }],
      format: "json",
      options: { seed: 3, num_predict: 200 },
    });
    if (json.done_reason === "stop") {
      equal(typeof JSON.parse(json.message.content), "object", json.message.content);
    }
  }
});

Deno.test("chat with tools and tool_choice required returns complete calls in Ollama's shape, whole and streamed", async () => {
  await using server = await serve();
  const tools = [{
    type: "function",
    function: {
      name: "get_weather",
      description: "Weather in a city",
      parameters: WEATHER_PARAMETERS,
    },
  }] as unknown as Tool[];
  const messages = [{ role: "user", content: "Weather in Paris?" }];
  for (const [where, ollama] of clients(server)) {
    // Ollama has no tool_choice; Shimmy takes OpenAI's as an extension, which forces a call.
    const request = { model: MODEL, messages, tools, tool_choice: "required" } as ChatRequest & {
      stream?: never;
    };
    const reply = await ollama.chat({
      ...request,
      stream: false,
      options: { seed: 1, num_predict: 300 },
    });
    const calls = reply.message.tool_calls ?? [];
    ok(calls.length >= 1, where);
    for (const call of calls) {
      equal(call.function.name, "get_weather", where);
      equal(typeof call.function.arguments, "object", where);
      ok(validateWeather(call.function.arguments), JSON.stringify(call.function.arguments));
    }
    let streamed: typeof calls = [];
    for await (
      const chunk of await ollama.chat({
        ...request,
        stream: true,
        options: { seed: 1, num_predict: 300 },
      })
    ) {
      streamed = [...streamed, ...(chunk.message.tool_calls ?? [])];
    }
    ok(streamed.length >= 1, where);
    ok(validateWeather(streamed[0]!.function.arguments), where);
    // The conversation goes on with the call and its result.
    const next = await ollama.chat({
      model: MODEL,
      messages: [
        ...messages,
        { role: "assistant", content: "", tool_calls: calls },
        { role: "tool", content: '{"temperature": 20}', tool_name: "get_weather" },
      ],
      tools,
      options: { num_predict: 4 },
    });
    equal(next.done, true, where);
  }
});

Deno.test('/api/show and /api/pull check "name" beside "model": neither hides a malformed other', async () => {
  await using server = await serve();
  for (const path of ["/api/show", "/api/pull"]) {
    const res = await postJson(`${server.ollamaUrl}${path}`, { model: MODEL, name: { x: 1 } });
    equal(res.status, 400, path);
    match((await res.json()).error, /"name" must be a string/, path);
  }
});

Deno.test("/api/pull stops following the pull's progress when its client hangs up, though the pull goes on", async () => {
  await using server = await serve();
  const pullDone = Promise.withResolvers<PullResult>();
  let followed: { signal: AbortSignal | undefined; unfollowed: boolean } | undefined;
  const pulls = {
    follow(_reference: string, _onProgress: unknown, signal?: AbortSignal) {
      const follower = { signal, unfollowed: false };
      followed = follower;
      return () => void (follower.unfollowed = true);
    },
    pull: () => pullDone.promise,
    status: () => [],
  };
  server.ctx.pulls = pulls as unknown as ModelPulls;
  const client = new AbortController();
  const response = await fetch(`${server.ollamaUrl}/api/pull`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "hf.co/tiny-org/Tiny-GGUF" }),
    signal: client.signal,
  });
  const reader = response.body!.getReader();
  match(new TextDecoder().decode((await reader.read()).value), /pulling manifest/);
  ok(followed && !followed.signal?.aborted, "followed while the client is there");
  client.abort();
  ok(await waitFor(() => followed!.signal?.aborted === true), "the follower's signal aborts");
  pullDone.reject(new Error("ended")); // the handler's finally still unfollows
  ok(await waitFor(() => followed!.unfollowed), "and the handler unfollows once the pull ends");
});

Deno.test("an unknown model is a ResponseError whose message is the server's text", async () => {
  await using server = await serve();
  for (const [where, ollama] of clients(server)) {
    for (
      const call of [
        () => ollama.chat({ model: "nope", messages: [{ role: "user", content: "hi" }] }),
        () => ollama.generate({ model: "nope:7b", prompt: "hi" }),
        () => ollama.show({ model: "nope" }),
        () => ollama.embed({ model: "nope", input: "hi" }),
      ]
    ) {
      await rejects(call(), (error: unknown) => {
        ok(isResponseError(error), `${where}: ${error}`);
        equal(error.status_code, 404, where);
        match(error.message, /^Model "nope(:7b)?" not found\. Available: tiny-f32/, where);
        return true;
      });
    }
  }
});

Deno.test("a streamed reply is NDJSON: one compact JSON object per line, the last one done", async () => {
  await using server = await serve();
  for (const [where, base] of bases(server)) {
    for (const path of ["/api/generate", "/api/chat"]) {
      const body = path === "/api/chat"
        ? { model: MODEL, messages: [{ role: "user", content: "hi\nthere" }] }
        : { model: MODEL, prompt: "hi\nthere" };
      // No "stream" field: Ollama streams by default.
      const response = await postJson(`${base}${path}`, { ...body, options: { num_predict: 8 } });
      equal(response.status, 200);
      equal(response.headers.get("content-type"), "application/x-ndjson", where);
      const bytes = new Uint8Array(await response.arrayBuffer());
      const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      equal(text.at(-1), "\n", `${where}${path}: ends with a newline`);
      const lines = text.slice(0, -1).split("\n");
      ok(lines.length >= 2, `${where}${path}: pieces and a final line`);
      const objects = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
      // Byte for byte: each line is exactly its object's compact JSON, no other bytes.
      const expected = new TextEncoder().encode(
        objects.map((o) => JSON.stringify(o)).join("\n") + "\n",
      );
      equal(bytes.length, expected.length, where);
      ok(bytes.every((b, i) => b === expected[i]), `${where}${path}: framing differs`);
      objects.forEach((o, i) => {
        equal(o.done, i === objects.length - 1, `${where}${path}: line ${i}`);
        equal(o.model, MODEL);
        ok(!Number.isNaN(Date.parse(o.created_at as string)));
      });
      equal(objects.at(-1)!.eval_count, 8);
    }
  }
});

Deno.test("a keep_alive past any date is forever, and a month's outlasts a timer's limit", async () => {
  await using server = await serve();
  const ollama = new Ollama({ host: server.ollamaUrl! });
  const expiresAfter = async (keepAlive: number | string) => {
    await ollama.generate({
      model: MODEL,
      prompt: "hi",
      options: { num_predict: 1 },
      keep_alive: keepAlive,
    });
    return String((await ollama.ps()).models[0]!.expires_at);
  };
  // 1e13 s is past the last date a JavaScript Date holds: /api/ps had answered 500.
  const never = await expiresAfter(1e13);
  equal(never, await expiresAfter(-1), "the same as a negative keep_alive");
  // 720 h is past setTimeout's 24.8 days: the model stays, and expires in 30 days.
  const month = Date.parse(await expiresAfter("720h"));
  ok(Math.abs(month - (Date.now() + 720 * 3600_000)) < 5_000, String(month));
  await new Promise((resolve) => setTimeout(resolve, 50));
  equal(server.ctx.registry.state(MODEL), "loaded");
});

Deno.test("keep_alive 0 unloads the model once the reply is out; a duration sets expires_at", async () => {
  await using server = await serve();
  const registry = server.ctx.registry;
  for (const [where, ollama] of clients(server)) {
    await ollama.generate({
      model: MODEL,
      prompt: "hi",
      options: { num_predict: 2 },
      keep_alive: "10m",
    });
    const expires = Date.parse(String((await ollama.ps()).models[0]!.expires_at));
    ok(Math.abs(expires - (Date.now() + 600_000)) < 5_000, `${where}: ${expires}`);
    const reply = await ollama.chat({
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
      options: { num_predict: 2 },
      keep_alive: 0,
    });
    equal(reply.done, true);
    ok(await waitFor(() => registry.state(MODEL) === "available", 2000), `${where}: unloaded`);
    equal((await ollama.ps()).models.length, 0, where);
    // An empty prompt loads the model; with keep_alive 0 it unloads it.
    const load = await ollama.generate({ model: MODEL, prompt: "" });
    equal(load.done_reason, "load");
    equal(registry.state(MODEL), "loaded");
    const unload = await ollama.generate({ model: MODEL, prompt: "", keep_alive: 0 });
    equal(unload.done_reason, "unload");
    equal(registry.state(MODEL), "available");
  }
  // A short keep_alive unloads on time, though the server's keep-alive is 5 minutes.
  const ollama = new Ollama({ host: server.ollamaUrl! });
  await ollama.generate({
    model: MODEL,
    prompt: "hi",
    options: { num_predict: 1 },
    keep_alive: 0.3,
  });
  equal(registry.state(MODEL), "loaded");
  ok(await waitFor(() => registry.state(MODEL) === "available", 3000), "unloaded after 0.3 s");
});

Deno.test("repeated keep_alive requests leave one unload timer per model, for the last deadline", async () => {
  await using server = await serve();
  const ollama = new Ollama({ host: server.ollamaUrl! });
  // Counts the timers of an hour or more that are set and neither cleared nor fired.
  const long = new Set<unknown>();
  const { setTimeout: realSetTimeout, clearTimeout: realClearTimeout } = globalThis;
  globalThis.setTimeout = ((...args: unknown[]) => {
    const id = (realSetTimeout as (...args: unknown[]) => unknown)(...args);
    if (Number(args[1] ?? 0) >= 3_600_000) long.add(id);
    return id;
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((id?: unknown) => {
    long.delete(id);
    (realClearTimeout as (id?: unknown) => void)(id);
  }) as typeof clearTimeout;
  try {
    for (let i = 0; i < 20; i++) {
      const load = await ollama.chat({ model: MODEL, messages: [], keep_alive: "24h" });
      equal(load.done_reason, "load");
    }
    equal(long.size, 1, "one timer, however many requests");
    const expires = Date.parse(String((await ollama.ps()).models[0]!.expires_at));
    ok(Math.abs(expires - (Date.now() + 24 * 3600_000)) < 5_000, String(expires));
    const unload = await ollama.chat({ model: MODEL, messages: [], keep_alive: 0 });
    equal(unload.done_reason, "unload");
    equal(long.size, 0, "unloading clears it");
  } finally {
    globalThis.setTimeout = realSetTimeout;
    globalThis.clearTimeout = realClearTimeout;
  }
});

Deno.test("images are a 400 saying vision is not supported yet", async () => {
  await using server = await serve();
  for (const [where, ollama] of clients(server)) {
    const image = "iVBORw0KGgo=";
    for (
      const call of [
        () =>
          ollama.chat({
            model: MODEL,
            messages: [{ role: "user", content: "?", images: [image] }],
          }),
        () => ollama.generate({ model: MODEL, prompt: "?", images: [image] }),
      ]
    ) {
      await rejects(call(), (error: unknown) => {
        ok(isResponseError(error), where);
        equal(error.status_code, 400);
        match(error.message, /vision is not supported yet/);
        return true;
      });
    }
  }
});

Deno.test("options and fields Shimmy cannot honour are a 400 that names them", async () => {
  await using server = await serve();
  const ollama = new Ollama({ host: server.ollamaUrl! });
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ options: { num_gpu: 10 } }, /"options\.num_gpu" cannot be set per request.*--n-gpu-layers/],
    [{ options: { tfs_z: 0.9 } }, /"options\.tfs_z" is not supported/],
    [{ options: { flux: 1 } }, /"options\.flux" is not an option/],
    [{ suffix: "end", system: "Be brief." }, /"system" has no place in a fill-in-the-middle/],
    [{ context: [1, 2] }, /"context" is not supported/],
    [{ think: "max" }, /"think" must be/],
    [{ think: true, raw: true }, /"think" needs the chat template/],
    // Qwen 2.5's template (or tiny-f32's own) does not think, as Ollama says of such a model.
    [{ think: true }, /"think": this model does not support thinking/],
    [{ think: "high" }, /"think": this model does not support thinking/],
    [{ keep_alive: "soon" }, /"keep_alive" must be/],
    [{ colour: "red" }, /Unknown field "colour"/],
  ];
  for (const [extra, message] of cases) {
    await rejects(
      ollama.generate({ model: MODEL, prompt: "hi", ...extra } as never),
      (error: unknown) => {
        ok(isResponseError(error));
        equal(error.status_code, 400, String(message));
        match(error.message, message);
        return true;
      },
    );
  }
  // Sampling options that are honoured pass.
  const reply = await ollama.generate({
    model: MODEL,
    prompt: "hi",
    options: {
      num_predict: 3,
      top_k: 5,
      top_p: 0.9,
      min_p: 0.1,
      typical_p: 0.9,
      repeat_penalty: 1.1,
      repeat_last_n: 32,
      presence_penalty: 0.1,
      frequency_penalty: 0.1,
      stop: ["\n\n"],
      tfs_z: 1,
    },
  });
  equal(reply.done, true);
  // Mirostat aiming at no surprise keeps only the best token: the greedy text.
  const greedy = await ollama.generate({
    model: MODEL,
    prompt: "hi",
    options: { num_predict: 8, temperature: 0 },
  });
  const open = { num_predict: 8, temperature: 1.5, top_k: 0, top_p: 1, min_p: 0, seed: 5 };
  const mirostat = await ollama.generate({
    model: MODEL,
    prompt: "hi",
    options: { ...open, mirostat: 2, mirostat_tau: 0, mirostat_eta: 0.1 },
  });
  equal(mirostat.response, greedy.response);
  const plain = await ollama.generate({ model: MODEL, prompt: "hi", options: open });
  equal(plain.response === greedy.response, false, "the open draw alone is not greedy");
});

Deno.test("the main port's root serves Ollama's non-colliding routes; its /api/generate keeps Shimmy's contract", async () => {
  await using server = await serve();
  const version = await (await fetch(`${server.url}/api/version`)).json();
  match(version.version, /^\d+\.\d+\.\d+$/);
  const tags = await (await fetch(`${server.url}/api/tags`)).json();
  match(tags.models[0].digest, /^[0-9a-f]{64}$/);
  const chat = await postJson(`${server.url}/api/chat`, { model: "nope", messages: [] });
  equal(chat.status, 404);
  equal(typeof (await chat.json()).error, "string", "Ollama's error shape");
  const native = await (await postJson(`${server.url}/api/generate`, {
    model: MODEL,
    prompt: "hi",
    max_tokens: 2,
    stream: false,
  })).json();
  ok(native.usage && native.timings, "Shimmy's /api/generate");
  equal(await (await fetch(`${server.url}/ollama`)).text(), "Ollama is running");
  const root = await fetch(`${server.ollamaUrl}/`, { method: "HEAD" });
  equal(root.status, 200);
  await root.body?.cancel();
  const pull = await postJson(`${server.ollamaUrl}/api/pull`, { model: "llama3" });
  equal(pull.status, 403); // pulling needs serve --allow-pull (tests/cli/serve_pull_test.ts)
  match((await pull.json()).error, /--allow-pull/);
  // The Ollama listener also serves the OpenAI routes.
  const models = await (await fetch(`${server.ollamaUrl}/v1/models`)).json();
  equal(models.data[0].id, MODEL);
});

Deno.test("the Ollama listener applies the API key and the Host and Origin checks", async () => {
  await using server = await serve({ apiKey: "secret" });
  const ollama = new Ollama({ host: server.ollamaUrl! });
  await rejects(ollama.list(), (error: unknown) => {
    ok(isResponseError(error));
    equal(error.status_code, 401);
    match(error.message, /API key/);
    return true;
  });
  const keyed = new Ollama({
    host: server.ollamaUrl!,
    headers: { authorization: "Bearer secret" },
  });
  equal((await keyed.list()).models[0]!.name, MODEL);
  const alive = await fetch(`${server.ollamaUrl}/`);
  equal(await alive.text(), "Ollama is running", "the liveness check needs no key");
  const evil = await fetch(`${server.ollamaUrl}/api/tags`, {
    headers: { authorization: "Bearer secret", origin: "https://evil.example" },
  });
  equal(evil.status, 403);
  await evil.body?.cancel();
});

Deno.test({
  name:
    "a reasoning template's thinking comes back in thinking fields, whole and streamed; think turns it on and off",
  ignore: SOURCE === undefined,
  fn: async () => {
    await using server = await serve();
    // The R1 template opens <think> in the prompt: everything the model writes is thinking.
    const r1 = join(TEMPLATES, "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
    server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(r1), path: r1 };
    const ollama = new Ollama({ host: server.ollamaUrl! });
    const messages = [{ role: "user", content: "Think about it" }];
    const options = { num_predict: 12, temperature: 0 };
    const whole = await ollama.chat({ model: MODEL, messages, options });
    ok((whole.message.thinking ?? "").length > 0, JSON.stringify(whole.message));
    equal(whole.message.content, "");
    let thinking = "";
    for await (
      const chunk of await ollama.chat({ model: MODEL, messages, options, stream: true })
    ) {
      thinking += chunk.message.thinking ?? "";
      equal(chunk.message.content, "");
    }
    equal(thinking, whole.message.thinking);
    const generated = await ollama.generate({ model: MODEL, prompt: "Think about it", options });
    equal(generated.thinking, whole.message.thinking);
    equal(generated.response, "");

    // Qwen 3 closes an empty think block in the prompt when thinking is off.
    const qwen3 = join(TEMPLATES, "Qwen-Qwen3-0.6B.jinja");
    server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(qwen3), path: qwen3 };
    const promptSize = async (think: boolean) =>
      (await ollama.chat({ model: MODEL, messages, think, options: { num_predict: 1 } }))
        .prompt_eval_count;
    const on = await promptSize(true);
    const off = await promptSize(false);
    ok(on < off, `${on} < ${off}`);
  },
});

Deno.test("a failure mid-stream ends the NDJSON stream with an error line, which ollama-js raises", async () => {
  await using server = await serve();
  const sample = Sampler.prototype.sample;
  Sampler.prototype.sample = () => {
    throw new RangeError("injected fault");
  };
  try {
    const response = await postJson(`${server.url}/ollama/api/generate`, {
      model: MODEL,
      prompt: "hi",
    });
    equal(response.status, 200);
    const lines = (await response.text()).split("\n");
    equal(lines.at(-1), "");
    const last = JSON.parse(lines.at(-2)!);
    equal(Object.keys(last).join(), "error");
    match(last.error, /injected fault/);
    const ollama = new Ollama({ host: server.ollamaUrl! });
    await rejects(
      (async () => {
        for await (const _ of await ollama.chat({ model: MODEL, messages: [], stream: true })) {
          // a chat with no messages only loads the model
        }
        for await (
          const _ of await ollama.chat({
            model: MODEL,
            messages: [{ role: "user", content: "hi" }],
            stream: true,
          })
        ) {
          // the error line is raised here
        }
      })(),
      /injected fault/,
    );
  } finally {
    Sampler.prototype.sample = sample;
  }
});

Deno.test("Ollama's documented curl lines (a JSON body sent as a form) generate and chat; a pull sent so is a 415", async () => {
  await using server = await serve();
  const curl = async (url: string, body: Record<string, unknown>) => {
    // What `curl URL -d '{…}'` sends: no JSON type, no Origin, no Sec-Fetch-Site.
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: JSON.stringify(body),
    });
    return { status: response.status, json: await response.json() };
  };
  for (const [where, base] of bases(server)) {
    const generated = await curl(`${base}/api/generate`, {
      model: "tiny-f32",
      prompt: "Why is the sky blue?",
      stream: false,
      options: { num_predict: 3 },
    });
    equal(generated.status, 200, `${where}: ${JSON.stringify(generated.json)}`);
    equal(generated.json.done, true);
    const chatted = await curl(`${base}/api/chat`, {
      model: "tiny-f32",
      messages: [{ role: "user", content: "why is the sky blue?" }],
      stream: false,
      options: { num_predict: 3 },
    });
    equal(chatted.status, 200, where);
    const pulled = await curl(`${base}/api/pull`, { model: "tiny-f32" });
    equal(pulled.status, 415, where);
  }
});

Deno.test("logprobs and top_logprobs on generate and chat, streamed or not (ollama-js)", async () => {
  await using server = await serve();
  const ollama = new Ollama({ host: server.ollamaUrl! });
  const settings = { logprobs: true, top_logprobs: 2, options: { num_predict: 5, temperature: 0 } };
  const whole = await ollama.generate({ model: MODEL, prompt: "Once upon", ...settings });
  const steps = whole.logprobs ?? [];
  equal(steps.length, whole.eval_count);
  for (const step of steps) {
    equal(step.top_logprobs?.length, 2);
    // Greedy: the chosen token is the most likely one.
    equal(step.top_logprobs?.[0]?.token, step.token);
    ok(step.logprob <= 0);
  }
  equal(steps.map((s) => s.token).join(""), whole.response);
  const streamed = [];
  for await (
    const part of await ollama.generate({
      model: MODEL,
      prompt: "Once upon",
      ...settings,
      stream: true,
    })
  ) {
    streamed.push(...(part.logprobs ?? []));
  }
  deepEqual(streamed.map((s) => s.token), steps.map((s) => s.token));
  const chat = await ollama.chat({
    model: MODEL,
    messages: [{ role: "user", content: "Once upon" }],
    ...settings,
  });
  equal(chat.logprobs?.length, chat.eval_count);
  const plain = await ollama.generate({
    model: MODEL,
    prompt: "Once upon",
    options: { num_predict: 2 },
  });
  equal(plain.logprobs, undefined);
  await rejects(
    ollama.generate({ model: MODEL, prompt: "hi", top_logprobs: 2 } as never),
    (error: unknown) => isResponseError(error) && error.status_code === 400,
  );
});
