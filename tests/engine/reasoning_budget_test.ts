import { deepEqual, equal } from "node:assert/strict";
import { ReasoningBudget, type ReasoningBudgetSpec } from "../../src/engine/reasoning_budget.ts";

const encode = (text: string) => new TextEncoder().encode(text);
const FORCED = [901, 902, 903]; // say, " Done." then "</think>"

function budget(tokens: number, startsOpen: boolean, forced = FORCED): ReasoningBudget {
  const spec: ReasoningBudgetSpec = {
    tokens,
    open: "<think>",
    close: "</think>",
    forced,
    startsOpen,
  };
  return new ReasoningBudget(spec);
}

/** Feeds texts; returns the forced token before each (undefined: sampled freely). */
function feed(b: ReasoningBudget, texts: string[]): (number | undefined)[] {
  return texts.map((text) => {
    const forced = b.forcedToken();
    b.accept(encode(text));
    return forced;
  });
}

Deno.test("a block the prompt opened is closed after the budget's tokens, with the forced tokens", () => {
  const b = budget(3, true);
  equal(b.tokensUntilCheck(), 3);
  deepEqual(feed(b, ["a", "b", "c"]), [undefined, undefined, undefined]);
  equal(b.tokensUntilCheck(), 0, "no run ahead while closing");
  deepEqual(feed(b, ["x", "y", "z", "answer"]), [901, 902, 903, undefined]);
  equal(b.tokensUntilCheck(), 3, "outside again: the budget until the next look");
});

Deno.test("a block the model opens and closes itself is counted, then left alone", () => {
  const b = budget(4, false);
  deepEqual(feed(b, ["Hi ", "<th", "ink>", "a", "b"]), Array(5).fill(undefined));
  equal(b.tokensUntilCheck(), 2);
  deepEqual(feed(b, ["</", "think>", "c", "d", "e", "f"]), Array(6).fill(undefined));
  // A second block gets a whole budget again.
  deepEqual(feed(b, ["<think>", "1", "2", "3", "4", "."]), [...Array(5).fill(undefined), 901]);
});

Deno.test("a budget of 0 closes the block at once; one that ends inside a character waits for it", () => {
  deepEqual(feed(budget(0, true), ["x", "y"]), [901, 902]);
  const b = budget(1, true);
  const euro = encode("€"); // 3 bytes over two tokens
  equal(b.forcedToken(), undefined);
  b.accept(euro.subarray(0, 2));
  equal(b.forcedToken(), undefined, "the character is not whole yet");
  b.accept(euro.subarray(2));
  equal(b.forcedToken(), 901);
});

Deno.test("endNow closes the block being written; a later block counts on", () => {
  const end = new AbortController();
  const spec: ReasoningBudgetSpec = {
    tokens: Infinity,
    open: "<think>",
    close: "</think>",
    forced: FORCED,
    startsOpen: true,
    endNow: end.signal,
  };
  const b = new ReasoningBudget(spec);
  deepEqual(feed(b, ["a", "b"]), [undefined, undefined]);
  equal(b.tokensUntilCheck(), Infinity);
  end.abort();
  equal(b.tokensUntilCheck(), 0);
  deepEqual(feed(b, ["x", "y", "z", "answer", "<think>", "more"]), [901, 902, 903, ...Array(3)]);
  equal(b.tokensUntilCheck(), Infinity, "a later block is not ended by the same signal");
});
