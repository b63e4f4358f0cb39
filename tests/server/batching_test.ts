import { deepEqual, equal, ok } from "node:assert/strict";
import { postJson, readSse, startServer } from "./harness.ts";

const PROMPTS = [
  "The first story begins",
  "A second, different prompt about cats",
  "Numbers: one two three",
  "hello",
];

async function streamTokens(url: string, prompt: string, model: string): Promise<string> {
  const response = await postJson(`${url}/v1/completions`, {
    model,
    prompt,
    max_tokens: 128,
    temperature: 0,
    stream: true,
  });
  equal(response.status, 200);
  const { events } = await readSse(response);
  equal(events[events.length - 1], "[DONE]");
  return events.slice(0, -1).map((e) => JSON.parse(e).choices[0].text).join("");
}

for (const model of ["tiny-f32", "llama-spm"]) {
  Deno.test(`four concurrent streams on ${model} produce exactly what each produces alone, in shared steps`, async () => {
    await using server = await startServer({ fixtures: [model], load: { parallel: 4 } });
    const alone: string[] = [];
    for (const prompt of PROMPTS) alone.push(await streamTokens(server.url, prompt, model));
    const loaded = server.ctx.registry.loaded().get(model);
    ok(loaded);
    const sharedBefore = loaded.scheduler.stats().sharedSteps;
    const together = await Promise.all(PROMPTS.map((p) => streamTokens(server.url, p, model)));
    deepEqual(together, alone);
    const stats = loaded.scheduler.stats();
    const shared = stats.sharedSteps - sharedBefore;
    ok(shared >= 16, `shared steps: ${shared}`);
    equal(stats.busySlots, 0);
  });
}

Deno.test("requests beyond the slots wait in order and all complete", async () => {
  await using server = await startServer({ load: { parallel: 2 } });
  const results = await Promise.all(
    Array.from(
      { length: 6 },
      (_, i) =>
        postJson(`${server.url}/api/generate`, { prompt: `request ${i}`, max_tokens: 8 })
          .then((r) => r.json()),
    ),
  );
  for (const result of results) equal(result.usage.completion_tokens, 8);
  equal(server.ctx.registry.loaded().get("tiny-f32")?.scheduler.stats().queued, 0);
});
