/**
 * "Did you mean" for the command line: the known word closest to a mistyped one by edit
 * distance, when it is close enough to be a likely typo.
 *
 * @module
 */

/**
 * The Levenshtein distance between two strings (insertions, deletions, substitutions; an
 * adjacent swap counts as one edit).
 *
 * @param a One string.
 * @param b The other.
 * @returns The number of edits.
 * @example
 * ```ts
 * editDistance("modle", "model"); // 1
 * ```
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => {
    const row = new Array<number>(cols).fill(0);
    row[0] = i;
    return row;
  });
  for (let j = 0; j < cols; j++) d[0]![j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The known word closest to `word`, if it is within a third of its length (at least 1, at
 * most 3 edits) or `word` is a prefix of exactly one known word.
 *
 * @param word What the user typed.
 * @param known The words that exist.
 * @returns The suggestion, or undefined when nothing is close.
 * @example
 * ```ts
 * closestMatch("modle", ["model", "prompt"]); // "model"
 * ```
 */
export function closestMatch(word: string, known: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const limit = Math.min(3, Math.max(1, Math.floor(lower.length / 3)));
  if (best !== undefined && bestDistance <= limit) return best;
  const prefixed = known.filter((k) => k.startsWith(lower));
  return lower.length >= 2 && prefixed.length === 1 ? prefixed[0] : undefined;
}
