import { deepEqual, equal, match, ok } from "node:assert/strict";
import { liveHandles } from "../../src/ffi/handle.ts";
import { postJson, startServer, waitFor } from "./harness.ts";

Deno.test("/health reports models and their load state", async () => {
  await using server = await startServer({ fixtures: ["tiny-f32", "tiny-q8_0"] });
  const before = await (await fetch(`${server.url}/health`)).json();
  equal(before.status, "ok");
  deepEqual(before.models, [
    { name: "tiny-f32", state: "available" },
    { name: "tiny-q8_0", state: "available" },
  ]);
  const r = await postJson(`${server.url}/v1/completions`, {
    model: "tiny-q8_0",
    prompt: "x",
    max_tokens: 1,
  });
  await r.body?.cancel();
  const after = await (await fetch(`${server.url}/health`)).json();
  equal(after.models[1].state, "loaded");
});

Deno.test("the model is loaded once and shared by every request", async () => {
  const modelsBefore = liveHandles().Model ?? 0;
  await using server = await startServer();
  await Promise.all(
    Array.from(
      { length: 6 },
      () =>
        postJson(`${server.url}/v1/completions`, { prompt: "x", max_tokens: 2 }).then((r) =>
          r.json()
        ),
    ),
  );
  for (let i = 0; i < 3; i++) {
    const second = await postJson(`${server.url}/api/generate`, { prompt: "again", max_tokens: 2 });
    equal(second.status, 200, "later requests work: the backend is not initialised twice");
    await second.body?.cancel();
  }
  equal((liveHandles().Model ?? 0) - modelsBefore, 1);
  equal(server.ctx.registry.loadTimes.size, 1);
});

Deno.test("no phantom default model: with no model files, lists are empty and requests are 404", async () => {
  await using server = await startServer({ fixtures: [] });
  deepEqual((await (await fetch(`${server.url}/v1/models`)).json()).data, []);
  deepEqual((await (await fetch(`${server.url}/api/models`)).json()).models, []);
  const response = await postJson(`${server.url}/v1/completions`, { prompt: "x" });
  equal(response.status, 404);
  match((await response.json()).error.message, /No models are available/);
});

Deno.test("/api/models and /api/tags list the models in the original and Ollama shapes", async () => {
  await using server = await startServer();
  const models = (await (await fetch(`${server.url}/api/models`)).json()).models;
  equal(models[0].name, "tiny-f32");
  equal(models[0].model_type, "Unknown"); // the harness's entry carries no architecture
  ok(models[0].size_bytes > 0);
  equal(models[0].source, "discovered");
  equal(models[0].source_detail, "test");
  const tags = (await (await fetch(`${server.url}/api/tags`)).json()).models;
  equal(tags[0].name, "tiny-f32");
  equal(tags[0].details.format, "gguf");
  ok(!Number.isNaN(Date.parse(tags[0].modified_at)));
});

