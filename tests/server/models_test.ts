import { deepEqual, equal, match, notEqual, ok } from "node:assert/strict";
import { fixtureLora } from "../fixtures/models.ts";
import { postJson, startServer } from "./harness.ts";

async function complete(url: string, body: Record<string, unknown>) {
  const response = await postJson(`${url}/v1/completions`, {
    prompt: "once upon a time",
    max_tokens: 16,
    temperature: 0,
    ...body,
  });
  return { status: response.status, body: await response.json() };
}

/** A completion request for `model` whose client hangs up when told to. */
function leavingRequest(url: string, model: string) {
  const leaving = new AbortController();
  const answer = postJson(`${url}/v1/completions`, { model, prompt: "x" }, {}, leaving.signal)
    .catch(() => undefined);
  return {
    async leave() {
      leaving.abort();
      await answer;
    },
  };
}

Deno.test("two models serve concurrently, each with its own scheduler", async () => {
  await using server = await startServer({ fixtures: ["tiny-f32", "tiny-q8_0"] });
  const [a, b] = await Promise.all([
    complete(server.url, { model: "tiny-f32" }),
    complete(server.url, { model: "tiny-q8_0" }),
  ]);
  equal(a.status, 200);
  equal(b.status, 200);
  equal(a.body.model, "tiny-f32");
  equal(b.body.model, "tiny-q8_0");
  const ps = (await (await fetch(`${server.url}/api/ps`)).json()).models;
  deepEqual(ps.map((m: { name: string }) => m.name).sort(), ["tiny-f32", "tiny-q8_0"]);
});

Deno.test("with --max-models 1 the least recently used idle model is unloaded and reloads on demand", async () => {
  await using server = await startServer({
    fixtures: ["tiny-f32", "tiny-q8_0"],
    load: { maxModels: 1 },
  });
  const first = await complete(server.url, { model: "tiny-f32" });
  await complete(server.url, { model: "tiny-q8_0" });
  equal(server.ctx.registry.state("tiny-f32"), "available");
  equal(server.ctx.registry.state("tiny-q8_0"), "loaded");
  const again = await complete(server.url, { model: "tiny-f32" });
  equal(again.body.choices[0].text, first.body.choices[0].text, "reloaded model, same output");
  equal(server.ctx.registry.state("tiny-q8_0"), "available");
});

Deno.test("requests to more models at once than --max-models never load more than it", async () => {
  const models = ["tiny-f32", "tiny-q8_0", "tiny-f16", "tiny-tied"];
  await using server = await startServer({ fixtures: models, load: { maxModels: 2 } });
  let mostLoaded = 0;
  let watching = true;
  const watch = (async () => {
    while (watching) {
      mostLoaded = Math.max(mostLoaded, server.ctx.registry.loaded().size);
      await new Promise((r) => setTimeout(r, 1));
    }
  })();
  const answers = await Promise.all(
    models.map((model) => postJson(`${server.url}/v1/completions`, { model, prompt: "x" })),
  );
  watching = false;
  await watch;
  // The loads beyond the limit waited for a model to go idle: every request was served.
  for (const answer of answers) {
    equal(answer.status, 200, await answer.text());
  }
  ok(mostLoaded <= 2, `${mostLoaded} models were loaded at once`);
  ok(server.ctx.registry.loaded().size <= 2);
});

Deno.test("with every loaded model busy, a load for another waits for one to go idle", async () => {
  await using server = await startServer({
    fixtures: ["tiny-f32", "tiny-q8_0"],
    load: { maxModels: 1 },
  });
  // A lease keeps the loaded model busy, as a long generation would.
  const lease = await server.ctx.registry.acquire("tiny-f32");
  let answered = false;
  const other = complete(server.url, { model: "tiny-q8_0", max_tokens: 2 }).finally(() =>
    answered = true
  );
  await new Promise((r) => setTimeout(r, 400));
  equal(answered, false, "it waits while the loaded model is busy");
  equal(server.ctx.registry.state("tiny-q8_0"), "loading");
  const health = await (await fetch(`${server.url}/health`)).json();
  deepEqual(health.models.find((m: { name: string }) => m.name === "tiny-q8_0"), {
    name: "tiny-q8_0",
    state: "loading",
    waiting_for_room: true,
  });
  lease.release();
  const answer = await other;
  equal(answer.status, 200, JSON.stringify(answer.body));
  equal(server.ctx.registry.state("tiny-f32"), "available");
});

