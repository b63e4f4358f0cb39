/**
 * `serve --replicas 2` on the CPU: requests spread over two copies of a tiny model, `/metrics`
 * and `/api/ps` show each copy, and unload, LoRA and embeddings still work.
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import { fixtureLora } from "../fixtures/models.ts";
import { postJson, startServer } from "./harness.ts";

const TWO_COPIES = { replicas: 2, parallel: 1, gpuBackend: "cpu", ctxSize: 256 } as const;

function complete(url: string, body: Record<string, unknown> = {}, signal?: AbortSignal) {
  return postJson(
    `${url}/v1/completions`,
    {
      prompt: "once upon a time",
      max_tokens: 16,
      temperature: 0,
      ...body,
    },
    {},
    signal,
  );
}

Deno.test("concurrent requests land on both copies of a model served with replicas: 2", async () => {
  await using server = await startServer({ load: TWO_COPIES });
  const responses = await Promise.all([complete(server.url), complete(server.url)]);
  const bodies = await Promise.all(responses.map((r) => r.json()));
  deepEqual(responses.map((r) => r.status), [200, 200]);
  equal(bodies[0].choices[0].text, bodies[1].choices[0].text, "both copies answer alike");
  const group = server.ctx.registry.replicas().get("tiny-f32")!;
  equal(group.copies.length, 2);
  for (const copy of group.copies) {
    ok(copy.scheduler.stats().promptTokensEvaluated > 0, "each copy evaluated a prompt");
  }
});

Deno.test("/metrics, /api/ps and /diag show each copy's slots and load", async () => {
  await using server = await startServer({ load: { ...TWO_COPIES, ctxSize: 4096 } });
  // A long request keeps one copy busy while the server is scraped.
  const abort = new AbortController();
  const long = complete(server.url, { max_tokens: 4000, ignore_eos: true }, abort.signal)
    .then((r) => r.body?.cancel(), () => {});
  const group = () => server.ctx.registry.replicas().get("tiny-f32");
  for (let i = 0; i < 400 && (group()?.stats().busySlots ?? 0) === 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  match(metrics, /shimmy_slots\{model="tiny-f32"\} 2/);
  match(metrics, /shimmy_busy_slots\{model="tiny-f32"\} 1/);
  match(metrics, /shimmy_replica_busy_slots\{model="tiny-f32",replica="0",devices="CPU"\} 1/);
  match(metrics, /shimmy_replica_busy_slots\{model="tiny-f32",replica="1",devices="CPU"\} 0/);
  match(metrics, /shimmy_replica_queue_depth\{model="tiny-f32",replica="1",devices="CPU"\} 0/);
  const ps = (await (await fetch(`${server.url}/api/ps`)).json()).models[0];
  equal(ps.slots, 2);
  deepEqual(ps.replicas, [
    { index: 0, devices: ["CPU"], slots: 1, busy_slots: 1, queued: 0 },
    { index: 1, devices: ["CPU"], slots: 1, busy_slots: 0, queued: 0 },
  ]);
  const diag = (await (await fetch(`${server.url}/diag`)).json()).models[0];
  deepEqual(
    diag.replicas.map((r: { index: number; devices: string[]; slots: Record<string, number> }) => [
      r.index,
      r.devices,
      r.slots.slots,
      r.slots.busySlots,
    ]),
    [[0, ["CPU"], 1, 1], [1, ["CPU"], 1, 0]],
  );
  // The next request goes to the idle copy and finishes while the long one runs.
  const quick = await complete(server.url);
  equal(quick.status, 200);
  await quick.body?.cancel();
  ok(group()!.copies[1]!.scheduler.stats().promptTokensEvaluated > 0);
  abort.abort();
  await long;
});

Deno.test("LoRA hot-swap, embeddings and unload work on a model with two copies", async () => {
  const adapter = await fixtureLora("tiny-f32-lora");
  await using server = await startServer({
    load: { ...TWO_COPIES, pooling: "mean" },
    adapters: [{ name: "tiny-f32-lora", path: adapter }],
  });
  const base = await (await complete(server.url)).json();
  const attach = await postJson(`${server.url}/api/lora`, {
    model: "tiny-f32",
    adapters: [{ name: "tiny-f32-lora", scale: 1 }],
  });
  equal(attach.status, 200);
  await attach.body?.cancel();
  const group = server.ctx.registry.replicas().get("tiny-f32")!;
  for (const copy of group.copies) deepEqual(copy.lora(), [{ path: adapter, scale: 1 }]);
  // Two at once, so both copies answer with the adapter.
  const adapted = await Promise.all([complete(server.url), complete(server.url)]);
  const texts = await Promise.all(adapted.map(async (r) => (await r.json()).choices[0].text));
  equal(texts[0], texts[1], "both copies carry the adapter");
  ok(texts[0] !== base.choices[0].text, "the adapter changes the output");
  const embeddings = await postJson(`${server.url}/v1/embeddings`, { input: ["a", "b"] });
  equal(embeddings.status, 200);
  equal((await embeddings.json()).data.length, 2);
  const unloaded = await (await postJson(`${server.url}/api/models/unload`, { model: "tiny-f32" }))
    .json();
  equal(unloaded.unloaded, true);
  equal(server.ctx.registry.state("tiny-f32"), "available");
  for (const copy of group.copies) {
    await copy.embedder().then(() => ok(false, "closed"), (e) => match(e.message, /unloaded/));
  }
});

Deno.test("slot numbers go on from one copy to the next for /slots/N save and restore", async () => {
  const folder = await Deno.makeTempDir({ prefix: "shimmy-replica-slots-" });
  try {
    await using server = await startServer({
      load: TWO_COPIES,
      settings: { slotSavePath: folder },
    });
    // Two at once: each copy evaluates a prompt into its one slot.
    await Promise.all(
      [complete(server.url), complete(server.url)].map(async (r) => (await r).json()),
    );
    const action = async (path: string, filename: string) => {
      const response = await fetch(`${server.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ filename }),
      });
      return { status: response.status, json: await response.json() };
    };
    const first = await action("/slots/0?action=save", "first.bin");
    const second = await action("/slots/1?action=save", "second.bin");
    ok(first.json.n_saved > 0 && second.json.n_saved > 0, JSON.stringify([first, second]));
    equal((await action("/slots/2?action=save", "third.bin")).status, 400);
    const restored = await action("/slots/1?action=restore", "first.bin");
    equal(restored.json.id_slot, 1);
    equal(restored.json.n_restored, first.json.n_saved);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});
