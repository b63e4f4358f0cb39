import assert from "node:assert/strict";
import { join } from "node:path";
import { GenerationError } from "../../src/engine/errors.ts";
import {
  detectFamily,
  FAMILY_NAMES,
  type FamilyName,
  familyStopStrings,
  loadTemplateOverride,
  renderChat,
  TemplateError,
  templateLoadWarning,
  templateStopStrings,
} from "../../src/engine/templates.ts";
import { ggufString, readGgufInfo } from "../../src/gguf/reader.ts";
import { toHttpError } from "../../src/server/http_error.ts";
import { llamaSourceDir, REPO_ROOT } from "../fixtures/models.ts";
import { CONVERSATION, templateFixture } from "../fixtures/template_fixtures.ts";

const VOCAB_DIR = join(llamaSourceDir() ?? join(REPO_ROOT, ".cache", "llama.cpp-v0.5.0"), "models");

/** Real templates, copied from the `tokenizer.chat_template` of llama.cpp's vocab GGUFs. */
const REAL = ["qwen2", "phi-3", "command-r", "gemma-4"] as const;
type RealName = typeof REAL[number];

/** Expected built-in renderings of {@link CONVERSATION} with the generation prompt. */
const FAMILY_EXPECTED: Readonly<Record<FamilyName, string>> = {
  chatml: "<|im_start|>system\nYou are terse.<|im_end|>\n" +
    "<|im_start|>user\nHi<|im_end|>\n" +
    "<|im_start|>assistant\nHello.<|im_end|>\n" +
    "<|im_start|>user\nName a colour.<|im_end|>\n" +
    "<|im_start|>assistant\n",
  llama3: "<|begin_of_text|>" +
    "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>" +
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" +
    "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>" +
    "<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>" +
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
  llama2: "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello. </s>" +
    "<s>[INST] Name a colour. [/INST]",
  mistral: "<s>[INST] You are terse.\n\nHi [/INST] Hello.</s>[INST] Name a colour. [/INST]",
  gemma: "<bos><start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n" +
    "<start_of_turn>model\nHello.<end_of_turn>\n" +
    "<start_of_turn>user\nName a colour.<end_of_turn>\n" +
    "<start_of_turn>model\n",
  phi3: "<|system|>\nYou are terse.<|end|>\n" +
    "<|user|>\nHi<|end|>\n" +
    "<|assistant|>\nHello.<|end|>\n" +
    "<|user|>\nName a colour.<|end|>\n" +
    "<|assistant|>\n",
  openchat: "<s>You are terse.<|end_of_turn|>" +
    "GPT4 Correct User: Hi<|end_of_turn|>" +
    "GPT4 Correct Assistant: Hello.<|end_of_turn|>" +
    "GPT4 Correct User: Name a colour.<|end_of_turn|>" +
    "GPT4 Correct Assistant:",
  zephyr: "<|system|>\nYou are terse.</s>\n" +
    "<|user|>\nHi</s>\n" +
    "<|assistant|>\nHello.</s>\n" +
    "<|user|>\nName a colour.</s>\n" +
    "<|assistant|>\n",
  raw: "You are terse.\nHi\nHello.\nName a colour.",
};

const FAMILY_STOPS: Readonly<Record<FamilyName, string[]>> = {
  chatml: ["<|im_end|>"],
  llama3: ["<|eot_id|>", "<|eom_id|>"],
  llama2: ["</s>"],
  mistral: ["</s>"],
  gemma: ["<end_of_turn>"],
  phi3: ["<|end|>"],
  openchat: ["<|end_of_turn|>"],
  zephyr: ["</s>"],
  raw: [],
};

for (const family of FAMILY_NAMES) {
  Deno.test(`renderChat() formats a conversation with the built-in ${family} family`, () => {
    const out = renderChat({ family, messages: CONVERSATION });
    assert.equal(out.prompt, FAMILY_EXPECTED[family]);
    assert.equal(out.family, family);
    assert.deepEqual(out.stopStrings, FAMILY_STOPS[family]);
    assert.equal(out.warning, undefined);
  });
}

