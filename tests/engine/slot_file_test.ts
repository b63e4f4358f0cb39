import { deepEqual, throws } from "node:assert/strict";
import { packSlotTokens, SlotFileError, unpackSlotTokens } from "../../src/engine/slot_file.ts";

Deno.test("a slot's tokens pack as llama-server packs them and read back, packed or bare", () => {
  deepEqual(Array.from(packSlotTokens([5, 6, 7])), [-1, 1, 3, 5, 6, 7, 0]);
  deepEqual(Array.from(packSlotTokens([])), [-1, 1, 0, 0]);
  deepEqual(unpackSlotTokens(packSlotTokens([5, 6, 7]), 100), [5, 6, 7]);
  deepEqual(unpackSlotTokens(packSlotTokens([]), 100), []);
  // Older llama-server versions stored the bare list.
  deepEqual(unpackSlotTokens(Int32Array.of(5, 6, 7), 100), [5, 6, 7]);
  // llama-server pads its packed list to whole tokens: trailing words are ignored.
  deepEqual(unpackSlotTokens(Int32Array.of(-1, 1, 1, 9, 0, 0), 100), [9]);
});

Deno.test("a slot file's token list that this model cannot take is a SlotFileError", () => {
  const cases: [number[], RegExp][] = [
    [[-1, 2, 1, 5, 0], /layout version 2/],
    [[-1, 1, 5, 1, 2], /cut short/],
    [[-1, 1], /cut short/],
    [[-1, 1, 1, 5, 1, 8, 0], /images or audio/],
    [[-1, 1, 2, 5, 100, 0], /token 100/],
    [[5, -3], /token -3/],
  ];
  for (const [words, message] of cases) {
    throws(() => unpackSlotTokens(Int32Array.from(words), 100), (error: Error) => {
      return error instanceof SlotFileError && message.test(error.message);
    }, JSON.stringify(words));
  }
});
