/**
 * Streaming detokenization: token bytes in, text out. Emits only complete UTF-8 characters
 * (a character split across tokens waits for its last byte), holds back text that could be
 * the start of a stop string, and never emits a stop string itself. With a minimum indentation
 * (llama-server's `n_indent`, for code completion), the text ends where a line after the first
 * starts with less: the line's indentation is kept, the rest of it is not. Stop strings are
 * matched a character at a time (one Knuth–Morris–Pratt state per stop string), so a token costs
 * the same however long the stop strings and the held-back text are.
 *
 * @module
 */

const UTF8 = new TextEncoder();

/** What one push produced. */
export interface StreamChunk {
  /** Text that is now safe to show (may be empty). */
  text: string;
  /** The stop string that ended the text, if one was completed. */
  stop?: string;
  /**
   * With `stop`: the UTF-8 bytes from the stop string's start to the end of the text decoded so
   * far, none of which is output (so the tokens that brought them are not reported either).
   */
  stopBytes?: number;
  /** True when a line started with less indentation than the minimum: the text ends here. */
  underIndented?: true;
}

/** Options of {@link TextStream}. */
export interface TextStreamOptions {
  /**
   * End the text where a line after the first starts with fewer than this many spaces or tabs
   * before its first other character (an empty line counts as such). Default 0: never.
   */
  minIndent?: number;
}

/** Incremental decoder with stop-string detection for one generation. */
export class TextStream {
  readonly #decoder = new TextDecoder("utf-8", { fatal: false });
  /** One matcher per stop string, fed each character once. */
  readonly #matchers: StopMatcher[];
  #pending = "";
  /** How many characters at the start of `#pending` the matchers have seen. */
  #fed = 0;
  #stopped: string | undefined;
  readonly #minIndent: number;
  /** The current line's indentation so far, while it has only spaces and tabs after a newline. */
  #indent: number | undefined;
  #underIndented = false;

  /**
   * @param stops Strings that end generation; empty strings are ignored.
   * @param options The minimum indentation of later lines.
   */
  constructor(stops: readonly string[] = [], options: TextStreamOptions = {}) {
    this.#matchers = stops.filter((s) => s.length > 0).map((s) => new StopMatcher(s));
    this.#minIndent = options.minIndent ?? 0;
  }

  /** The stop string that was hit, if any. */
  get stoppedBy(): string | undefined {
    return this.#stopped;
  }

  /**
   * Adds the bytes of one token.
   *
   * @param bytes The token's UTF-8 bytes (possibly part of a character).
   * @returns The text safe to emit now, and the stop string if one completed.
   * @example
   * ```ts
   * const s = new TextStream(["\n\n"]);
   * s.push(new Uint8Array([0xe2, 0x82])).text; // "" (incomplete character)
   * s.push(new Uint8Array([0xac])).text; // "€"
   * ```
   */
  push(bytes: Uint8Array): StreamChunk {
    if (this.#ended) return { text: "" };
    this.#pending += this.#decoder.decode(bytes, { stream: true });
    return this.#drain(false);
  }

  /**
   * Ends the stream: returns whatever was held back (an incomplete character becomes U+FFFD;
   * a partial stop string is plain text after all).
   */
  flush(): StreamChunk {
    if (this.#ended) return { text: "" };
    this.#pending += this.#decoder.decode();
    return this.#drain(true);
  }

  get #ended(): boolean {
    return this.#stopped !== undefined || this.#underIndented;
  }

  #drain(final: boolean): StreamChunk {
    const chunk = this.#drainStops(final);
    const cut = this.#minIndent > 0 ? this.#underIndentedAt(chunk.text) : -1;
    if (cut < 0) return chunk;
    this.#pending = "";
    this.#stopped = undefined;
    this.#underIndented = true;
    return { text: chunk.text.slice(0, cut), underIndented: true };
  }

  /**
   * Where in `text` (which follows the text seen before) a line's first character other than a
   * space or tab comes after too little indentation, or -1.
   */
  #underIndentedAt(text: string): number {
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (this.#indent === undefined) {
        if (c === "\n") this.#indent = 0;
      } else if (c === " " || c === "\t") {
        this.#indent++;
      } else if (this.#indent < this.#minIndent) {
        return i;
      } else {
        this.#indent = c === "\n" ? 0 : undefined;
      }
    }
    return -1;
  }

  #drainStops(final: boolean): StreamChunk {
    if (this.#advanceMatchers()) {
      // Once per stream: the stop that starts first (not the first to end) wins.
      let first: { at: number; stop: string } | undefined;
      for (const { stop } of this.#matchers) {
        const at = this.#pending.indexOf(stop);
        if (at >= 0 && (first === undefined || at < first.at)) first = { at, stop };
      }
      if (first) {
        const text = this.#pending.slice(0, first.at);
        const stopBytes = UTF8.encode(this.#pending.slice(first.at)).length;
        this.#pending = "";
        this.#stopped = first.stop;
        return { text, stop: first.stop, stopBytes };
      }
    }
    let hold = 0;
    for (const m of this.#matchers) {
      if (final) m.matched = 0; // what was flushed is no longer the start of anything
      hold = Math.max(hold, m.matched);
    }
    const text = this.#pending.slice(0, this.#pending.length - hold);
    this.#pending = this.#pending.slice(this.#pending.length - hold);
    this.#fed = this.#pending.length;
    return { text };
  }

  /**
   * Feeds the pending characters not yet seen to every stop string's matcher.
   *
   * @returns Whether some stop string is now complete.
   */
  #advanceMatchers(): boolean {
    for (; this.#fed < this.#pending.length; this.#fed++) {
      const c = this.#pending.charCodeAt(this.#fed);
      let complete = false;
      for (const m of this.#matchers) complete = m.advance(c) || complete;
      if (complete) return true;
    }
    return false;
  }
}

/**
 * Knuth–Morris–Pratt matching of one stop string against text fed a character at a time:
 * `matched` is the length of the longest beginning of the stop string that ends the text so far,
 * in O(1) amortised per character.
 */
class StopMatcher {
  readonly stop: string;
  /** `border[k]`: the longest proper beginning of `stop.slice(0, k)` that also ends it. */
  readonly #border: Int32Array;
  /** How much of the stop string ends the text fed so far (its length once it is complete). */
  matched = 0;

  constructor(stop: string) {
    this.stop = stop;
    this.#border = new Int32Array(stop.length + 1);
    for (let k = 2; k <= stop.length; k++) {
      let b = this.#border[k - 1]!;
      while (b > 0 && stop.charCodeAt(b) !== stop.charCodeAt(k - 1)) b = this.#border[b]!;
      this.#border[k] = stop.charCodeAt(b) === stop.charCodeAt(k - 1) ? b + 1 : 0;
    }
  }

  /** Feeds one UTF-16 code unit; returns whether the stop string now ends the text. */
  advance(c: number): boolean {
    let k = this.matched === this.stop.length ? this.#border[this.matched]! : this.matched;
    while (k > 0 && this.stop.charCodeAt(k) !== c) k = this.#border[k]!;
    if (this.stop.charCodeAt(k) === c) k++;
    this.matched = k;
    return k === this.stop.length;
  }
}
