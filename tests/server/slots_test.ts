/**
 * `GET /slots` through real HTTP and libllama: no slots before the model loads (and no load),
 * idle slots after, a busy one with its request's progress while it generates, and
 * `fail_on_no_slot` answering 503 exactly while every slot is busy.
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import { postJson, startServer } from "./harness.ts";

type Slot = Record<string, unknown> & { next_token?: Record<string, number>[] };

async function slotsOf(url: string, query = ""): Promise<{ status: number; json: Slot[] }> {
  const response = await fetch(`${url}/slots${query}`);
  return { status: response.status, json: await response.json() };
}

Deno.test("/slots shows idle and busy slots, and fail_on_no_slot is a 503 while none is idle", async () => {
  await using server = await startServer({ load: { parallel: 1, ctxSize: 4096 } });
  deepEqual((await slotsOf(server.url)).json, [], "no slots before the model loads");
  equal(server.ctx.registry.state("tiny-f32"), "available", "and asking loads nothing");
  const warm = await postJson(`${server.url}/completion`, { prompt: "hi", n_predict: 1 });
  await warm.body?.cancel();
  const idle = await slotsOf(server.url, "?fail_on_no_slot=1");
  equal(idle.status, 200);
  deepEqual(idle.json, [{ id: 0, n_ctx: 4096, speculative: false, is_processing: false }]);

  // A long generation: the slot is busy while it runs.
  const abort = new AbortController();
  const stream = await postJson(
    `${server.url}/completion`,
    {
      prompt: "Once upon a time",
      n_predict: 4000,
      ignore_eos: true,
      stream: true,
    },
    {},
    abort.signal,
  );
  const reader = stream.body!.getReader();
  await reader.read(); // the first piece: generating now
  const busy = await slotsOf(server.url);
  const slot = busy.json[0] as Slot;
  equal(slot.is_processing, true, JSON.stringify(busy.json));
  ok((slot.n_prompt_tokens as number) > 0);
  const next = slot.next_token?.[0] ?? {};
  ok((next.n_decoded ?? 0) >= 1 && (next.n_remain ?? 0) > 0, JSON.stringify(next));
  const full = await slotsOf(server.url, "?fail_on_no_slot=1");
  equal(full.status, 503);
  equal((full.json as unknown as { error: { code: string } }).error.code, "no_slot_available");
  abort.abort();
  await reader.cancel().catch(() => {});
  for (let i = 0; i < 100 && (await slotsOf(server.url)).json[0]?.is_processing; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  equal((await slotsOf(server.url, "?fail_on_no_slot=1")).status, 200, "free again");
  const unknown = await fetch(`${server.url}/slots?model=nope`);
  equal(unknown.status, 404);
  await unknown.body?.cancel();
});

Deno.test("POST /slots/N?action=erase empties a slot's cache, waiting for its request; save and restore are 501 without a folder", async () => {
  await using server = await startServer({ load: { parallel: 1, ctxSize: 4096 } });
  const prompt = "the quick brown fox jumps over the lazy dog ".repeat(4);
  const cachedOf = async () => {
    const body = await (await postJson(`${server.url}/v1/completions`, { prompt, max_tokens: 1 }))
      .json();
    return body.usage.prompt_tokens_details.cached_tokens as number;
  };
  await cachedOf();
  ok(await cachedOf() > 0, "the second request reuses the first one's prompt");
  // As benchmark scripts send it: a POST without a body or a JSON type.
  const erase = (path = "/slots/0?action=erase") =>
    fetch(`${server.url}${path}`, { method: "POST" });
  const erased = await (await erase()).json();
  equal(erased.id_slot, 0);
  ok(erased.n_erased > 0, JSON.stringify(erased));
  equal(await cachedOf(), 0, "after the erase the prompt is evaluated whole");

  // A busy slot is erased once its request ends.
  const abort = new AbortController();
  const stream = await postJson(
    `${server.url}/completion`,
    {
      prompt,
      n_predict: 4000,
      ignore_eos: true,
      stream: true,
    },
    {},
    abort.signal,
  );
  const reader = stream.body!.getReader();
  await reader.read();
  let answered = false;
  const pending = erase().then((r) => {
    answered = true;
    return r.json();
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  equal(answered, false, "the erase waits while the slot is busy");
  abort.abort();
  await reader.cancel().catch(() => {});
  ok((await pending).n_erased > 0);

  for (
    const [path, status] of [
      ["/slots/1?action=erase", 400],
      ["/slots/x?action=erase", 400],
      ["/slots/0", 400],
      ["/slots/0?action=save", 501],
      ["/slots/0?action=restore", 501],
    ] as const
  ) {
    const response = await erase(path);
    equal(response.status, status, path);
    await response.body?.cancel();
  }
});

Deno.test("slot tasks: at most four a slot wait (then a 503 queue_full), and one runs between two steps while others generate", async () => {
  await using server = await startServer({ load: { parallel: 2, ctxSize: 32768 } });
  const warm = await postJson(`${server.url}/completion`, { prompt: "hi", n_predict: 1 });
  await warm.body?.cancel();
  const scheduler = server.ctx.registry.loaded().get("tiny-f32")?.scheduler;
  ok(scheduler);
  // A stream on one slot; its tokens count the steps.
  const abort = new AbortController();
  const stream = await postJson(
    `${server.url}/completion`,
    { prompt: "Once upon a time", n_predict: 30_000, ignore_eos: true, stream: true },
    {},
    abort.signal,
  );
  const reader = stream.body!.getReader();
  await reader.read();
  const busy = (await slotsOf(server.url)).json.findIndex((slot) => slot.is_processing);
  const idle = 1 - busy;
  let pieces = 0;
  const counting = (async () => {
    while (!(await reader.read().catch(() => ({ done: true }))).done) pieces++;
  })();
  // Erases of the idle slot, queued at once: each waits for a step of its own.
  const at: number[] = [];
  await Promise.all(
    Array.from({ length: 4 }, () => scheduler.eraseSlot(idle).then(() => at.push(pieces))),
  );
  ok((at.at(-1) as number) - (at[0] as number) >= 2, `steps between them: ${at.join(", ")}`);
  // Queued behind the busy slot: 2 slots × 4 wait, the next is refused.
  const waiting = Array.from({ length: 8 }, () => scheduler.eraseSlot(busy).catch((e) => e));
  ok(pieces < 29_000, "the stream still runs");
  const refused = await fetch(`${server.url}/slots/${busy}?action=erase`, { method: "POST" });
  equal(refused.status, 503);
  equal((await refused.json()).error.code, "queue_full");
  abort.abort();
  await counting;
  for (const result of await Promise.all(waiting)) equal(typeof result, "number");
});
