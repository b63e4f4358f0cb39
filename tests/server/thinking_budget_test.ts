/**
 * Thinking budgets through real HTTP and libllama, with DeepSeek R1's template (it opens the
 * `<think>` block in the prompt, so everything the model writes is thinking until the block is
 * closed): `thinking_budget_tokens` (llama-server's name, or `reasoning_budget_tokens`) closes
 * the block after that many tokens, with `reasoning_budget_message` before the tag; the thinking
 * is then exactly the first tokens the model would have written, and an answer follows; alone on
 * the decode thread, beside another request, and streamed alike. Anthropic's
 * `thinking.budget_tokens` does the same through its SDK.
 */

import Anthropic from "@anthropic-ai/sdk";
import { deepEqual, equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { llamaSourceDir } from "../fixtures/models.ts";
import { postJson, readSse, startServer, type TestServer } from "./harness.ts";

const SOURCE = llamaSourceDir();
const R1 = join(
  SOURCE ?? ".",
  "models",
  "templates",
  "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
);
const ignore = SOURCE === undefined;

async function r1Server(): Promise<TestServer> {
  const server = await startServer({ load: { ctxSize: 2048 } });
  server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(R1), path: R1 };
  return server;
}

/** A greedy chat completion: its reasoning and its answer. */
async function think(server: TestServer, body: Record<string, unknown>) {
  const response = await postJson(`${server.url}/v1/chat/completions`, {
    messages: [{ role: "user", content: "Think about it" }],
    max_tokens: 40,
    temperature: 0,
    ...body,
  });
  const text = await response.text();
  equal(response.status, 200, text);
  const message = JSON.parse(text).choices[0].message;
  return { reasoning: message.reasoning_content ?? "", content: message.content as string };
}

Deno.test({
  name:
    "thinking_budget_tokens closes the thinking block after that many tokens, and an answer follows",
  ignore,
  fn: async () => {
    await using server = await r1Server();
    const unlimited = await think(server, {});
    equal(unlimited.content, "", "without a budget the model thinks to the end");
    const firstTen = (await think(server, { max_tokens: 10 })).reasoning;
    ok(firstTen.length > 0);

    const budgeted = await think(server, { thinking_budget_tokens: 10 });
    equal(budgeted.reasoning, firstTen, "the first 10 tokens, then the block closes");
    ok(budgeted.content.length > 0, "and the model answers");
    deepEqual(await think(server, { reasoning_budget_tokens: 10 }), budgeted);

    // Two at once decode in shared steps instead of on the decode thread: the same.
    const both = await Promise.all([1, 2].map(() => think(server, { thinking_budget_tokens: 10 })));
    deepEqual(both, [budgeted, budgeted]);

    const told = await think(server, {
      thinking_budget_tokens: 10,
      reasoning_budget_message: "Time to answer.",
    });
    ok(told.reasoning.startsWith(firstTen), told.reasoning);
    ok(told.reasoning.endsWith("Time to answer."), told.reasoning);

    // Log-probabilities of the forced tokens are the model's own, numbers like any other.
    const scored = await postJson(`${server.url}/v1/chat/completions`, {
      messages: [{ role: "user", content: "Think about it" }],
      max_tokens: 20,
      temperature: 0,
      thinking_budget_tokens: 3,
      logprobs: true,
      top_logprobs: 2,
    });
    const steps = (await scored.json()).choices[0].logprobs.content as {
      logprob: number;
      top_logprobs: { logprob: number }[];
    }[];
    equal(steps.length, 20);
    for (const step of steps) {
      for (const { logprob } of [step, ...step.top_logprobs]) {
        ok(Number.isFinite(logprob) && logprob <= 0, JSON.stringify(step));
      }
    }
    ok(steps.some((step) => step.logprob < -0.01), "not certainties");

    const none = await think(server, { thinking_budget_tokens: 0 });
    equal(none.reasoning, "");
    ok(none.content.length > 0);
    equal((await think(server, { thinking_budget_tokens: -1 })).content, "", "-1: no budget");

    // Streamed: the same reasoning and answer, in deltas.
    const streamed = await postJson(`${server.url}/v1/chat/completions`, {
      messages: [{ role: "user", content: "Think about it" }],
      max_tokens: 40,
      temperature: 0,
      thinking_budget_tokens: 10,
      stream: true,
    });
    const { events } = await readSse(streamed);
    let reasoning = "";
    let content = "";
    for (const event of events.slice(0, -1)) {
      const delta = JSON.parse(event).choices[0]?.delta ?? {};
      reasoning += delta.reasoning_content ?? "";
      content += delta.content ?? "";
    }
    deepEqual({ reasoning, content }, budgeted);

    for (
      const bad of [
        { thinking_budget_tokens: -2 },
        { thinking_budget_tokens: 1.5 },
        { thinking_budget_tokens: "10" },
        { thinking_budget_tokens: 10, reasoning_budget_tokens: 10 },
        { thinking_budget_tokens: 10, reasoning_budget_message: 7 },
        { thinking_budget_tokens: 10, reasoning_budget_message: "x".repeat(4097) },
      ]
    ) {
      const response = await postJson(`${server.url}/v1/chat/completions`, {
        messages: [{ role: "user", content: "Hi" }],
        ...bad,
      });
      equal(response.status, 400, JSON.stringify(bad));
      await response.body?.cancel();
    }
  },
});

