/**
 * Child of long_runs_test.ts: tokenizes a long run of one character with a vocabulary, on the
 * event loop's thread and on a worker thread, and prints the token counts. A stack overflow in
 * llama.cpp kills this process, not the test runner.
 *
 * Usage: `deno run -A long_runs_child.ts VOCAB.gguf CHARACTER LENGTH`
 */

import { Llama, Model } from "../../src/ffi/mod.ts";

const [path, character, length] = Deno.args;
using model = await Model.load(Llama.open(), path as string, { vocabOnly: true });
const text = (character as string).repeat(Number(length));
const options = { addSpecial: false, parseSpecial: false };
const here = model.tokenize(text, options).length;
const there = (await model.tokenizeAsync(text, options)).length;
console.log(JSON.stringify({ here, there }));
