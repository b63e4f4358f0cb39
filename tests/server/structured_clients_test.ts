import { equal, ok } from "node:assert/strict";
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { z } from "zod";
import { generateObject } from "ai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { ChatOpenAI } from "@langchain/openai";
import { compileSchema } from "../engine/json_schema_ajv.ts";
import { buildTinyVocab } from "../fixtures/tiny_vocab.ts";
import { startServer } from "./harness.ts";

// generateObject() is deprecated in AI SDK 7 and says so on every call; the tests know.
(globalThis as { AI_SDK_LOG_WARNINGS?: boolean }).AI_SDK_LOG_WARNINGS = false;

const MODEL = "tiny-f32";
const TOKENS = buildTinyVocab().tokens;
/**
 * Free JSON (json_object) has unbounded strings, which a random-weight model never ends; a
 * bias towards `"` and `}` makes it end them.
 */
const CLOSING_BIAS = { [TOKENS.indexOf('"')]: 8, [TOKENS.indexOf("}")]: 8 };

/** What the clients ask for: bounded, so that even a random-weight model ends its answer. */
const Person = z.object({
  name: z.string().max(12),
  age: z.number().int().min(0).max(120),
  mood: z.enum(["happy", "sad", "calm"]),
  tags: z.array(z.string().max(5)).max(3),
  nickname: z.string().max(6).nullable(),
});

const personSchema = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 12 },
    age: { type: "integer", minimum: 0, maximum: 120 },
    admin: { type: "boolean" },
  },
  required: ["name", "age", "admin"],
  additionalProperties: false,
};

Deno.test("the openai SDK gets JSON for response_format json_object and json_schema", async () => {
  await using server = await startServer();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const messages = [{ role: "user" as const, content: "Describe a person in JSON" }];
  for (const seed of [1, 2]) {
    const object = await client.chat.completions.create({
      model: MODEL,
      messages,
      seed,
      logit_bias: CLOSING_BIAS,
      max_tokens: 300,
      response_format: { type: "json_object" },
    });
    equal(object.choices[0]?.finish_reason, "stop");
    const parsed = JSON.parse(object.choices[0]?.message.content ?? "");
    ok(typeof parsed === "object" && parsed !== null && !Array.isArray(parsed));
  }

  const validate = compileSchema(personSchema);
  for (const seed of [1, 2]) {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages,
      seed,
      max_tokens: 300,
      stream: true,
      response_format: {
        type: "json_schema",
        json_schema: { name: "person", schema: personSchema, strict: true },
      },
    });
    let text = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    equal(finish, "stop");
    ok(validate(JSON.parse(text)), text);
  }
});

Deno.test("the openai SDK's chat.completions.parse() returns a zod-typed object", async () => {
  await using server = await startServer();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  for (const seed of [3, 4]) {
    const completion = await client.chat.completions.parse({
      model: MODEL,
      messages: [{ role: "user", content: "Describe a person" }],
      seed,
      max_tokens: 300,
      response_format: zodResponseFormat(Person, "person"),
    });
    const message = completion.choices[0]?.message;
    ok(message?.parsed, JSON.stringify(message));
    Person.parse(message.parsed);
  }
});

Deno.test("the AI SDK's generateObject() with a zod schema gets a valid object", async () => {
  await using server = await startServer();
  const shimmy = createOpenAICompatible({
    name: "shimmy",
    baseURL: `${server.url}/v1`,
    supportsStructuredOutputs: true,
  });
  for (const seed of [5, 6]) {
    const { object, finishReason } = await generateObject({
      model: shimmy.chatModel(MODEL),
      schema: Person,
      schemaName: "person",
      prompt: "Describe a person",
      seed,
      maxOutputTokens: 300,
    });
    equal(finishReason, "stop");
    Person.parse(object);
  }
});

/**
 * zod 4's string formats: each a `format` and the `pattern` that defines it, both held; and
 * Unicode property escapes (`\p{L}` narrowed to a class llama.cpp takes).
 */
const Contact = z.object({
  email: z.email(),
  id: z.uuid(),
  seen: z.iso.datetime(),
  born: z.iso.date(),
  ip: z.ipv4(),
  phone: z.e164(),
  ref: z.nanoid(),
  mood: z.string().regex(/^\p{Extended_Pictographic}{1,3}$/u),
  name: z.string().regex(/^\p{Lu}[\p{L} '-]{0,30}$/u),
});

Deno.test("zod's string formats (format and pattern together) hold through the openai and AI SDKs", async () => {
  await using server = await startServer();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const completion = await client.chat.completions.parse({
    model: MODEL,
    messages: [{ role: "user", content: "A contact" }],
    seed: 7,
    max_tokens: 1000,
    response_format: zodResponseFormat(Contact, "contact"),
  });
  const message = completion.choices[0]?.message;
  ok(message?.parsed, JSON.stringify(message));
  Contact.parse(message.parsed);
  const shimmy = createOpenAICompatible({
    name: "shimmy",
    baseURL: `${server.url}/v1`,
    supportsStructuredOutputs: true,
  });
  const { object, finishReason } = await generateObject({
    model: shimmy.chatModel(MODEL),
    schema: Contact,
    schemaName: "contact",
    prompt: "A contact",
    seed: 8,
    maxOutputTokens: 1000,
  });
  equal(finishReason, "stop");
  Contact.parse(object);
});

Deno.test("LangChain's ChatOpenAI.withStructuredOutput() gets a valid object", async () => {
  await using server = await startServer();
  const model = new ChatOpenAI({
    model: MODEL,
    apiKey: "unused",
    configuration: { baseURL: `${server.url}/v1` },
    temperature: 0.8,
    maxTokens: 300,
  });
  const structured = model.withStructuredOutput(Person, { name: "person", method: "jsonSchema" });
  for (let i = 0; i < 3; i++) Person.parse(await structured.invoke("Describe a person"));
});
