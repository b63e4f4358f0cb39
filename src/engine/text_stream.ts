/**
 * Streaming detokenization: token bytes in, text out. Emits only complete UTF-8 characters
 * (a character split across tokens waits for its last byte), holds back text that could be
 * the start of a stop string, and never emits a stop string itself.
 *
 * @module
 */

/** What one push produced. */
export interface StreamChunk {
  /** Text that is now safe to show (may be empty). */
  text: string;
  /** The stop string that ended the text, if one was completed. */
  stop?: string;
}

/** Incremental decoder with stop-string detection for one generation. */
export class TextStream {
  readonly #decoder = new TextDecoder("utf-8", { fatal: false });
  readonly #stops: string[];
  #pending = "";
  #stopped: string | undefined;

  /** @param stops Strings that end generation; empty strings are ignored. */
  constructor(stops: readonly string[] = []) {
    this.#stops = stops.filter((s) => s.length > 0);
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
    if (this.#stopped !== undefined) return { text: "" };
    this.#pending += this.#decoder.decode(bytes, { stream: true });
    return this.#drain(false);
  }

  /**
   * Ends the stream: returns whatever was held back (an incomplete character becomes U+FFFD;
   * a partial stop string is plain text after all).
   */
  flush(): StreamChunk {
    if (this.#stopped !== undefined) return { text: "" };
    this.#pending += this.#decoder.decode();
    return this.#drain(true);
  }

  #drain(final: boolean): StreamChunk {
    let first: { at: number; stop: string } | undefined;
    for (const stop of this.#stops) {
      const at = this.#pending.indexOf(stop);
      if (at >= 0 && (first === undefined || at < first.at)) first = { at, stop };
    }
    if (first) {
      const text = this.#pending.slice(0, first.at);
      this.#pending = "";
      this.#stopped = first.stop;
      return { text, stop: first.stop };
    }
    const hold = final ? 0 : this.#partialStopLength();
    const text = this.#pending.slice(0, this.#pending.length - hold);
    this.#pending = this.#pending.slice(this.#pending.length - hold);
    return { text };
  }

  /** Length of the longest tail of the pending text that begins some stop string. */
  #partialStopLength(): number {
    let longest = 0;
    for (const stop of this.#stops) {
      const max = Math.min(stop.length - 1, this.#pending.length);
      for (let n = max; n > longest; n--) {
        if (this.#pending.endsWith(stop.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}
