import { deepEqual, equal, ok } from "node:assert/strict";
import { cutLongRuns, RUN_PIECE_CHARS, splitsWithStdRegex } from "../../src/ffi/long_runs.ts";
import { llamaSourceDir, llamaVocabPath } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";

Deno.test("cutLongRuns() cuts only runs of one class longer than a piece, never a surrogate pair", () => {
  const text = `x ${"-".repeat(1200)} words ${"a".repeat(600)}${"日".repeat(3)}`;
  const pieces = cutLongRuns(text);
  equal(pieces.join(""), text);
  deepEqual(pieces.map((p) => p.length), [2 + 512, 512, 176 + 7 + 512, 88 + 3]);
  deepEqual(cutLongRuns("a short text, ".repeat(100)), ["a short text, ".repeat(100)]);
  deepEqual(cutLongRuns("a-".repeat(2000)), ["a-".repeat(2000)], "mixed classes are short runs");
  const astral = "𝒜".repeat(RUN_PIECE_CHARS); // two code units each
  for (const piece of cutLongRuns(astral)) ok(piece.length % 2 === 0, "whole characters");
  equal(cutLongRuns(astral).join(""), astral);
  equal(splitsWithStdRegex("qwen2"), false);
  equal(splitsWithStdRegex("deepseek-coder"), true);
  equal(splitsWithStdRegex(undefined), true, "llama.cpp's default pre-tokenizer");
});

Deno.test({
  name:
    "A run of 50,000 letters or dashes tokenizes with DeepSeek's, Falcon's and GPT-NeoX's vocabularies (it overflowed the stack)",
  ignore: !llamaSourceDir() && skipBecause("long_runs", "llama.cpp source missing (.cache/)"),
  async fn() {
    const child = new URL("./long_runs_child.ts", import.meta.url).pathname;
    for (
      const [vocab, character] of [
        ["ggml-vocab-deepseek-coder.gguf", "a"],
        ["ggml-vocab-falcon.gguf", "-"],
        ["ggml-vocab-gpt-neox.gguf", "-"],
      ]
    ) {
      const run = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", child, llamaVocabPath(vocab as string), character as string, "50000"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(run.stderr);
      equal(run.code, 0, `${vocab}: ${stderr.slice(-300)}`);
      const counts = JSON.parse(new TextDecoder().decode(run.stdout));
      ok(counts.here > 0 && counts.here === counts.there, `${vocab}: ${JSON.stringify(counts)}`);
    }
  },
});