Deno.test("a load waiting for room is a 503 after loadWaitMs, and gives up when its client leaves", async () => {
  await using server = await startServer({
    fixtures: ["tiny-f32", "tiny-q8_0"],
    load: { maxModels: 1, loadWaitMs: 300 },
  });
  const lease = await server.ctx.registry.acquire("tiny-f32");
  const refused = await complete(server.url, { model: "tiny-q8_0" });
  equal(refused.status, 503);
  match(refused.body.error.message, /all are busy \(waited 0\.\d s\); try again shortly/);
  lease.release();

  await using patient = await startServer({
    fixtures: ["tiny-f32", "tiny-q8_0"],
    load: { maxModels: 1 },
  });
  const held = await patient.ctx.registry.acquire("tiny-f32");
  const gone = leavingRequest(patient.url, "tiny-q8_0");
  await new Promise((r) => setTimeout(r, 200));
  equal(patient.ctx.registry.state("tiny-q8_0"), "loading", "it waits for room");
  await gone.leave();
  for (let i = 0; i < 40 && patient.ctx.registry.state("tiny-q8_0") === "loading"; i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  held.release();
  await new Promise((r) => setTimeout(r, 300));
  equal(patient.ctx.registry.state("tiny-q8_0"), "available", "no load for a client gone");
  equal(patient.ctx.registry.state("tiny-f32"), "loaded", "nothing unloaded for it");
});

Deno.test("loads waiting for room count their wait from their request, and a new request restarts an abandoned one", async () => {
  await using server = await startServer({
    fixtures: ["tiny-f32", "tiny-q8_0", "tiny-f16"],
    load: { maxModels: 1, loadWaitMs: 600 },
  });
  const held = await server.ctx.registry.acquire("tiny-f32");
  // Two loads queued at once: the second does not wait out the first one's wait and then its own.
  const started = performance.now();
  const timed = (model: string) =>
    complete(server.url, { model }).then((answer) => ({
      ...answer,
      ms: performance.now() - started,
    }));
  const [second, third] = await Promise.all([timed("tiny-q8_0"), timed("tiny-f16")]);
  equal(second.status, 503);
  equal(third.status, 503);
  ok(third.ms < 1_100, `the third model's 503 came after ${Math.round(third.ms)} ms`);
  // A client gives up on a waiting load; one who stays asks for the same model after it.
  const gone = leavingRequest(server.url, "tiny-q8_0");
  await new Promise((r) => setTimeout(r, 100));
  await gone.leave();
  const staying = complete(server.url, { model: "tiny-q8_0", max_tokens: 1 });
  await new Promise((r) => setTimeout(r, 100));
  held.release();
  const answer = await staying;
  equal(answer.status, 200, JSON.stringify(answer.body));
});

Deno.test("a load given up while it opens the model is the one a later request gets: no second copy", async () => {
  await using server = await startServer({ fixtures: ["tiny-f32", "tiny-q8_0"] });
  const registry = server.ctx.registry;
  const leaving = new AbortController();
  const first = registry.acquire("tiny-q8_0", leaving.signal);
  for (let i = 0; i < 2000 && !registry.loadProgress.has("tiny-q8_0"); i++) {
    await new Promise((r) => setTimeout(r, 1));
  }
  ok(registry.loadProgress.has("tiny-q8_0"), "the model is opening");
  leaving.abort(); // its only request goes while the file is read
  const second = registry.acquire("tiny-q8_0");
  const [a, b] = await Promise.all([first, second]);
  equal(b.replicas, a.replicas, "one copy of the model");
  equal(registry.replicas().get("tiny-q8_0"), a.replicas);
  a.release();
  b.release();
});

Deno.test("closing the registry ends a load waiting for room at once", async () => {
  await using server = await startServer({
    fixtures: ["tiny-f32", "tiny-q8_0"],
    load: { maxModels: 1 },
  });
  const held = await server.ctx.registry.acquire("tiny-f32");
  const waiting = server.ctx.registry.acquire("tiny-q8_0").then(
    () => "loaded",
    (error: Error) => error.message,
  );
  await new Promise((r) => setTimeout(r, 100));
  const started = performance.now();
  const closing = server.ctx.registry.close(200);
  match(await waiting, /shutting down; "tiny-q8_0" was not loaded/);
  await closing;
  ok(performance.now() - started < 5_000, `closed in ${performance.now() - started} ms`);
  held.release();
});

Deno.test("a model idle past --keep-alive is unloaded", async () => {
  await using server = await startServer({ load: { keepAliveMs: 150 } });
  await complete(server.url, {});
  equal(server.ctx.registry.state("tiny-f32"), "loaded");
  for (let i = 0; i < 50 && server.ctx.registry.state("tiny-f32") === "loaded"; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  equal(server.ctx.registry.state("tiny-f32"), "available");
});

Deno.test("a load the memory check says cannot fit is a 503 with a clear message", async () => {
  await using server = await startServer({ load: { availableMemory: () => 1024 } });
  const response = await postJson(`${server.url}/v1/completions`, { prompt: "x" });
  equal(response.status, 503);
  const error = (await response.json()).error;
  equal(error.code, "model_unavailable");
  match(error.message, /needs about \d+ MiB and only 0 MiB are free/);
});

Deno.test("/api/models/load and /api/models/unload load and free a model explicitly", async () => {
  await using server = await startServer();
  const loaded = await (await postJson(`${server.url}/api/models/load`, { model: "tiny-f32" }))
    .json();
  equal(loaded.state, "loaded");
  equal(server.ctx.registry.state("tiny-f32"), "loaded");
  const ps = (await (await fetch(`${server.url}/api/ps`)).json()).models;
  equal(ps[0].name, "tiny-f32");
  equal(ps[0].slots, 4);
  ok(ps[0].size_bytes > 0);
  const unloaded = await (await postJson(`${server.url}/api/models/unload`, { model: "tiny-f32" }))
    .json();
  equal(unloaded.unloaded, true);
  equal(server.ctx.registry.state("tiny-f32"), "available");
  const missing = await postJson(`${server.url}/api/models/load`, { model: "nope" });
  equal(missing.status, 404);
  await missing.body?.cancel();
});

Deno.test("LoRA: hot-swap through /api/lora changes the output, and detaching restores it exactly", async () => {
  const adapter = await fixtureLora("tiny-f32-lora");
  await using server = await startServer({
    adapters: [{ name: "tiny-f32-lora", path: adapter }],
  });
  const base = (await complete(server.url, {})).body.choices[0].text;
  const attach = await postJson(`${server.url}/api/lora`, {
    model: "tiny-f32",
    adapters: [{ name: "tiny-f32-lora", scale: 1 }],
  });
  deepEqual((await attach.json()).attached, [{ path: adapter, scale: 1 }]);
  const adapted = (await complete(server.url, {})).body.choices[0].text;
  notEqual(adapted, base);
  const listed = await (await fetch(`${server.url}/api/lora?model=tiny-f32`)).json();
  equal(listed.attached.length, 1);
  await (await postJson(`${server.url}/api/lora`, { model: "tiny-f32", adapters: [] })).json();
  equal((await complete(server.url, {})).body.choices[0].text, base);
});

Deno.test("LoRA: llama-server's /lora-adapters lists adapters by id and hot-swaps them", async () => {
  const adapter = await fixtureLora("tiny-f32-lora");
  await using server = await startServer({
    adapters: [{ name: "tiny-f32-lora", path: adapter }],
  });
  const list = async () => await (await fetch(`${server.url}/lora-adapters`)).json();
  const set = (body: unknown) => postJson(`${server.url}/lora-adapters`, body);
  const base = (await complete(server.url, {})).body.choices[0].text;
  deepEqual(await list(), [{ id: 0, path: adapter, scale: 0 }]);
  deepEqual(await (await set([{ id: 0, scale: 1 }])).json(), { success: true });
  deepEqual(await list(), [{ id: 0, path: adapter, scale: 1 }]);
  notEqual((await complete(server.url, {})).body.choices[0].text, base);
  // The list is the whole set: an empty one detaches.
  await (await set([])).json();
  deepEqual(await list(), [{ id: 0, path: adapter, scale: 0 }]);
  equal((await complete(server.url, {})).body.choices[0].text, base);
  for (const bad of [{ id: 0, scale: 1 }, [{ id: 1, scale: 1 }], [{ scale: 1 }], "x"]) {
    const response = await set(bad);
    equal(response.status, 400, JSON.stringify(bad));
    await response.body?.cancel();
  }
});

Deno.test("LoRA: a request can pick adapters by name; unknown names are 400", async () => {
  const adapter = await fixtureLora("tiny-f32-lora");
  await using server = await startServer({
    adapters: [{ name: "tiny-f32-lora", path: adapter }],
  });
  const base = (await complete(server.url, {})).body.choices[0].text;
  const [withLora, without] = await Promise.all([
    complete(server.url, { lora: [{ name: "tiny-f32-lora", scale: 1 }] }),
    complete(server.url, {}),
  ]);
  notEqual(withLora.body.choices[0].text, base);
  equal(without.body.choices[0].text, base, "requests with other adapters never share a step");
  const unknown = await complete(server.url, { lora: [{ name: "nope" }] });
  equal(unknown.status, 400);
  equal(unknown.body.error.param, "lora");
  const byPath = await complete(server.url, { lora: [{ name: adapter }] });
  equal(byPath.status, 400, "request fields never name files");
  // llama-server's form: the adapter's number in the model's list.
  const byId = await complete(server.url, { lora: [{ id: 0, scale: 1 }] });
  equal(byId.body.choices[0].text, withLora.body.choices[0].text);
  const noSuchId = await complete(server.url, { lora: [{ id: 1, scale: 1 }] });
  equal(noSuchId.status, 400);
  match(noSuchId.body.error.message, /names no adapter/);
});
