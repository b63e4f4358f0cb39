/**
 * Turns for tokenizing big texts. llama.cpp tokenizes about a megabyte a second on one core, and
 * a text without special tokens is one native call that cannot be cut: six 8 MB `/tokenize`
 * requests at once had taken both cores of a 2-core machine from the streams decoding beside them
 * (200 tokens in 36 s instead of 3.4 s) and raised the server's memory by 2.5 GB. Big texts
 * therefore take turns, one at a time, while short ones (most prompts) never wait.
 *
 * The next turn goes to the waiting text that would finish first if each had started when it
 * arrived (its arrival time plus its length at {@link CHARS_PER_MS}): a chat prompt of a few
 * hundred kilobytes goes before an 8 MB text that arrived a moment earlier, and a big text still
 * gets its turn once the texts arriving after it would end later than it would.
 *
 * @module
 */

/** Texts longer than this (UTF-16 code units) take turns: tens of milliseconds of work and up. */
export const BIG_TEXT_CHARS = 64 * 1024;

/** Roughly how fast llama.cpp tokenizes, in characters per millisecond (one core, measured). */
const CHARS_PER_MS = 1000;

interface Waiter {
  /** When it would end, had it started when it arrived (ms, `performance.now()` clock). */
  finish: number;
  start: () => void;
}

/** One big text tokenized at a time, the one that would finish first next. */
export class TokenizeTurns {
  #busy = false;
  readonly #waiting: Waiter[] = [];

  /**
   * Runs the tokenization of a text in its turn.
   *
   * @param chars The text's length (UTF-16 code units).
   * @param work The tokenization.
   * @param signal Stops the wait; the promise then rejects with its reason.
   * @returns What `work` returns.
   * @example
   * ```ts
   * const tokens = await turns.run(text.length, () => tokenizeOffThread(text), signal);
   * ```
   */
  async run<T>(chars: number, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.#enter(chars, signal);
    try {
      return await work();
    } finally {
      this.#leave();
    }
  }

  /** How many texts wait for their turn. */
  get waiting(): number {
    return this.#waiting.length;
  }

  #enter(chars: number, signal: AbortSignal | undefined): Promise<void> {
    signal?.throwIfAborted();
    if (!this.#busy) {
      this.#busy = true;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#waiting.splice(this.#waiting.indexOf(waiter), 1);
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        finish: performance.now() + chars / CHARS_PER_MS,
        start: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  #leave(): void {
    let next = -1;
    for (const [i, waiter] of this.#waiting.entries()) {
      if (next < 0 || waiter.finish < (this.#waiting[next] as Waiter).finish) next = i;
    }
    if (next < 0) {
      this.#busy = false;
      return;
    }
    const [waiter] = this.#waiting.splice(next, 1);
    waiter?.start();
  }
}

/** The process's turns: every model's big texts share the cores. */
export const bigTextTurns = new TokenizeTurns();