Deno.test({
  name: "chat usage counts the reasoning tokens, whole and streamed (completion_tokens_details)",
  ignore,
  fn: async () => {
    await using server = await r1Server();
    // 10 tokens of thinking, then an answer of up to 30.
    const body = {
      messages: [{ role: "user", content: "Think about it" }],
      max_tokens: 40,
      temperature: 0,
      thinking_budget_tokens: 10,
    };
    const whole = await (await postJson(`${server.url}/v1/chat/completions`, body)).json();
    const { reasoning_tokens } = whole.usage.completion_tokens_details;
    ok(whole.choices[0].message.reasoning_content.length > 0);
    ok(
      reasoning_tokens >= 10 && reasoning_tokens < whole.usage.completion_tokens,
      `${reasoning_tokens}`,
    );
    const streamed = await postJson(`${server.url}/v1/chat/completions`, {
      ...body,
      stream: true,
      stream_options: { include_usage: true },
    });
    const usage = JSON.parse((await readSse(streamed)).events.at(-2)!).usage;
    deepEqual(usage.completion_tokens_details, whole.usage.completion_tokens_details);
    // No reasoning, none counted.
    const plain = await postJson(`${server.url}/v1/chat/completions`, {
      ...body,
      reasoning_format: "none",
    });
    equal((await plain.json()).usage.completion_tokens_details.reasoning_tokens, 0);
  },
});

Deno.test({
  name: "Anthropic's thinking.budget_tokens closes the thinking block, whole and streamed",
  ignore,
  fn: async () => {
    await using server = await r1Server();
    const anthropic = new Anthropic({ baseURL: server.url, apiKey: "unused", maxRetries: 0 });
    const body = {
      model: "tiny-f32",
      max_tokens: 1100,
      temperature: 0,
      messages: [{ role: "user" as const, content: "Think about it" }],
    };
    const adaptive = await anthropic.messages.create({ ...body, thinking: { type: "adaptive" } });
    deepEqual(adaptive.content.map((block) => block.type), ["thinking"], "no budget: all thinking");
    const budgeted = await anthropic.messages.create({
      ...body,
      thinking: { type: "enabled", budget_tokens: 1024 },
    });
    deepEqual(budgeted.content.map((block) => block.type), ["thinking", "text"]);
    const [thought, answer] = budgeted.content as [Anthropic.ThinkingBlock, Anthropic.TextBlock];
    ok(adaptive.content[0]?.type === "thinking");
    ok(adaptive.content[0].thinking.startsWith(thought.thinking), "its first 1024 tokens");
    ok(answer.text.length > 0);
    equal(budgeted.usage.output_tokens, 1100);
    const streamed = await anthropic.messages.stream({
      ...body,
      thinking: { type: "enabled", budget_tokens: 1024 },
    }).finalMessage();
    deepEqual(streamed.content, budgeted.content);
  },
});

Deno.test({
  name: "POST /v1/chat/completions/control ends a running completion's thinking, and it answers",
  ignore,
  fn: async () => {
    await using server = await startServer({ load: { ctxSize: 4096 } });
    server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(R1), path: R1 };
    const control = async (body: Record<string, unknown>) => {
      const response = await postJson(`${server.url}/v1/chat/completions/control`, body);
      return { status: response.status, json: await response.json() };
    };
    const stream = await postJson(`${server.url}/v1/chat/completions`, {
      messages: [{ role: "user", content: "Think about it" }],
      max_tokens: 3000,
      temperature: 0,
      reasoning_control: true,
      stream: true,
    });
    const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("reasoning_content")) text += (await reader.read()).value ?? "";
    const id = JSON.parse(text.slice(text.indexOf("data: ") + 6, text.indexOf("\n"))).id;
    deepEqual((await control({ id, action: "reasoning_end" })).json, { success: true });
    for (let read = await reader.read(); !read.done; read = await reader.read()) text += read.value;
    let reasoning = 0;
    let content = "";
    for (const line of text.split("\n").filter((l) => l.startsWith("data: {"))) {
      const delta = JSON.parse(line.slice(6)).choices[0]?.delta ?? {};
      if (delta.reasoning_content) reasoning++;
      content += delta.content ?? "";
    }
    ok(reasoning > 0 && reasoning < 2000, `${reasoning} reasoning deltas, then the block closed`);
    ok(content.length > 0, "and the model answered");

    // Ended, unknown or never asked: nothing to end. Bad bodies are 400s.
    equal((await control({ id, action: "reasoning_end" })).json.success, false);
    deepEqual((await control({ id: "chatcmpl-nope", action: "reasoning_end" })).json, {
      success: false,
      message: "no active completion for this id",
    });
    for (const bad of [{ action: "reasoning_end" }, { id, action: "pause" }, { id, x: 1 }]) {
      equal((await control(bad)).status, 400, JSON.stringify(bad));
    }

    // A template that does not think: nothing to end.
    server.ctx.settings.chatTemplate = undefined;
    const abort = new AbortController();
    const plain = await postJson(
      `${server.url}/v1/chat/completions`,
      {
        messages: [{ role: "user", content: "Hi" }],
        max_tokens: 3000,
        ignore_eos: true,
        reasoning_control: true,
        stream: true,
      },
      {},
      abort.signal,
    );
    const first = (await plain.body!.pipeThrough(new TextDecoderStream()).getReader().read()).value;
    const plainId = JSON.parse((first ?? "").slice(6, (first ?? "").indexOf("\n"))).id;
    deepEqual((await control({ id: plainId, action: "reasoning_end" })).json, {
      success: false,
      message: "reasoning control not enabled for this completion",
    });
    abort.abort();
  },
});