Deno.test("/metrics counts requests, tokens, TTFT and slot gauges in Prometheus format", async () => {
  await using server = await startServer();
  const r = await postJson(`${server.url}/v1/completions`, { prompt: "hello", max_tokens: 7 });
  const body = await r.json();
  await (await postJson(`${server.url}/v1/completions`, "{bad")).body?.cancel();
  const text = await (await fetch(`${server.url}/metrics`)).text();
  match(text, /shimmy_requests_total\{endpoint="\/v1\/completions",status="200"\} 1/);
  match(text, /shimmy_requests_total\{endpoint="\/v1\/completions",status="400"\} 1/);
  match(text, new RegExp(`shimmy_prompt_tokens_total ${body.usage.prompt_tokens}`));
  match(text, /shimmy_generated_tokens_total 7/);
  match(text, /shimmy_ttft_seconds_count 1/);
  match(text, /shimmy_busy_slots\{model="tiny-f32"\} 0/);
  match(text, /shimmy_slots\{model="tiny-f32"\} 4/);
  match(text, /shimmy_queue_depth\{model="tiny-f32"\} 0/);
  for (const line of text.trim().split("\n")) {
    ok(/^(# (HELP|TYPE) [\w:]+ .+|[\w:]+(\{[^}]*\})? [\d.e+-]+)$/.test(line), line);
  }
});

Deno.test("/metrics has llama-server's llamacpp: families, so its dashboards read Shimmy", async () => {
  await using server = await startServer();
  const value = (text: string, name: string) =>
    Number(new RegExp(`^llamacpp:${name} ([\\d.e+-]+)$`, "m").exec(text)?.[1]);
  const prompt = "the quick brown fox jumps over the lazy dog ".repeat(3);
  const first = await (await postJson(`${server.url}/v1/completions`, { prompt, max_tokens: 5 }))
    .json();
  const again = await (await postJson(`${server.url}/v1/completions`, { prompt, max_tokens: 4 }))
    .json();
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const cached = again.usage.prompt_tokens_details.cached_tokens;
  ok(cached > 0, "the second request reused the first one's prompt");
  equal(value(text, "prompt_tokens_cached_total"), cached);
  equal(
    value(text, "prompt_tokens_total"),
    first.usage.prompt_tokens + again.usage.prompt_tokens - cached,
  );
  equal(value(text, "tokens_predicted_total"), 9);
  ok(value(text, "n_decode_total") >= 9, text);
  equal(value(text, "n_tokens_max"), first.usage.prompt_tokens + 5);
  ok(value(text, "prompt_seconds_total") > 0 && value(text, "tokens_predicted_seconds_total") > 0);
  ok(value(text, "predicted_tokens_seconds") > 0);
  equal(value(text, "requests_processing"), 0);
  equal(value(text, "requests_deferred"), 0);
  match(text, /# TYPE llamacpp:prompt_tokens_total counter/);
});

Deno.test("/diag shows versions, devices, load params and slots", async () => {
  await using server = await startServer();
  await (await postJson(`${server.url}/v1/completions`, { prompt: "x", max_tokens: 1 })).json();
  const diag = await (await fetch(`${server.url}/diag`)).json();
  equal(diag.llama_cpp, "v0.5.0");
  // The original Shimmy's fields.
  equal(diag.os, Deno.build.os);
  equal(diag.cores, navigator.hardwareConcurrency);
  ok(diag.mem_total_mb > 0);
  ok(diag.devices.some((d: { type: string }) => d.type === "cpu"));
  equal(diag.models[0].name, "tiny-f32");
  equal(diag.models[0].slots.slots, 4);
  deepEqual(diag.models[0].kv_cache_types, { k: "f16", v: "f16" });
  equal(typeof diag.models[0].load_params.n_gpu_layers, "number");
  // A KV stream per slot on the CPU: the attention probe chose the kernel.
  const probe = diag.models[0].attention_probe;
  ok(probe.fused.tokenMs > 0 && probe.unfused.tokenMs > 0, JSON.stringify(probe));
  equal(diag.models[0].flash_attn, probe.kernel === "fused" ? "enabled" : "disabled");
  equal(diag.models[0].kv_unified, false, "a KV stream per slot, on the CPU too");
  equal(diag.models[0].slots.slotMoves, 0);
  equal(diag.models[0].slots.cacheSwaps, 0);
  equal(diag.models[0].slots.stepCosts, undefined, "one prompt step times no generation step");
  // A prompt long enough to be timed alone, then generation steps: both costs are known.
  const prompt = "the quick brown fox jumps over the lazy dog ".repeat(4);
  await (await postJson(`${server.url}/v1/completions`, { prompt, max_tokens: 3 })).json();
  const costs = (await (await fetch(`${server.url}/diag`)).json()).models[0].slots.stepCosts;
  ok(costs?.generationStepMs > 0 && costs?.msPerPromptToken > 0, JSON.stringify(costs));
});

Deno.test("/diag shows a KV stream per slot when asked, and the requests moved to keep them a run", async () => {
  await using server = await startServer({ load: { kvUnified: "off", ctxSize: 8192 } });
  const busy = () => server.ctx.registry.loaded().get("tiny-f32")?.scheduler.stats().busySlots ?? 0;
  // Started one by one, so they take slots 0, 1 and 2: the middle one ends first, between the
  // busy first and third, and the third moves into its slot.
  const requests: Promise<void>[] = [];
  for (const [i, max_tokens] of [1200, 300, 1200].entries()) {
    requests.push((async () => {
      const response = await postJson(`${server.url}/v1/completions`, {
        prompt: "Counting sheep:",
        max_tokens,
        temperature: 0,
        ignore_eos: true,
      });
      equal((await response.json()).usage.completion_tokens, max_tokens);
    })());
    ok(await waitFor(() => busy() === i + 1, 10_000), `request ${i + 1} did not start`);
  }
  await Promise.all(requests);
  const diag = await (await fetch(`${server.url}/diag`)).json();
  equal(diag.models[0].kv_unified, false);
  ok(diag.models[0].slots.slotMoves >= 1);
  equal(diag.models[0].slots.brokenRunSteps, 0);
});

Deno.test("a chat's next turn through HTTP takes its earlier pieces from the prompt token cache", async () => {
  await using server = await startServer({
    fixtures: ["qwen2"],
    load: { parallel: 1, ctxSize: 4096 },
  });
  const line = (i: number) => `Line ${i} of a long conversation about lighthouses and the sea.`;
  const messages = [
    { role: "user", content: Array.from({ length: 60 }, (_, i) => line(i)).join(" ") },
    { role: "assistant", content: Array.from({ length: 60 }, (_, i) => line(i + 60)).join(" ") },
    { role: "user", content: Array.from({ length: 60 }, (_, i) => line(i + 120)).join(" ") },
  ];
  const turn = async () => {
    const response = await postJson(`${server.url}/v1/chat/completions`, {
      messages,
      max_tokens: 2,
      temperature: 0,
    });
    equal(response.status, 200);
    return (await response.json()).usage.prompt_tokens as number;
  };
  const cacheOf = async () =>
    (await (await fetch(`${server.url}/diag`)).json()).models[0].prompt_token_cache;
  const first = await turn();
  const before = await cacheOf();
  ok(before.misses > 1 && before.pieces > 1, JSON.stringify(before));
  messages.push({ role: "assistant", content: "Noted." }, { role: "user", content: line(999) });
  ok(await turn() > first);
  const after = await cacheOf();
  ok(after.hits - before.hits >= before.pieces - 1, JSON.stringify({ before, after }));
});
