/**
 * A thinking budget: the most tokens a reasoning model may generate inside its thinking block
 * (`<think>` … `</think>`) before the block is closed for it, so that it answers. Asked for with
 * llama-server's `thinking_budget_tokens` (or `reasoning_budget_tokens`) and Anthropic's
 * `thinking.budget_tokens`.
 *
 * The block is found in the text, not by token ids, so that it works whatever the vocabulary
 * makes of the tags: the prompt may end inside it (templates that open it for the model), or
 * the model opens it. Once the block has taken the budget, the tokens of the closing text (an
 * optional message, then the closing tag) are forced one a step: every other token's logit is
 * made -∞ before the request's sampler chain picks one, so the chain's state (penalties, a seed)
 * goes on as for any token. A budget that runs out inside a character waits for its last bytes
 * first. A block the model closes itself ends the count; a new block gets a new budget.
 *
 * @module
 */

import type { Model } from "../ffi/model.ts";
import { THINK_TAGS } from "./tools/parse.ts";
import type { ThinkingBudget } from "./tools/plan.ts";
import { unfinishedCharacter } from "./utf8_guard.ts";

/** What a request's thinking budget is made of, its texts tokenized for the model. */
export interface ReasoningBudgetSpec {
  /** Tokens the model may generate inside a block (0: the block is closed at once). */
  tokens: number;
  /** Opens a block, e.g. `<think>`. */
  open: string;
  /** Closes it, e.g. `</think>`. */
  close: string;
  /** Tokens forced when the budget runs out: the message, if any, and the closing tag. */
  forced: readonly number[];
  /** The prompt ends inside an open block (the template opened it for the model). */
  startsOpen: boolean;
  /**
   * Ends the block being written now, as if the budget had run out (llama-server's
   * `reasoning_end` control); a request has `tokens` Infinity when only this ends it.
   */
  endNow?: AbortSignal;
}

type State = "outside" | "counting" | "waitingForCharacter" | "forcing";

/** One generation's thinking budget, fed every token it generates. */
export class ReasoningBudget {
  readonly #spec: ReasoningBudgetSpec;
  #state: State = "outside";
  #left = 0;
  #forcedAt = 0;
  /** The text generated since the last tag was found, of at most a tag's length. */
  #recent = "";
  #unfinished: number[] = [];
  readonly #decoder = new TextDecoder();
  readonly #tagLength: number;
  /** Whether {@link ReasoningBudgetSpec.endNow} was acted on. */
  #endedNow = false;

  /** @param spec The budget and its texts. */
  constructor(spec: ReasoningBudgetSpec) {
    this.#spec = spec;
    this.#tagLength = Math.max(spec.open.length, spec.close.length);
    if (spec.startsOpen) this.#openBlock();
  }

  /** The token to force this step, if the budget ran out. */
  forcedToken(): number | undefined {
    this.#heedEndNow();
    return this.#state === "forcing" ? this.#spec.forced[this.#forcedAt] : undefined;
  }

  /**
   * How many tokens may be generated before the budget needs a look again (a run on the decode
   * thread goes no further): what is left inside a block, the budget itself outside of one (a
   * block opened on its first token still ends in time), 0 while closing one.
   */
  tokensUntilCheck(): number {
    this.#heedEndNow();
    switch (this.#state) {
      case "counting":
        return this.#left;
      case "outside":
        return this.#spec.tokens;
      default:
        return 0;
    }
  }

  /**
   * Takes a generated token (sampled or forced).
   *
   * @param bytes The token's text, as bytes.
   */
  accept(bytes: Uint8Array): void {
    this.#unfinished = unfinishedCharacter(this.#unfinished, bytes);
    const text = this.#decoder.decode(bytes, { stream: true });
    const whole = this.#unfinished.length === 0;
    switch (this.#state) {
      case "outside":
        if (this.#sees(text, this.#spec.open)) this.#openBlock();
        return;
      case "counting":
        if (this.#sees(text, this.#spec.close)) {
          this.#state = "outside";
        } else if (--this.#left <= 0) {
          this.#outOfBudget(whole);
        }
        return;
      case "waitingForCharacter":
        if (this.#sees(text, this.#spec.close)) {
          this.#state = "outside";
        } else {
          this.#outOfBudget(whole);
        }
        return;
      case "forcing":
        if (++this.#forcedAt >= this.#spec.forced.length) {
          this.#state = "outside";
          this.#recent = "";
        }
    }
  }

  /** Closes the block being written once `endNow` has aborted (once; later blocks count on). */
  #heedEndNow(): void {
    if (this.#endedNow || !this.#spec.endNow?.aborted) return;
    this.#endedNow = true;
    if (this.#state === "counting") this.#outOfBudget(this.#unfinished.length === 0);
  }

  #openBlock(): void {
    this.#left = this.#spec.tokens;
    this.#state = "counting";
    if (this.#left <= 0) this.#outOfBudget(true);
  }

  #outOfBudget(wholeCharacter: boolean): void {
    if (!wholeCharacter) {
      this.#state = "waitingForCharacter";
      return;
    }
    this.#state = this.#spec.forced.length > 0 ? "forcing" : "outside";
    this.#forcedAt = 0;
  }

  /** Adds text to the recent text; true (and the recent text forgotten) when it holds `tag`. */
  #sees(text: string, tag: string): boolean {
    const recent = this.#recent + text;
    if (recent.includes(tag)) {
      this.#recent = "";
      return true;
    }
    this.#recent = recent.slice(-this.#tagLength);
    return false;
  }
}

/**
 * A request's thinking budget for the engine: the `<think>` tags, and the tokens forced when the
 * budget runs out (the message, if any, then the closing tag).
 *
 * @param model The model (its vocabulary tokenizes the texts).
 * @param budget What the request asked.
 * @param startsOpen Whether the prompt ends inside an open block.
 * @returns The spec.
 * @example
 * ```ts
 * const spec = reasoningBudgetSpec(model, { tokens: 512, message: "" }, true);
 * ```
 */
export function reasoningBudgetSpec(
  model: Model,
  budget: ThinkingBudget,
  startsOpen: boolean,
): ReasoningBudgetSpec {
  const tokenize = (text: string) =>
    text ? Array.from(model.tokenize(text, { addSpecial: false, parseSpecial: true })) : [];
  return {
    tokens: budget.tokens,
    open: THINK_TAGS.open,
    close: THINK_TAGS.close,
    forced: [...tokenize(budget.message), ...tokenize(THINK_TAGS.close)],
    startsOpen,
    ...(budget.endNow ? { endNow: budget.endNow } : {}),
  };
}
