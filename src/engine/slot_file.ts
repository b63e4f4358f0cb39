/**
 * The token list stored beside a slot's KV cells in a slot file (`POST /slots/N?action=save`).
 * llama-server stores it packed, as 32-bit words: a marker that no token can be (-1), a version
 * (1), the token count and the tokens, then the count of media chunks (0 for text) and the chunks.
 * Older llama-server versions stored the bare token list, which it still reads. Shimmy writes the
 * packed form, so either server restores the other's files of the same model, and reads both.
 *
 * @module
 */

/** The first word of a packed list: no token id is negative. */
const PACKED_MARKER = -1;
/** The packed layout's version that llama-server writes and reads. */
const PACKED_VERSION = 1;

/** A slot file's token list that cannot be restored. */
export class SlotFileError extends Error {
  /** @param message What is wrong with it. */
  constructor(message: string) {
    super(message);
    this.name = "SlotFileError";
  }
}

/**
 * Packs a slot's tokens as llama-server stores them in a slot file.
 *
 * @param tokens The tokens the slot's cache holds, in order.
 * @returns The words to store beside the cells.
 * @example
 * ```ts
 * packSlotTokens([5, 6]); // Int32Array [-1, 1, 2, 5, 6, 0]
 * ```
 */
export function packSlotTokens(tokens: readonly number[]): Int32Array {
  const packed = new Int32Array(tokens.length + 4);
  packed[0] = PACKED_MARKER;
  packed[1] = PACKED_VERSION;
  packed[2] = tokens.length;
  packed.set(tokens, 3);
  packed[tokens.length + 3] = 0; // no media chunks
  return packed;
}

/**
 * Reads the tokens of a slot file's token list, packed or bare.
 *
 * @param stored The words stored beside the cells.
 * @param nVocab The model's vocabulary size: every token must be below it.
 * @returns The tokens, in order.
 * @throws {SlotFileError} for another layout version, a list cut short, media chunks (images or
 *   audio, which Shimmy does not evaluate), or a token the vocabulary does not have.
 * @example
 * ```ts
 * unpackSlotTokens(Int32Array.of(-1, 1, 2, 5, 6, 0), 32000); // [5, 6]
 * unpackSlotTokens(Int32Array.of(5, 6), 32000); // [5, 6]
 * ```
 */
export function unpackSlotTokens(stored: Int32Array, nVocab: number): number[] {
  const tokens = stored[0] === PACKED_MARKER ? unpack(stored) : stored;
  for (const token of tokens) {
    if (!(token >= 0 && token < nVocab)) {
      throw new SlotFileError(`it holds token ${token}, which this model's vocabulary lacks`);
    }
  }
  return Array.from(tokens);
}

function unpack(stored: Int32Array): Int32Array {
  if (stored[1] !== PACKED_VERSION) {
    throw new SlotFileError(
      `its token list has layout version ${stored[1]}, not ${PACKED_VERSION}`,
    );
  }
  const count = stored[2] ?? -1;
  if (count < 0 || stored.length < count + 4) {
    throw new SlotFileError("its token list is cut short");
  }
  if (stored[count + 3] !== 0) {
    throw new SlotFileError("it holds images or audio, which this server does not evaluate");
  }
  return stored.subarray(3, count + 3);
}
