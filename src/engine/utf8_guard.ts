/**
 * Keeps grammar-constrained output valid UTF-8 where llama.cpp's grammar does not. Its check of
 * a character split across tokens accepts any continuation byte after the lead bytes E0, ED, F0
 * and F4, so overlong forms (E0 80–9F, F0 80–8F), UTF-16 surrogates (ED A0–BF) and code points
 * past U+10FFFF (F4 90–BF) get through, and decode as U+FFFD. After such a lead byte the tokens
 * whose first byte would complete one of those are banned for the next step.
 *
 * @module
 */

/** The second bytes that are invalid after a lead byte, as an inclusive range. */
const BAD_SECOND_BYTES = new Map<number, readonly [number, number]>([
  [0xe0, [0x80, 0x9f]],
  [0xed, [0xa0, 0xbf]],
  [0xf0, [0x80, 0x8f]],
  [0xf4, [0x90, 0xbf]],
]);

/** Bytes a character that starts with `lead` has, or 0 when `lead` starts none. */
function characterLength(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

/**
 * The unfinished character at the end of some output: its bytes so far.
 *
 * @param tail The unfinished character before `bytes` (empty when there was none).
 * @param bytes The bytes that came next.
 * @returns The bytes of the character still unfinished after them; empty when the output ends
 *   on a whole character or on bytes that start none.
 * @example
 * ```ts
 * unfinishedCharacter([], new Uint8Array([0x61, 0xe2])); // [0xe2]
 * unfinishedCharacter([0xe2], new Uint8Array([0x82, 0xac])); // [] ("€" is whole)
 * ```
 */
export function unfinishedCharacter(tail: readonly number[], bytes: Uint8Array): number[] {
  const all = [...tail.slice(-3), ...bytes.slice(-4)];
  for (let start = all.length - 1; start >= Math.max(0, all.length - 4); start--) {
    const byte = all[start] as number;
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: the lead is further back
    const length = characterLength(byte);
    return length > all.length - start ? all.slice(start) : [];
  }
  return [];
}

/**
 * Whether the next step needs the guard: the output ends on a lone lead byte after which some
 * second bytes would make an invalid character.
 *
 * @param unfinished The unfinished character so far (see {@link unfinishedCharacter}).
 * @returns True when {@link Utf8Guard.apply} would ban tokens.
 */
export function guardsNextStep(unfinished: readonly number[]): boolean {
  return unfinished.length === 1 && BAD_SECOND_BYTES.has(unfinished[0] as number);
}

/**
 * One entry per byte value, 1 for the lead bytes after which {@link Utf8Guard.apply} bans tokens:
 * a run on the decode thread halts after a token whose text ends on one, so that the step after
 * it is the host's (see `DecodeRunPlan.grammar`).
 */
export const GUARDED_LAST_BYTES: Uint8Array<ArrayBuffer> = (() => {
  const table = new Uint8Array(256);
  for (const lead of BAD_SECOND_BYTES.keys()) table[lead] = 1;
  return table;
})();

/** Bans, per lead byte, the tokens of a model that would make its character invalid. */
export class Utf8Guard {
  readonly #tokenBytes: (token: number) => Uint8Array;
  readonly #vocabSize: number;
  readonly #banned = new Map<number, Int32Array>();

  /**
   * @param tokenBytes The bytes of a token.
   * @param vocabSize Tokens in the vocabulary.
   */
  constructor(tokenBytes: (token: number) => Uint8Array, vocabSize: number) {
    this.#tokenBytes = tokenBytes;
    this.#vocabSize = vocabSize;
  }

  /**
   * Sets to −∞ the logits of the tokens that cannot follow an unfinished character.
   *
   * @param logits The step's logits (llama.cpp's buffer, read by the sampler afterwards).
   * @param unfinished The unfinished character so far (see {@link unfinishedCharacter}).
   */
  apply(logits: Float32Array, unfinished: readonly number[]): void {
    if (unfinished.length !== 1) return;
    for (const token of this.#bannedAfter(unfinished[0] as number)) logits[token] = -Infinity;
  }

  #bannedAfter(lead: number): Int32Array {
    const cached = this.#banned.get(lead);
    if (cached) return cached;
    const range = BAD_SECOND_BYTES.get(lead);
    const found: number[] = [];
    if (range) {
      for (let token = 0; token < this.#vocabSize; token++) {
        const first = this.#tokenBytes(token)[0];
        if (first !== undefined && first >= range[0] && first <= range[1]) found.push(token);
      }
    }
    const banned = Int32Array.from(found);
    this.#banned.set(lead, banned);
    return banned;
  }
}
