/**
 * Continuing the assistant's last message (prefill) through real HTTP and libllama: the model
 * goes on from the message's text (its answer, or its thinking inside an open block), on the
 * OpenAI, Anthropic and Ollama routes, streamed and not; `echo` decides whether the text so far
 * comes back; bad requests are 400s; `--no-prefill-assistant` answers with a new turn instead.
 */

import Anthropic from "@anthropic-ai/sdk";
import { Ollama } from "ollama";
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { llamaSourceDir } from "../fixtures/models.ts";
import { postJson, readSse, startServer, type TestServer } from "./harness.ts";

const PREFILL = "The colour is";
const MESSAGES = [
  { role: "user", content: "Name a colour." },
  { role: "assistant", content: PREFILL },
];

/** Posts a greedy chat completion of {@link MESSAGES}, changed by `body`. */
function post(server: TestServer, body: Record<string, unknown>): Promise<Response> {
  return postJson(`${server.url}/v1/chat/completions`, {
    messages: MESSAGES,
    max_tokens: 8,
    temperature: 0,
    ...body,
  });
}

/** A chat completion's first choice's message, its choices and usage. */
async function chat(server: TestServer, body: Record<string, unknown>) {
  const response = await post(server, body);
  const text = await response.text();
  equal(response.status, 200, text);
  const json = JSON.parse(text);
  return { message: json.choices[0].message, usage: json.usage, choices: json.choices };
}

/** A streamed chat completion's content and reasoning deltas, each joined. */
async function streamed(server: TestServer, body: Record<string, unknown>) {
  const response = await post(server, { ...body, stream: true });
  equal(response.status, 200);
  const deltas = (await readSse(response)).events.filter((e) => e !== "[DONE]")
    .map((e) => JSON.parse(e).choices[0]?.delta ?? {});
  return {
    content: deltas.map((d) => d.content ?? "").join(""),
    reasoning: deltas.map((d) => d.reasoning_content ?? "").join(""),
  };
}

/** `/completion` of a prompt text, greedy: what the model writes after it. */
async function completion(server: TestServer, prompt: string, tokens: number): Promise<string> {
  const response = await postJson(`${server.url}/completion`, {
    prompt,
    n_predict: tokens,
    temperature: 0,
  });
  equal(response.status, 200);
  return (await response.json()).content;
}

/** The prompt `/apply-template` renders for a chat request. */
async function rendered(server: TestServer, body: Record<string, unknown>): Promise<string> {
  const response = await postJson(`${server.url}/apply-template`, body);
  const text = await response.text();
  equal(response.status, 200, text);
  return JSON.parse(text).prompt;
}

Deno.test("a continued message's answer is what the model writes after its text", async () => {
  await using server = await startServer({ fixtures: ["qwen2"] });
  const prompt = await rendered(server, { messages: MESSAGES });
  ok(prompt.endsWith(`<|im_start|>assistant\n${PREFILL}`), prompt);
  const added = await completion(server, prompt, 8);
  ok(added.length > 0);

  const unasked = await chat(server, {});
  equal(unasked.message.content, PREFILL + added, "the text so far, then the model's");
  deepEqual(await streamed(server, {}), { content: PREFILL + added, reasoning: "" });
  const asked = { continue_final_message: true };
  equal((await chat(server, asked)).message.content, added);
  deepEqual(await streamed(server, asked), { content: added, reasoning: "" });
  equal((await chat(server, { ...asked, echo: true })).message.content, PREFILL + added);
  equal((await chat(server, { echo: false })).message.content, added);

  // Every choice continues the message.
  const two = await chat(server, { n: 2 });
  deepEqual(two.choices.map((c: { message: { content: string } }) => c.message.content), [
    PREFILL + added,
    PREFILL + added,
  ]);

  // Counting the prompt counts the same open turn.
  const counted = await postJson(`${server.url}/v1/chat/completions/input_tokens`, {
    messages: MESSAGES,
  });
  equal((await counted.json()).input_tokens, unasked.usage.prompt_tokens);
});

Deno.test("the Anthropic SDK and the ollama client get what the model adds to a prefill", async () => {
  await using server = await startServer({ fixtures: ["qwen2"] });
  const added = await completion(server, await rendered(server, { messages: MESSAGES }), 6);

  const anthropic = new Anthropic({ baseURL: server.url, apiKey: "unused", maxRetries: 0 });
  const messages = [
    { role: "user" as const, content: "Name a colour." },
    { role: "assistant" as const, content: PREFILL },
  ];
  // temperature is sent as Shimmy reads it (the SDK's types have dropped it).
  const body = { model: "qwen2", max_tokens: 6, temperature: 0, messages };
  const message = await anthropic.messages.create(body);
  deepEqual(message.content.map((b) => b.type === "text" ? b.text : b.type), [added]);
  const counted = await anthropic.messages.countTokens({ model: "qwen2", messages });
  equal(
    counted.input_tokens,
    message.usage.input_tokens + (message.usage.cache_read_input_tokens ?? 0),
  );
  let streamedText = "";
  const stream = anthropic.messages.stream(body);
  stream.on("text", (text) => streamedText += text);
  await stream.finalMessage();
  equal(streamedText, added);

  const ollama = new Ollama({ host: `${server.url}/ollama` });
  const reply = await ollama.chat({
    model: "qwen2",
    messages: MESSAGES,
    options: { temperature: 0, num_predict: 6 },
  });
  equal(reply.message.content, added);
  let pieces = "";
  for await (
    const part of await ollama.chat({
      model: "qwen2",
      messages: MESSAGES,
      options: { temperature: 0, num_predict: 6 },
      stream: true,
    })
  ) pieces += part.message.content;
  equal(pieces, added);
});