Deno.test("familyStopStrings() lists each family's end-of-turn markers", () => {
  for (const family of FAMILY_NAMES) {
    assert.deepEqual(familyStopStrings(family), FAMILY_STOPS[family], family);
  }
  assert.deepEqual(familyStopStrings("zephyr", "<|endoftext|>"), ["<|endoftext|>"]);
  assert.deepEqual(familyStopStrings("mistral", ""), ["</s>"]);
});

Deno.test("renderChat() leaves the assistant's turn closed without add_generation_prompt", () => {
  const messages = [{ role: "user", content: "Hi" }];
  const expected: Partial<Record<FamilyName, string>> = {
    chatml: "<|im_start|>user\nHi<|im_end|>\n",
    llama3: "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    gemma: "<bos><start_of_turn>user\nHi<end_of_turn>\n",
    phi3: "<|user|>\nHi<|end|>\n",
    openchat: "<s>GPT4 Correct User: Hi<|end_of_turn|>",
    zephyr: "<|user|>\nHi</s>\n",
    raw: "Hi",
  };
  for (const [family, prompt] of Object.entries(expected)) {
    const out = renderChat({ family: family as FamilyName, messages, addGenerationPrompt: false });
    assert.equal(out.prompt, prompt, family);
  }
});

Deno.test("renderChat() writes the vocabulary's BOS and EOS texts in built-in families", () => {
  const messages = [{ role: "user", content: "Hi" }, { role: "assistant", content: "Yo" }];
  const llama2 = renderChat({ family: "llama2", messages, bosToken: "<B>", eosToken: "<E>" });
  assert.equal(llama2.prompt, "<B>[INST] Hi [/INST] Yo <E>");
  assert.deepEqual(llama2.stopStrings, ["<E>"]);
  assert.equal(llama2.addsBos, true);
  const zephyr = renderChat({ family: "zephyr", messages, eosToken: "<|endoftext|>" });
  assert.equal(
    zephyr.prompt,
    "<|user|>\nHi<|endoftext|>\n<|assistant|>\nYo<|endoftext|>\n<|assistant|>\n",
  );
  assert.deepEqual(zephyr.stopStrings, ["<|endoftext|>"]);
  const noBos = renderChat({ family: "gemma", messages, bosToken: "" });
  assert.equal(noBos.prompt.startsWith("<start_of_turn>user\n"), true);
  assert.equal(noBos.addsBos, false);
});

Deno.test("renderChat() folds system messages into the next user turn where a family has no system role", () => {
  const messages = [
    { role: "user", content: "Hi" },
    { role: "system", content: "Be brief." },
    { role: "tool", content: "42" },
  ];
  assert.equal(
    renderChat({ family: "gemma", messages, bosToken: "" }).prompt,
    "<start_of_turn>user\nHi<end_of_turn>\n" +
      "<start_of_turn>user\nBe brief.\n\n42<end_of_turn>\n<start_of_turn>model\n",
  );
  assert.equal(
    renderChat({ family: "mistral", messages: [{ role: "system", content: "Only rules." }] })
      .prompt,
    "<s>[INST] Only rules. [/INST]",
  );
  assert.equal(
    renderChat({ family: "llama2", messages: [{ role: "system", content: "S" }], bosToken: "" })
      .prompt,
    "[INST] <<SYS>>\nS\n<</SYS>>\n\n [/INST]",
  );
  // chatml writes the roles it is given; a null content (tool-call turn) counts as empty.
  assert.equal(
    renderChat({ family: "chatml", messages: [{ role: "tool", content: null }] }).prompt,
    "<|im_start|>tool\n<|im_end|>\n<|im_start|>assistant\n",
  );
});

/**
 * Expected renderings of {@link CONVERSATION} by the real templates, with bos_token `<BOS>`
 * and eos_token `<EOS>`, as llama-server renders them (the template oracle checks every real
 * template against it).
 */
const REAL_EXPECTED: Readonly<Record<RealName, string>> = {
  // The template adds its default system prompt only when there is no system message.
  qwen2: FAMILY_EXPECTED.chatml,
  // Phi-3's template never prints a system message, so (as llama.cpp does) it is merged into
  // the first user turn.
  "phi-3": "<BOS><|user|>\nYou are terse.\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n" +
    "<|user|>\nName a colour.<|end|>\n<|assistant|>\n",
  "command-r": "<BOS><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>You are terse.<|END_OF_TURN_TOKEN|>" +
    "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi<|END_OF_TURN_TOKEN|>" +
    "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hello.<|END_OF_TURN_TOKEN|>" +
    "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Name a colour.<|END_OF_TURN_TOKEN|>" +
    "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
  "gemma-4": "<BOS><|turn>system\nYou are terse.<turn|>\n<|turn>user\nHi<turn|>\n" +
    "<|turn>model\nHello.<turn|>\n<|turn>user\nName a colour.<turn|>\n" +
    "<|turn>model\n<|channel>thought\n<channel|>",
};

