import { deepEqual, equal, match, ok } from "node:assert/strict";
import { NATIVE_MAX_TOKENS } from "../../src/server/native.ts";
import { postJson, readSse, startServer } from "./harness.ts";

Deno.test("chat SSE is framed byte for byte as OpenAI does: role first, one data: prefix, [DONE]", async () => {
  await using server = await startServer();
  const response = await postJson(`${server.url}/v1/chat/completions`, {
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 3,
    temperature: 0,
    stream: true,
  });
  equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const { events, raw } = await readSse(response);
  ok(!raw.includes("data: data:"), "no doubled data: prefix");
  ok(raw.endsWith("data: [DONE]\n\n"));
  for (const block of raw.split("\n\n").filter(Boolean)) match(block, /^data: [^\n]*$/);
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
  const last = chunks[chunks.length - 1];
  deepEqual(last.choices[0].delta, {});
  equal(last.choices[0].finish_reason, "length");
  equal(new Set(chunks.map((c) => c.id)).size, 1);
  for (const c of chunks) equal(c.object, "chat.completion.chunk");
  equal(chunks.length, 1 + 3 + 1);
});

Deno.test("finish_reason is stop at a stop string and length at max_tokens, with real usage", async () => {
  await using server = await startServer();
  const stopped = await (await postJson(`${server.url}/v1/completions`, {
    prompt: "x",
    max_tokens: 30,
    stop: ["stop"],
    grammar: 'root ::= "go go stop go"',
  })).json();
  equal(stopped.choices[0].text, "go go ");
  equal(stopped.choices[0].finish_reason, "stop");
  ok(stopped.usage.completion_tokens > 0 && stopped.usage.prompt_tokens > 0);
  const long = await (await postJson(`${server.url}/v1/completions`, {
    prompt: "x",
    max_tokens: 5,
  })).json();
  equal(long.choices[0].finish_reason, "length");
  equal(long.usage.completion_tokens, 5);
});

Deno.test("/api/generate streams pieces with newlines as multi-line SSE data and ends with [DONE]", async () => {
  await using server = await startServer();
  const response = await postJson(`${server.url}/api/generate`, {
    prompt: "x",
    max_tokens: 40,
    stream: true,
    grammar: 'root ::= "line one\\nline two\\n\\nend"',
  });
  const { events, raw } = await readSse(response);
  equal(events[events.length - 1], "[DONE]");
  equal(events.slice(0, -1).join(""), "line one\nline two\n\nend");
  ok(raw.includes("data: \ndata: "), "a piece made of a newline is two data: lines");
  ok(!raw.includes("data: data:"));
});

Deno.test("stream defaults to false on the OpenAI endpoints, to true on /api/generate as in the original Shimmy", async () => {
  await using server = await startServer();
  for (
    const [path, body] of [
      ["/v1/completions", { prompt: "hi", max_tokens: 2 }],
      ["/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 2 }],
    ] as const
  ) {
    const response = await postJson(`${server.url}${path}`, body);
    equal(response.headers.get("content-type"), "application/json", path);
    ok((await response.json()) !== null);
  }
  // The original Shimmy streamed /api/generate unless asked not to, and stopped at 256 tokens.
  const streamed = await postJson(`${server.url}/api/generate`, { prompt: "hi", max_tokens: 2 });
  match(streamed.headers.get("content-type") ?? "", /^text\/event-stream/);
  equal((await readSse(streamed)).events.at(-1), "[DONE]");
  const whole = await postJson(`${server.url}/api/generate`, {
    prompt: "hi",
    stream: false,
    ignore_eos: true,
  });
  equal(whole.headers.get("content-type"), "application/json");
  equal((await whole.json()).usage.completion_tokens, NATIVE_MAX_TOKENS);
  // n_predict -1 asks for no limit: to the end of the context.
  const unlimited = await postJson(`${server.url}/api/generate`, {
    prompt: "hi",
    stream: false,
    ignore_eos: true,
    n_predict: -1,
  });
  ok((await unlimited.json()).usage.completion_tokens > NATIVE_MAX_TOKENS);
});

Deno.test("multi-byte UTF-8 split across tokens arrives whole in the SSE stream", async () => {
  await using server = await startServer();
  const response = await postJson(`${server.url}/v1/completions`, {
    prompt: "x",
    max_tokens: 40,
    stream: true,
    grammar: 'root ::= "naïve 日本語 🎉"',
  });
  const { events } = await readSse(response);
  const pieces = events.slice(0, -1).map((e) => JSON.parse(e).choices[0].text as string);
  equal(pieces.join(""), "naïve 日本語 🎉");
  for (const piece of pieces) ok(!piece.includes("\uFFFD"), JSON.stringify(piece));
});
