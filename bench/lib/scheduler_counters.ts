/**
 * Shimmy's scheduler counters around a benchmark round, read from its `/diag`: how often requests
 * moved between slots, caches were exchanged, llama.cpp made extra passes or reordered a step's
 * outputs. A round that went slow for one of these shows it (llama-server has no such counters).
 *
 * @module
 */

/** The counters, as differences over a round. */
export interface SchedulerCounters {
  slotMoves: number;
  cacheSwaps: number;
  extraPasses: number;
  reorderedSteps: number;
  brokenRunSteps: number;
}

/** The counters computed field by field from one or two sets of them. */
function countersOf(value: (name: keyof SchedulerCounters) => number): SchedulerCounters {
  return {
    slotMoves: value("slotMoves"),
    cacheSwaps: value("cacheSwaps"),
    extraPasses: value("extraPasses"),
    reorderedSteps: value("reorderedSteps"),
    brokenRunSteps: value("brokenRunSteps"),
  };
}

/**
 * Reads the first model's counters from a Shimmy server.
 *
 * @param url The server's base URL.
 * @returns The counters, or undefined when `/diag` has none (another server, an older Shimmy).
 */
export async function readSchedulerCounters(url: string): Promise<SchedulerCounters | undefined> {
  try {
    const response = await fetch(`${url}/diag`);
    if (!response.ok) {
      await response.body?.cancel();
      return undefined;
    }
    const slots: Record<string, unknown> | undefined = (await response.json())?.models?.[0]?.slots;
    if (!slots) return undefined;
    const counters = countersOf((name) => slots[name] as number);
    return Object.values(counters).every((value) => typeof value === "number")
      ? counters
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The counters' growth between two readings.
 *
 * @param before The reading before.
 * @param after The reading after.
 * @returns The differences, or undefined when either reading is missing.
 * @example
 * ```ts
 * countersBetween(await readSchedulerCounters(url), await readSchedulerCounters(url));
 * ```
 */
export function countersBetween(
  before: SchedulerCounters | undefined,
  after: SchedulerCounters | undefined,
): SchedulerCounters | undefined {
  if (!before || !after) return undefined;
  return countersOf((name) => after[name] - before[name]);
}

/**
 * The counters as a report prints them.
 *
 * @param counters The counters of a round.
 * @returns e.g. `moves 3, cache swaps 0, extra passes 12, reordered steps 0, broken runs 0`.
 */
export function describeCounters(counters: SchedulerCounters): string {
  return `moves ${counters.slotMoves}, cache swaps ${counters.cacheSwaps}, ` +
    `extra passes ${counters.extraPasses}, reordered steps ${counters.reorderedSteps}, ` +
    `broken runs ${counters.brokenRunSteps}`;
}