const REAL_STOPS: Readonly<Record<RealName, string[]>> = {
  qwen2: ["<|im_end|>"],
  "phi-3": ["<|end|>"],
  "command-r": ["<|END_OF_TURN_TOKEN|>"],
  "gemma-4": ["<turn|>"],
};

const REAL_FAMILY: Readonly<Record<RealName, FamilyName | undefined>> = {
  qwen2: "chatml",
  "phi-3": "phi3",
  "command-r": undefined,
  "gemma-4": undefined,
};

for (const name of REAL) {
  Deno.test(`renderChat() renders the real ${name} template with Jinja`, () => {
    const out = renderChat({
      template: templateFixture(name),
      messages: CONVERSATION,
      bosToken: "<BOS>",
      eosToken: "<EOS>",
      // Gemma 4 thinks by default (llama.cpp finds its think markers); the expected text is
      // the non-thinking prompt.
      kwargs: { enable_thinking: false },
    });
    assert.equal(out.prompt, REAL_EXPECTED[name]);
    assert.equal(out.family, "jinja");
    assert.deepEqual(out.stopStrings, REAL_STOPS[name]);
    assert.equal(out.addsBos, out.prompt.startsWith("<BOS>"));
  });

  Deno.test(`detectFamily() recognises the real ${name} template`, () => {
    assert.equal(detectFamily(templateFixture(name)), REAL_FAMILY[name]);
    assert.deepEqual(templateStopStrings(templateFixture(name)), REAL_STOPS[name]);
  });

  Deno.test({
    name: `The ${name} fixture is the chat template of ggml-vocab-${name}.gguf`,
    ignore: !existsSync(join(VOCAB_DIR, `ggml-vocab-${name}.gguf`)),
    async fn() {
      const info = await readGgufInfo(join(VOCAB_DIR, `ggml-vocab-${name}.gguf`));
      assert.equal(ggufString(info, "tokenizer.chat_template"), templateFixture(name));
    },
  });
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("renderChat() honours add_generation_prompt in a real template", () => {
  const out = renderChat({
    template: templateFixture("qwen2"),
    messages: [{ role: "user", content: "Hi" }],
    addGenerationPrompt: false,
  });
  assert.equal(
    out.prompt,
    "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
  );
});

Deno.test("renderChat() passes tools to the template only when given", () => {
  const tools = [{
    type: "function",
    function: {
      name: "get_weather",
      description: "Get the weather",
      parameters: {
        type: "object",
        properties: { city: { type: "string", description: "City name" } },
        required: ["city"],
      },
    },
  }];
  const messages = [{ role: "user", content: "Weather in Oslo?" }];
  // Checked against Python's Jinja2 3.1.
  assert.equal(
    renderChat({
      template: templateFixture("gemma-4"),
      messages,
      tools,
      bosToken: "<bos>",
      kwargs: { enable_thinking: false },
    }).prompt,
    '<bos><|turn>system\n<|tool>declaration:get_weather{description:<|"|>Get the weather<|"|>,' +
      'parameters:{properties:{city:{description:<|"|>City name<|"|>,type:<|"|>STRING<|"|>}},' +
      'required:[<|"|>city<|"|>],type:<|"|>OBJECT<|"|>}}<tool|><turn|>\n' +
      "<|turn>user\nWeather in Oslo?<turn|>\n<|turn>model\n<|channel>thought\n<channel|>",
  );
  const probe = "{% if tools is defined %}{{ tools | length }} tools{% else %}none{% endif %}";
  assert.equal(renderChat({ template: probe, messages }).prompt, "none");
  assert.equal(renderChat({ template: probe, messages, tools }).prompt, "1 tools");
});

Deno.test("renderChat() reports addsBos only when the text starts with the BOS token", () => {
  const messages = [{ role: "user", content: "Hi" }];
  const phi = renderChat({ template: templateFixture("phi-3"), messages, bosToken: "<s>" });
  assert.equal(phi.addsBos, true);
  assert.equal(phi.prompt, "<s><|user|>\nHi<|end|>\n<|assistant|>\n");
  assert.equal(phi.prompt.indexOf("<s>", 1), -1, "a single BOS");
  // Without a BOS text the template writes none, and the tokenizer adds the vocabulary's own.
  const bare = renderChat({ template: templateFixture("phi-3"), messages });
  assert.equal(bare.addsBos, false);
  assert.equal(bare.prompt.startsWith("<|user|>"), true);
  // Qwen2's template never writes BOS, even when one is given.
  const qwen = renderChat({
    template: templateFixture("qwen2"),
    messages,
    bosToken: "<|endoftext|>",
  });
  assert.equal(qwen.addsBos, false);
  assert.equal(renderChat({ family: "llama3", messages }).addsBos, true);
  assert.equal(renderChat({ family: "chatml", messages, bosToken: "<s>" }).addsBos, false);
});

Deno.test("a template step that would make millions of items or characters is a TemplateError, at once", () => {
  const messages = [{ role: "user", content: "Hi" }];
  for (
    const template of [
      "{% for i in range(999999999) %}{% endfor %}{{ messages[0].content }}",
      "{{ 'x' * 999999999 }}",
      "{{ messages[0].content | indent(999999999) }}",
    ]
  ) {
    const started = performance.now();
    assert.throws(() => renderChat({ template, messages }), (e: unknown) => {
      assert.ok(e instanceof TemplateError, String(e));
      assert.match(e.message, /more than a template may/);
      return true;
    });
    assert.ok(performance.now() - started < 2000, template);
  }
  const fine = "{% for i in range(3) %}{{ i }}{% endfor %}{{ 'ab' * 2 }}";
  assert.equal(renderChat({ template: fine, messages }).prompt, "012abab");
});

Deno.test("renderChat() raises a TemplateError carrying the template's raise_exception message", () => {
  const messages = [{ role: "user", content: "Hi" }, { role: "user", content: "Again" }];
  assert.throws(
    () => renderChat({ template: templateFixture("command-r"), messages }),
    (e: unknown) => {
      assert.ok(e instanceof TemplateError);
      assert.ok(e instanceof GenerationError);
      assert.equal(e.code, "invalid_request");
      assert.equal(e.reason, "render");
      assert.equal(e.detail, "Conversation roles must alternate user/assistant/user/assistant/...");
      assert.match(e.message, /Conversation roles must alternate/);
      const http = toHttpError(e);
      assert.equal(http.status, 400);
      assert.equal(http.message, e.message);
      return true;
    },
  );
});

Deno.test("renderChat() raises a TemplateError when a template fails while rendering", () => {
  assert.throws(
    () =>
      renderChat({
        template: "{{ messages[0].content | no_such_filter }}",
        messages: [{ role: "user", content: "Hi" }],
      }),
    (e: unknown) => e instanceof TemplateError && /no_such_filter/.test(e.message),
  );
});

Deno.test("renderChat() falls back to the family a template's markers suggest when it does not parse", () => {
  const broken = "{% for m in messages %}<|im_start|>{{ m.role }}{% if %}";
  const out = renderChat({ template: broken, messages: [{ role: "user", content: "Hi" }] });
  assert.equal(out.family, "chatml");
  assert.equal(out.prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  assert.match(out.warning ?? "", /does not parse.*chatml/);
  const unknown = renderChat({
    template: "{% if %}",
    messages: [{ role: "user", content: "Hi" }],
    model: { architecture: "gemma2" },
  });
  assert.equal(unknown.family, "gemma");
});

Deno.test("renderChat() picks a family from the model's name when there is no template", () => {
  const messages = [{ role: "user", content: "Hi" }];
  assert.equal(renderChat({ messages, model: { name: "Meta-Llama-3.1-8B" } }).family, "llama3");
  assert.equal(renderChat({ messages, template: "  " }).family, "chatml");
  assert.equal(renderChat({ messages }).family, "chatml");
  // An explicit family wins over the template.
  assert.equal(
    renderChat({ messages, template: templateFixture("qwen2"), family: "raw" }).prompt,
    "Hi",
  );
});

Deno.test("detectFamily() recognises each family's template markers", () => {
  const cases: [string, FamilyName][] = [
    ["{{ '<|im_start|>' + m.role }}", "chatml"],
    ["{{ '<|start_header_id|>' + m.role + '<|end_header_id|>' }}", "llama3"],
    ["{{ '<start_of_turn>' + role }}", "gemma"],
    ["{{ 'GPT4 Correct ' + role }}", "openchat"],
    ["{{ '<|assistant|>\n' + c + '<|end|>' }}", "phi3"],
    ["{{ '<|user|>\n' + c + eos_token }}", "zephyr"],
    ["{{ '<|user|>\n' + c + '</s>' }}", "zephyr"],
    ["{{ '[INST] <<SYS>>\n' + s }}", "llama2"],
    ["{{ '[INST] ' + c + ' [/INST]' }}", "mistral"],
  ];
  for (const [template, family] of cases) assert.equal(detectFamily(template), family, template);
  assert.equal(detectFamily("{{ messages }}"), undefined);
});

Deno.test("detectFamily() uses the model's name and architecture when there is no template", () => {
  const cases: [string | undefined, string | undefined, FamilyName | undefined][] = [
    ["Meta-Llama-3-8B-Instruct", "llama", "llama3"],
    ["Llama-2-7b-chat", "llama", "llama2"],
    ["Mistral-7B-Instruct-v0.2", "llama", "mistral"],
    ["Mixtral-8x7B", "llama", "mistral"],
    ["gemma-2-9b-it", undefined, "gemma"],
    ["gemma-4-e2b", "gemma4", undefined],
    ["Phi-3-mini-4k-instruct", undefined, "phi3"],
    ["openchat-3.5-0106", "llama", "openchat"],
    ["zephyr-7b-beta", "llama", "zephyr"],
    ["Qwen2.5-7B-Instruct", undefined, "chatml"],
    ["model", "qwen2", "chatml"],
    [undefined, "gemma3", "gemma"],
    [undefined, "phi3", "phi3"],
    ["tinyllama", "llama", undefined],
    [undefined, undefined, undefined],
  ];
  for (const [name, architecture, family] of cases) {
    const hints = { ...(name ? { name } : {}), ...(architecture ? { architecture } : {}) };
    assert.equal(detectFamily(undefined, hints), family, `${name} / ${architecture}`);
  }
  // Template markers come before the name.
  assert.equal(detectFamily("<|im_start|>", { name: "Llama-3" }), "chatml");
});

Deno.test("templateStopStrings() adds the EOS text when a template ends turns with eos_token", () => {
  assert.deepEqual(templateStopStrings("{{ '<|user|>' + c + eos_token }}", "</s>"), ["</s>"]);
  assert.deepEqual(templateStopStrings("{{ '<|user|>' + c + eos_token }}"), []);
  assert.deepEqual(templateStopStrings("{{ c + '</s>' + eos_token }}", "</s>"), ["</s>"]);
  assert.deepEqual(templateStopStrings("{{ '<<SYS>>' }}"), []);
});

Deno.test("loadTemplateOverride() accepts family names and aliases", async () => {
  for (const family of FAMILY_NAMES) {
    assert.deepEqual(await loadTemplateOverride(family), { family });
  }
  assert.deepEqual(await loadTemplateOverride("ChatML"), { family: "chatml" });
  assert.deepEqual(await loadTemplateOverride("llama-3"), { family: "llama3" });
  assert.deepEqual(await loadTemplateOverride("phi-3"), { family: "phi3" });
});

Deno.test("loadTemplateOverride() refuses a FIFO, a device and a huge file at once instead of reading them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const fifo = join(dir, "fifo.jinja");
    await new Deno.Command("mkfifo", { args: [fifo] }).output();
    const zero = join(dir, "zero.jinja");
    await Deno.symlink("/dev/zero", zero);
    const huge = join(dir, "huge.jinja");
    await Deno.writeTextFile(huge, "{{ x }}".repeat(200_000));
    for (
      const [path, detail] of [[fifo, /not a regular file/], [zero, /not a regular file/], [
        huge,
        /larger than/,
      ]] as const
    ) {
      await assert.rejects(loadTemplateOverride(path), (error: unknown) => {
        assert.ok(error instanceof TemplateError, String(error));
        assert.match(error.message, detail);
        return true;
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadTemplateOverride() reads a Jinja file whose template then renders the chat", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "mine.jinja");
    await Deno.writeTextFile(
      path,
      "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}",
    );
    const override = await loadTemplateOverride(path);
    const out = renderChat({
      template: templateFixture("qwen2"),
      ...override,
      messages: [{ role: "user", content: "Hi" }],
    });
    assert.equal(out.prompt, "[user] Hi\n");
    assert.equal(out.family, "jinja");
    assert.deepEqual(override, { template: await Deno.readTextFile(path), path });
    const family = await loadTemplateOverride("gemma");
    assert.equal(
      renderChat({ template: templateFixture("qwen2"), ...family, messages: [] }).family,
      "gemma",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadTemplateOverride() rejects unknown names, empty files and bad syntax", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      () => loadTemplateOverride("vicuna"),
      (e: unknown) =>
        e instanceof TemplateError && e.reason === "not_found" &&
        e.message.startsWith("Cannot use chat template vicuna: file not found") &&
        e.message.includes("chatml, llama3"),
    );
    const empty = join(dir, "empty.jinja");
    await Deno.writeTextFile(empty, " \n");
    await assert.rejects(
      () => loadTemplateOverride(empty),
      (e: unknown) => e instanceof TemplateError && e.reason === "syntax",
    );
    const bad = join(dir, "bad.jinja");
    await Deno.writeTextFile(bad, "{% if %}");
    await assert.rejects(
      () => loadTemplateOverride(bad),
      (e: unknown) =>
        e instanceof TemplateError && e.reason === "syntax" &&
        e.message.startsWith(`Cannot parse chat template ${bad}: `),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("renderChat() lets filters take a missing value, as llama.cpp does (Hermes 2 Pro's trim)", () => {
  const template = "{{ messages[0].missing | trim }}[{{ messages[0].content | trim }}]";
  const out = renderChat({ template, messages: [{ role: "user", content: "  Hi  " }] });
  assert.equal(out.prompt, "[Hi]");
});

Deno.test("renderChat() gives tool-call arguments as an object to a template that reads them so", () => {
  const template = "{% for m in messages %}{% if m.tool_calls %}" +
    "{% for k, v in m.tool_calls[0].function.arguments | items %}{{ k }}={{ v }}{% endfor %}" +
    "|{{ m.content is none }}{% endif %}{% endfor %}";
  const messages = [{ role: "user", content: "Weather?" }, {
    role: "assistant",
    content: null,
    tool_calls: [{ type: "function", function: { name: "w", arguments: '{"city": "Paris"}' } }],
  }];
  // llama.cpp gives a tool-call turn without text an empty content, not none.
  assert.equal(renderChat({ template, messages }).prompt, "city=Paris|False");
});

Deno.test("renderChat() writes tojson with llama.cpp's spacing and key order", () => {
  const template =
    '{{ {"b": 1, "a": [1, "x", none, true]} | tojson }} {{ [1, 2] | tojson(indent=2) }}';
  assert.equal(
    renderChat({ template, messages: [{ role: "user", content: "" }] }).prompt,
    '{"b": 1, "a": [1, "x", null, true]} [\n  1,\n  2\n]',
  );
});

Deno.test("renderChat() joins text parts with a newline for a template that reads text", () => {
  const template = "{% for m in messages %}{{ m.content }}{% endfor %}";
  const parts = [{ type: "text", text: "one" }, { type: "text", text: "two" }];
  assert.equal(
    renderChat({ template, messages: [{ role: "user", content: parts }] }).prompt,
    "one\ntwo",
  );
});

Deno.test("renderChat() passes chat_template_kwargs and today's date to the template", () => {
  const template = "{{ enable_thinking }} {{ strftime_now('%Y') }} {{ custom }}";
  const out = renderChat({
    template,
    messages: [{ role: "user", content: "" }],
    kwargs: { enable_thinking: false, custom: "x" },
  });
  assert.equal(out.prompt, `False ${new Date().getFullYear()} x`);
});

Deno.test("renderChat() refuses malformed tool-call arguments for a template that reads objects", () => {
  const template = "{% for m in messages %}{% if m.tool_calls %}" +
    "{% for k, v in m.tool_calls[0].function.arguments | items %}{{ v }}{% endfor %}{% endif %}{% endfor %}";
  const messages = [{ role: "user", content: "" }, {
    role: "assistant",
    tool_calls: [{ type: "function", function: { name: "w", arguments: "{not json" } }],
  }];
  assert.throws(() => renderChat({ template, messages }), (e: unknown) => {
    assert.ok(e instanceof TemplateError);
    assert.match(e.message, /tool call arguments/);
    return true;
  });
});

Deno.test("templateLoadWarning() names a GGUF template that does not parse, and only that", () => {
  const broken = "{% for m in messages %}<|im_start|>{{ m.role }}{% if %}";
  assert.match(templateLoadWarning(broken) ?? "", /does not parse.*built-in chatml format/);
  assert.equal(templateLoadWarning("{{ messages[0].content }}"), undefined);
  assert.equal(templateLoadWarning(undefined), undefined);
});

/** A template whose every render loops 160,000 times: seconds of the capability probes' renders. */
const SLOW_TEMPLATE = "{% for i in range(400) %}{% for j in range(400) %}{% endfor %}{% endfor %}" +
  "{% for m in messages %}{{ m.content }}{% endfor %}";

Deno.test("templateLoadWarning() and loadTemplateOverride() only parse: a slow template does not hold the event loop at load", async () => {
  // Renders run in the template workers under a time limit; these checks run on the event loop.
  let started = performance.now();
  assert.equal(templateLoadWarning(SLOW_TEMPLATE), undefined);
  assert.ok(performance.now() - started < 1000, `${performance.now() - started} ms`);
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "slow.jinja");
    await Deno.writeTextFile(path, SLOW_TEMPLATE);
    started = performance.now();
    assert.deepEqual(await loadTemplateOverride(path), { template: SLOW_TEMPLATE, path });
    assert.ok(performance.now() - started < 1000, `${performance.now() - started} ms`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a template nested too deeply to parse is a syntax error, at load and on a render", () => {
  const deep = `{{ ${"(".repeat(20_000)}1${")".repeat(20_000)} }}`;
  assert.match(templateLoadWarning(deep) ?? "", /does not parse \(The template nests too deeply/);
  const out = renderChat({ template: deep, messages: [{ role: "user", content: "Hi" }] });
  assert.equal(out.family, "chatml");
  assert.match(out.warning ?? "", /nests too deeply/);
});

Deno.test("renderChat() refuses tools nested too deep with a 400, and renders deep ones below the bound", () => {
  const nested = (levels: number) => {
    let value: unknown = {};
    for (let i = 0; i < levels; i++) value = { a: value };
    return [{ type: "function", function: { name: "f", parameters: value } }];
  };
  const template = "{{ tools | tojson }}{% for m in messages %}{{ m.content }}{% endfor %}";
  const messages = [{ role: "user", content: "Hi" }];
  const shallow = renderChat({ template, messages, tools: nested(200) });
  assert.ok(shallow.prompt.endsWith("Hi"));
  assert.throws(
    () => renderChat({ template, messages, tools: nested(10_000) }),
    (error: unknown) => {
      assert.ok(error instanceof TemplateError);
      assert.equal(toHttpError(error).status, 400);
      assert.match(error.message, /nested more than 256 levels/);
      return true;
    },
  );
});

Deno.test({
  name: "a tool result sent as text parts reaches templates that print a tool turn's content as is",
  ignore: llamaSourceDir() === undefined,
  fn: () => {
    const messages = [
      { role: "user", content: "Weather?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{
          id: "abcDEF123",
          type: "function",
          function: { name: "get_weather", arguments: '{"city":"Paris"}' },
        }],
      },
      {
        role: "tool",
        tool_call_id: "abcDEF123",
        content: [{ type: "text", text: "MARK_A" }, { type: "text", text: "sunny" }],
      },
    ];
    for (const name of ["moonshotai-Kimi-K2", "GLM-4.6", "Qwen-Qwen2.5-7B-Instruct"]) {
      const file = join(llamaSourceDir()!, "models", "templates", `${name}.jinja`);
      const { prompt } = renderChat({ template: Deno.readTextFileSync(file), messages });
      assert.ok(prompt.includes("MARK_A\nsunny"), `${name}: ${prompt}`);
    }
  },
});
