import { equal, match, notEqual } from "node:assert/strict";
import { postJson, startServer } from "./harness.ts";

const chat = (extra: Record<string, unknown> = {}) => ({
  messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Say hi" }],
  max_tokens: 16,
  temperature: 0,
  ...extra,
});

Deno.test("the model's chat template frames the prompt and its end marker stops generation", async () => {
  await using server = await startServer();
  const model = server.ctx.registry;
  using lease = await model.acquire("tiny-f32");
  const loaded = lease.model;
  const expected = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSay hi<|im_end|>\n" +
    "<|im_start|>assistant\n";
  const tokens = loaded.model.tokenize(expected, { addSpecial: true, parseSpecial: true });
  const imEnd = loaded.model.tokenize("<|im_end|>", { addSpecial: false, parseSpecial: true })[0];
  const forced = await (await postJson(
    `${server.url}/v1/chat/completions`,
    chat({ logit_bias: { [String(imEnd)]: 100 } }),
  )).json();
  equal(forced.usage.prompt_tokens, tokens.length);
  equal(forced.choices[0].finish_reason, "stop");
  equal(forced.choices[0].message.content, "");
  equal(forced.usage.completion_tokens, 0);
});

Deno.test("--chat-template overrides the model's template for every request", async () => {
  await using plain = await startServer();
  await using llama2 = await startServer({ settings: { chatTemplate: { family: "llama2" } } });
  const a = await (await postJson(`${plain.url}/v1/chat/completions`, chat())).json();
  const b = await (await postJson(`${llama2.url}/v1/chat/completions`, chat())).json();
  notEqual(a.usage.prompt_tokens, b.usage.prompt_tokens);
});

Deno.test("a template that raises an error is a 400 carrying the template's message", async () => {
  await using server = await startServer({
    settings: {
      chatTemplate: { template: "{{ raise_exception('roles must alternate') }}", path: "t.jinja" },
    },
  });
  const response = await postJson(`${server.url}/v1/chat/completions`, chat());
  equal(response.status, 400);
  match((await response.json()).error.message, /roles must alternate/);
});

Deno.test("POST /apply-template returns the prompt a chat request would get, and generates nothing", async () => {
  await using server = await startServer({
    settings: {
      chatTemplate: {
        template: "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}" +
          "{% if enable_thinking %}<think>{% endif %}",
        path: "t.jinja",
      },
      chatTemplateKwargs: { enable_thinking: true },
    },
  });
  const body = { messages: [{ role: "user", content: [{ type: "text", text: "Hi" }] }] };
  const plain = await postJson(`${server.url}/apply-template`, body);
  equal(plain.status, 200);
  equal((await plain.json()).prompt, "<user>Hi<think>");
  const off = await postJson(`${server.url}/apply-template`, {
    ...body,
    chat_template_kwargs: { enable_thinking: false },
  });
  equal((await off.json()).prompt, "<user>Hi");
  const bad = await postJson(`${server.url}/apply-template`, { messages: [{ role: "user" }] });
  equal(bad.status, 400);
});
