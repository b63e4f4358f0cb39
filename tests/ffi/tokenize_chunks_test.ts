import { deepEqual, equal, ok } from "node:assert/strict";
import { basename } from "node:path";
import { Llama, Model } from "../../src/ffi/mod.ts";
import { type SpecialToken, SpecialTokenCutter } from "../../src/ffi/tokenize_chunks.ts";
import { llamaSourceDir, llamaVocabFiles } from "../fixtures/models.ts";
import { seededRandom, skipBecause } from "../helpers.ts";

const special = (text: string, lstrip = false): SpecialToken => ({ text, lstrip });
const CHATML = [special("<|im_start|>"), special("<|im_end|>"), special("<|endoftext|>")];

Deno.test("SpecialTokenCutter.pieces() cuts just before special tokens, pieces at least the target long", () => {
  const cutter = new SpecialTokenCutter([special("<|im_end|>")]);
  deepEqual([...cutter.pieces("a<|im_end|>b<|im_end|>c<|im_end|>", 3)], [
    "a<|im_end|>b",
    "<|im_end|>c",
    "<|im_end|>",
  ]);
  deepEqual([...cutter.pieces("short<|im_end|>", 100)], ["short<|im_end|>"]);
  deepEqual([...cutter.pieces("", 3)], [""]);
});

Deno.test("SpecialTokenCutter.pieces() never cuts where llama.cpp's split could differ", () => {
  // Whitespace before a token that strips it (LSTRIP): the cut would keep the space.
  const lstrip = new SpecialTokenCutter([special("<mask>", true)]);
  deepEqual([...lstrip.pieces("a <mask>b<mask>", 1)], ["a <mask>b", "<mask>"]);
  // Whitespace before an ordinary token is fine (an RSTRIP token before it strips it either way).
  const plain = new SpecialTokenCutter(CHATML);
  deepEqual([...plain.pieces("x\n<|im_start|>", 1)], ["x\n", "<|im_start|>"]);
  // Inside an occurrence of a longer token ("<|im_start|>" inside "[<|im_start|>]"): no cut.
  const nested = new SpecialTokenCutter([special("[<|im_start|>]"), special("<|im_start|>")]);
  deepEqual([...nested.pieces("ab[<|im_start|>]", 1)], ["ab", "[<|im_start|>]"]);
  // Overlapping occurrences of one token ("aa" in "aaa"): llama.cpp matches the first.
  const overlap = new SpecialTokenCutter([special("aa")]);
  deepEqual([...overlap.pieces("xaaa", 2)], ["xaaa"]);
  // Tokens that start with whitespace are never cut points.
  const spaces = new SpecialTokenCutter([special("   ")]);
  deepEqual([...spaces.pieces("ab   cd   ef", 1)], ["ab   cd   ef"]);
});

Deno.test("SpecialTokenCutter.pieces() marks long stretches without a cut so callers can yield", () => {
  const cutter = new SpecialTokenCutter(CHATML);
  const text = "x".repeat(600_000) + "<|im_end|>" + "y".repeat(10);
  const pieces = [...cutter.pieces(text, 1_000)];
  equal(pieces.join(""), text);
  ok(pieces.filter((p) => p === "").length >= 2, "an empty marker per scanned window");
  deepEqual(pieces.filter((p) => p !== ""), [
    text.slice(0, 600_000),
    `<|im_end|>${"y".repeat(10)}`,
  ]);
});

const source = llamaSourceDir();
const WORDS = ["hello", " world", "é", "日本", "😀", ".", "<", "|", ">", "<|", "[", "x", "\u00a0"];
const SPACES = [" ", "\n", "  ", "\t", " \n ", "\r\n"];

Deno.test({
  name:
    "Pieces cut by SpecialTokenCutter tokenize like the whole text in every llama.cpp vocabulary",
  ignore: !source && skipBecause("tokenize_chunks", "llama.cpp source missing (.cache/)"),
  async fn() {
    const llama = Llama.open();
    const paths = llamaVocabFiles();
    ok(paths.length >= 10);
    const random = seededRandom(7);
    for (const path of paths) {
      const file = basename(path);
      using model = await Model.load(llama, path, { vocabOnly: true });
      const tokens = model.specialTokens();
      ok(tokens, `${file}: special tokens are UTF-8`);
      const texts = tokens.map((t) => t.text).slice(0, 60);
      // Special tokens, whitespace and words in random order: cuts next to whitespace, RSTRIP
      // (phi-3) and LSTRIP (nomic-bert-moe) tokens all happen.
      let text = "";
      while (text.length < 20_000) {
        const kind = random(4);
        text += kind === 0 && texts.length
          ? texts[random(texts.length)]
          : kind === 1
          ? SPACES[random(SPACES.length)]
          : WORDS[random(WORDS.length)];
      }
      const cutter = new SpecialTokenCutter(tokens);
      const pieces = [...cutter.pieces(text, 200)].filter((p) => p !== "");
      const whole = [...model.tokenize(text, { addSpecial: false })];
      const joined = pieces.flatMap((p) => [...model.tokenize(p, { addSpecial: false })]);
      deepEqual(joined, whole, `${file}: ${pieces.length} pieces`);
    }
  },
});
