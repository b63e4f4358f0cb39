/**
 * The benchmark's statistics: mean, median, percentiles (linear interpolation between the closest
 * ranks, as numpy's default), and the token-gap summary of a set of streams.
 *
 * @module
 */

/**
 * The `p`-th percentile, interpolated linearly between the two closest ranks: rank
 * `p / 100 × (n − 1)` of the sorted values, counted from 0.
 *
 * @param values Any numbers; not modified.
 * @param p The percentile, 0 to 100.
 * @returns The percentile, or NaN for no values.
 * @example
 * ```ts
 * percentile([1, 2, 3, 4], 50); // 2.5
 * percentile([10, 20], 90); // 19
 * ```
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const lower = sorted[low] as number;
  const upper = sorted[Math.min(low + 1, sorted.length - 1)] as number;
  return lower + (upper - lower) * (rank - low);
}

/**
 * The median: the mean of the two middle values for an even count.
 *
 * @param values Any numbers; not modified.
 * @returns The median, or NaN for no values.
 * @example
 * ```ts
 * median([3, 1, 2]); // 2
 * ```
 */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/**
 * The arithmetic mean.
 *
 * @param values Any numbers.
 * @returns The mean, or NaN for no values.
 * @example
 * ```ts
 * mean([1, 2, 6]); // 3
 * ```
 */
export function mean(values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((sum, v) => sum + v, 0) / values.length;
}

/**
 * The ratio of each round's value to the baseline's in the same round, for A/Bs that alternate
 * servers round by round: each ratio pairs two measurements made a minute apart, so the machine's
 * drift between rounds cancels, where a ratio of two medians can pick different rounds for each.
 *
 * @param values The server's value in each round.
 * @param baseline The baseline server's value in the same rounds.
 * @returns One ratio per round.
 * @example
 * ```ts
 * pairedRatios([110, 220], [100, 200]); // [1.1, 1.1]
 * ```
 */
export function pairedRatios(values: readonly number[], baseline: readonly number[]): number[] {
  if (values.length !== baseline.length) {
    throw new RangeError(`${values.length} values against ${baseline.length} baseline values`);
  }
  return values.map((value, round) => value / (baseline[round] as number));
}

/** A burst split when its earliest first token came before this share of the next one's. */
export const SPLIT_SHARE = 0.6;

/**
 * Whether a burst's first step started without the rest of it: its earliest first token came
 * well before the next one (under {@link SPLIT_SHARE} of it), because the others waited for the
 * step of the first.
 *
 * @param ttftsMs The first-token times of the burst's requests, in any order.
 * @returns False for fewer than two requests.
 * @example
 * ```ts
 * burstSplit([6.5, 20.1, 20.3]); // true
 * burstSplit([11.2, 11.3, 11.4]); // false
 * ```
 */
export function burstSplit(ttftsMs: readonly number[]): boolean {
  if (ttftsMs.length < 2) return false;
  const [first, second] = [...ttftsMs].sort((a, b) => a - b) as [number, number];
  return first < SPLIT_SHARE * second;
}

/** Token-gap summary of a set of streams; every time in ms. */
export interface GapStats {
  /** Gaps counted, over all streams. */
  count: number;
  /** Median gap over all streams' gaps. */
  p50: number;
  /** 90th percentile over all streams' gaps. */
  p90: number;
  /** 99th percentile over all streams' gaps. */
  p99: number;
  /** The longest gap. */
  max: number;
  /** The highest of the streams' own 99th percentiles. */
  worstStreamP99: number;
}

/**
 * Summarizes the token gaps of several streams: percentiles over all their gaps together, and
 * the worst stream's own 99th percentile.
 *
 * @param gapsPerStream Each stream's gaps in ms (see `tokenGaps`).
 * @returns The summary; NaN fields when there is no gap at all.
 * @example
 * ```ts
 * const stats = gapStats([[10, 11, 30], [9, 10, 10]]);
 * console.log(stats.p50, stats.worstStreamP99); // 10, 29.62
 * ```
 */
export function gapStats(gapsPerStream: readonly (readonly number[])[]): GapStats {
  const all = gapsPerStream.flat();
  const perStream = gapsPerStream.filter((g) => g.length > 0).map((g) => percentile(g, 99));
  return {
    count: all.length,
    p50: percentile(all, 50),
    p90: percentile(all, 90),
    p99: percentile(all, 99),
    max: all.length ? Math.max(...all) : NaN,
    worstStreamP99: perStream.length ? Math.max(...perStream) : NaN,
  };
}