const SOURCE = llamaSourceDir();

Deno.test({
  name: "a continued thought goes on inside its open block, and a thinking budget counts from it",
  ignore: SOURCE === undefined,
  fn: async () => {
    const r1 = join(
      SOURCE as string,
      "models",
      "templates",
      "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
    );
    await using server = await startServer({ fixtures: ["qwen2"] });
    server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(r1), path: r1 };
    const thought = "The sky is";
    const messages = [
      { role: "user", content: "Name a colour." },
      { role: "assistant", content: "", reasoning_content: thought },
    ];
    const prompt = await rendered(server, { messages });
    ok(prompt.endsWith(`<｜Assistant｜><think>${thought}`), prompt);
    const more = await completion(server, prompt, 8);
    ok(!more.includes("</think>"), "the tiny model does not close the block in 8 tokens");

    const unasked = await chat(server, { messages });
    equal(unasked.message.reasoning_content, thought + more);
    equal(unasked.message.content, "");
    deepEqual(await streamed(server, { messages }), { content: "", reasoning: thought + more });
    const asked = { messages, continue_final_message: "reasoning_content" };
    equal((await chat(server, asked)).message.reasoning_content, more);
    deepEqual(await streamed(server, asked), { content: "", reasoning: more });

    // The budget counts the tokens the model adds to the open block, then an answer follows.
    const firstThree = await completion(server, prompt, 3);
    const budgeted = await chat(server, { ...asked, thinking_budget_tokens: 3, max_tokens: 12 });
    equal(budgeted.message.reasoning_content, firstThree);
    ok(budgeted.message.content.length > 0, "and the model answers");

    // A continued answer after its thinking: the thinking in a block of its own, then the text.
    const answered = await rendered(server, {
      messages: [
        { role: "user", content: "Name a colour." },
        { role: "assistant", content: "Blue", reasoning_content: thought },
      ],
    });
    ok(answered.endsWith(`<｜Assistant｜><think>${thought}</think>Blue`), answered);
  },
});

Deno.test("what cannot be continued is a 400, and --no-prefill-assistant answers with a new turn", async () => {
  await using server = await startServer({ fixtures: ["qwen2"] });
  const refused = async (body: Record<string, unknown>, pattern: RegExp, param: string | null) => {
    const response = await post(server, { max_tokens: 2, ...body });
    const json = await response.json();
    equal(response.status, 400, JSON.stringify(body));
    match(json.error.message, pattern);
    equal(json.error.param, param);
  };
  await refused(
    { messages: [...MESSAGES, { role: "assistant", content: "more" }] },
    /two assistant messages/,
    "messages",
  );
  await refused(
    {
      messages: [MESSAGES[0], {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
      }],
    },
    /tool calls/,
    "messages",
  );
  await refused(
    { continue_final_message: "answer" },
    /must be true, false/,
    "continue_final_message",
  );
  await refused(
    { continue_final_message: true, add_generation_prompt: true },
    /contradict/,
    "continue_final_message",
  );
  await refused(
    { messages: [MESSAGES[0]], continue_final_message: true },
    /Only a last message from the assistant/,
    "messages",
  );
  await refused({ messages: [MESSAGES[0]], echo: true }, /needs a message to continue/, "echo");
  // Found while rendering (the template decides): a template error, with no field named.
  await refused({ continue_final_message: "reasoning_content" }, /no thinking block/, null);
  const anthropic = await postJson(`${server.url}/v1/messages`, {
    model: "qwen2",
    max_tokens: 2,
    messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "a" }, {
      role: "assistant",
      content: "b",
    }],
  });
  equal(anthropic.status, 400);
  equal((await anthropic.json()).error.type, "invalid_request_error");

  server.ctx.settings.prefillAssistant = false;
  const prompt = await rendered(server, { messages: MESSAGES });
  ok(prompt.endsWith(`${PREFILL}<|im_end|>\n<|im_start|>assistant\n`), prompt);
  const answer = await chat(server, {});
  ok(!answer.message.content.startsWith(PREFILL), answer.message.content);
  await refused({ echo: true }, /needs a message to continue/, "echo");
});
