import { deepEqual, equal, ok } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { unfinishedCharacter, Utf8Guard } from "../../src/engine/utf8_guard.ts";
import { fixtureModel } from "../fixtures/models.ts";

Deno.test("unfinishedCharacter() keeps the bytes of a character the output ends inside of", () => {
  const bytes = (...b: number[]) => new Uint8Array(b);
  deepEqual(unfinishedCharacter([], bytes(0x61, 0xe2)), [0xe2]);
  deepEqual(unfinishedCharacter([0xe2], bytes(0x82)), [0xe2, 0x82]);
  deepEqual(unfinishedCharacter([0xe2, 0x82], bytes(0xac)), []);
  deepEqual(unfinishedCharacter([], bytes(0xf0, 0x9f, 0x98)), [0xf0, 0x9f, 0x98]);
  deepEqual(unfinishedCharacter([], bytes(0x68, 0x69)), []);
  deepEqual(unfinishedCharacter([], bytes()), []);
  deepEqual(unfinishedCharacter([0xe0], bytes()), [0xe0]);
});

Deno.test("Utf8Guard bans, after E0, ED, F0 and F4 alone, the tokens that would make the character invalid", () => {
  // A vocabulary of the 256 byte tokens: token n is the byte n.
  const guard = new Utf8Guard((token) => new Uint8Array([token]), 256);
  const banned = (lead: number[]) => {
    const logits = new Float32Array(256);
    guard.apply(logits, lead);
    return [...logits.keys()].filter((t) => logits[t] === -Infinity);
  };
  const range = (lo: number, hi: number) => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
  deepEqual(banned([0xe0]), range(0x80, 0x9f)); // overlong
  deepEqual(banned([0xed]), range(0xa0, 0xbf)); // surrogates
  deepEqual(banned([0xf0]), range(0x80, 0x8f)); // overlong
  deepEqual(banned([0xf4]), range(0x90, 0xbf)); // past U+10FFFF
  deepEqual(banned([0xe2]), []);
  deepEqual(banned([0xe0, 0xa0]), []);
  deepEqual(banned([]), []);
});

Deno.test("a grammar that allows any printable character never yields an overlong or invalid character", async () => {
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    decodeThread: true,
  });
  // With its decode thread ready, the stream runs there and halts after E0 for the guard's step.
  for (let i = 0; !loaded.context.canDecodeAhead && i < 500; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const model = loaded.model;
  const byteToken = (byte: number) => {
    for (let token = 0; token < model.nVocab; token++) {
      const bytes = model.tokenBytes(token);
      if (bytes.length === 1 && bytes[0] === byte) return token;
    }
    throw new Error(`no token for byte ${byte}`);
  };
  // Pushed towards E0 9F, the start of an overlong character (U+07C0–U+07FF in three bytes) that
  // llama.cpp's grammar lets through (its check of a partial character only asks whether some
  // allowed code point could still follow). Every character after the first is sampled on the
  // thread: without its halt after E0, the thread's own pick took 9F there.
  const generation = loaded.scheduler.submit({
    prompt: model.tokenize("text:"),
    maxTokens: 12,
    sampling: {
      temperature: 0,
      grammar: "root ::= [^\\x00-\\x1F]{3}",
      logitBias: new Map([[byteToken(0xe0), 30], [byteToken(0x9f), 20]]),
    },
  });
  for await (const _ of generation) { /* drained */ }
  const result = await generation.result;
  ok(!result.text.includes("\uFFFD"), JSON.stringify(result.text));
  equal([...result.text].length, 3, JSON.stringify(result.text));
  // The bias still wins where the character stays valid: it starts with E0 (U+0800–U+0FFF).
  const first = result.text.codePointAt(0) ?? 0;
  ok(first >= 0x800 && first <= 0xfff, JSON.stringify(result.text));
  ok(loaded.scheduler.stats().stepsAhead > 0, "steps ran on the decode thread");
});
