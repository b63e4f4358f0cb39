import { equal, ok } from "node:assert/strict";
import { postJson, startServer } from "./harness.ts";

const BASE = "The quick brown fox jumps over the lazy dog while the cat sleeps on the mat";

async function complete(url: string, prompt: string) {
  return await (await postJson(`${url}/v1/completions`, {
    model: "llama-spm",
    prompt,
    max_tokens: 24,
    temperature: 0,
  })).json();
}

Deno.test("a prompt that shares a cached prefix gives exactly the output of a fresh server", async () => {
  await using fresh = await startServer({ fixtures: ["llama-spm"], load: { parallel: 2 } });
  const expected = await complete(fresh.url, `${BASE} and then`);
  const expectedOther = await complete(fresh.url, `1 ${BASE}`);

  await using warm = await startServer({ fixtures: ["llama-spm"], load: { parallel: 2 } });
  await complete(warm.url, `${BASE} but never`);
  const reused = await complete(warm.url, `${BASE} and then`);
  equal(reused.choices[0].text, expected.choices[0].text);
  ok(reused.timings.cache_n > 10, `reused ${reused.timings.cache_n} tokens`);
  equal(reused.usage.prompt_tokens, expected.usage.prompt_tokens);
  // A prompt that differs from the first token on reuses nothing and is still right.
  const other = await complete(warm.url, `1 ${BASE}`);
  equal(other.choices[0].text, expectedOther.choices[0].text);
});

Deno.test("cache_prompt false evaluates the whole prompt again, as a fresh server does", async () => {
  await using server = await startServer({ fixtures: ["llama-spm"], load: { parallel: 1 } });
  const prompt = `${BASE} and then`;
  const request = (extra: Record<string, unknown>) =>
    postJson(`${server.url}/v1/completions`, {
      model: "llama-spm",
      prompt,
      max_tokens: 24,
      temperature: 0,
      ...extra,
    }).then((response) => response.json());
  const fresh = await request({});
  equal(fresh.usage.prompt_tokens_details.cached_tokens, 0);
  const cached = await request({ cache_prompt: true });
  ok(cached.usage.prompt_tokens_details.cached_tokens > 10);
  const whole = await request({ cache_prompt: false });
  equal(whole.usage.prompt_tokens_details.cached_tokens, 0);
  equal(whole.timings.cache_n, 0);
  equal(whole.choices[0].text, fresh.choices[0].text);
});
