/**
 * The fill-in-the-middle layout and its budget, on a made-up vocabulary whose tokens are the
 * characters' codes (so each cut is countable); the layout with real vocabularies is checked
 * against llama-server in tests/oracle/infill_oracle_test.ts.
 */

import { deepEqual } from "node:assert/strict";
import { type FimVocabulary, infillPrompt, missingFimTokens } from "../../src/engine/fim_prompt.ts";

const PRE = 90010, SUF = 90011, MID = 90012, REPO = 90013, SEP = 90014;

/** One token per character; the answer's start (parsed for specials) marks its characters. */
const tokenize = (text: string, parseSpecial: boolean) =>
  Promise.resolve(
    Int32Array.from([...text].map((c) => c.charCodeAt(0) + (parseSpecial ? 1000 : 0))),
  );

const codes = (text: string) => [...text].map((c) => c.charCodeAt(0));
const answerCodes = (text: string) => codes(text).map((c) => c + 1000);

const vocabulary = (repoAndFiles: boolean, addsBos: boolean): FimVocabulary => ({
  fimTokens: {
    prefix: PRE,
    suffix: SUF,
    middle: MID,
    repo: repoAndFiles ? REPO : -1,
    fileSeparator: repoAndFiles ? SEP : -1,
  },
  bos: 1,
  addsBos,
});

const parts = {
  prefix: "abcdef",
  suffix: "uvwxyz",
  middle: "m",
  extra: [{ filename: "a", text: "AA" }, { filename: "b", text: "BB" }],
};

Deno.test("infillPrompt lays out repository, files, prefix, answer start, suffix and middle", async () => {
  const roomy = { batch: 64, context: 1024, answer: 8 };
  deepEqual(
    [...await infillPrompt(vocabulary(true, false), parts, roomy, tokenize)],
    [
      ...[REPO, ...codes("myproject\n")],
      ...[SEP, ...codes("a\n"), ...codes("AA")],
      ...[SEP, ...codes("b\n"), ...codes("BB")],
      ...[SEP, ...codes("filename\n")],
      ...[PRE, ...codes("abcdef"), ...answerCodes("m")],
      ...[SUF, ...codes("uvwxyz"), MID],
    ],
  );
  // Without file tokens each file follows a snippet line; BOS starts the prompt.
  deepEqual(
    [...await infillPrompt(vocabulary(false, true), parts, roomy, tokenize)],
    [
      1,
      ...codes("\n\n--- snippet ---\n\nAA"),
      ...codes("\n\n--- snippet ---\n\nBB"),
      ...[PRE, ...codes("abcdef"), ...answerCodes("m"), SUF, ...codes("uvwxyz"), MID],
    ],
  );
});

Deno.test("infillPrompt keeps the prefix's end, the suffix's start and the last files within the budget", async () => {
  // batch 16: the prefix keeps 12 tokens, the suffix 4 - (2 + 1) = 1; the files get
  // 40 - 16 - 2 * 10 = 4 tokens, the last ones.
  const tight = { batch: 16, context: 40, answer: 10 };
  const long = { ...parts, prefix: "0123456789abcdefghij", suffix: "uvwxyz" };
  deepEqual(
    [...await infillPrompt(vocabulary(false, false), long, tight, tokenize)],
    [
      ...codes("\n\nBB"),
      PRE,
      ...codes("89abcdefghij"),
      ...answerCodes("m"),
      SUF,
      ...codes("u"),
      MID,
    ],
  );
  // No room for files at all, and a suffix budget the answer's start uses up.
  const none = { batch: 8, context: 8, answer: 0 };
  deepEqual(
    [...await infillPrompt(vocabulary(true, false), { ...long, middle: "mm" }, none, tokenize)],
    [PRE, ...codes("efghij"), ...answerCodes("mm"), SUF, MID],
  );
});

Deno.test("missingFimTokens names the FIM tokens a vocabulary lacks", () => {
  deepEqual(missingFimTokens(vocabulary(false, false).fimTokens), []);
  deepEqual(
    missingFimTokens({ prefix: 1, suffix: -1, middle: -1, repo: 4, fileSeparator: 5 }),
    ["suffix", "middle"],
  );
});
