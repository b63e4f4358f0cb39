/**
 * Whether requests come in bursts, and how long the first step after an idle spell may wait for
 * a burst's stragglers.
 *
 * The requests of a burst reach the server over a few milliseconds (a client writes them one by
 * one). The scheduler already waits for the ones it knows are on their way (see
 * `SchedulerOptions.requestsOnTheWay`), but one whose first bytes have not arrived yet misses the
 * first step and waits for all of it. On a CPU that is a whole prompt step of the others, tens to
 * hundreds of milliseconds. Where requests have been coming in bursts, the first step after an
 * idle spell therefore waits while they keep coming: until none came for a short quiet gap. The
 * wait is bounded by a tenth of what such a step takes.
 *
 * The wait falls on a lone request too, whenever one comes after bursts, so it is only made where
 * each request's share of a burst's first step is long (a CPU: 100 ms for a 37-token prompt on 2
 * cores). On a GPU a burst of 32 such prompts takes 25 ms in all, under a millisecond each, and a
 * lone request's prompt about 4 ms: a wait of 2 ms would add half to its first token, for the sake
 * of stragglers that lose little. Nor is anything waited for where requests come alone.
 *
 * A burst is the requests its first step started and those that came in while it ran (its
 * stragglers, when they missed it). Requests count as bursts while both the running average and
 * the latest burst have at least {@link BURSTY} requests: a lone request after bursts waits once,
 * the next ones do not. (With the average alone, the lone requests that follow a burst of 8 all
 * waited, eight of them before the average fell: 2 ms more before each first token.)
 *
 * The durations follow the latest first step closely: their running averages count for no more
 * than the latest observation. The first steps after a model loads are slow (80 ms for a prompt
 * step that later takes 8 on the H200 machine), and a plain average of them kept a GPU waiting
 * for stragglers through a whole benchmark: 3 ms more before every burst's first token, and 2 to
 * 4 ms more for lone requests after a burst.
 *
 * @module
 */

/** A gap this long with no new request ends a burst (ms). */
export const BURST_QUIET_MS = 2;

/** The wait for stragglers is at most this share of the first step's usual duration. */
const SHARE_OF_STEP = 0.1;

/**
 * A request's share of a burst's first step (ms) from which waiting for stragglers is worth it.
 */
const WORTH_WAITING_MS = 20;

/** Requests of a burst, averaged and latest, from which requests count as bursts. */
const BURSTY = 1.5;

/** Requests of a burst from which, on a GPU, its majority starts without the rest. */
const SPLIT_BURST = 8;

/** Weight of the newest observation in the running averages. */
const WEIGHT = 0.3;

/** A running average of observations, and the same capped at the latest one. */
class Recent {
  #average: number | undefined;
  #latest = 0;

  add(value: number): void {
    this.#average = this.#average === undefined
      ? value
      : this.#average + WEIGHT * (value - this.#average);
    this.#latest = value;
  }

  /** The smaller of the running average and the latest value; `none` before any value. */
  capped(none: number): number {
    return this.#average === undefined ? none : Math.min(this.#average, this.#latest);
  }
}

/** What the first steps after idle spells were like, and the wait for stragglers they allow. */
export class BurstLinger {
  readonly #windowMs: number;
  readonly #requests = new Recent();
  readonly #stepMs = new Recent();
  readonly #stepMsPerRequest = new Recent();

  /** @param windowMs The longest the whole wait may take (the scheduler's arrival window). */
  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  /**
   * Records the first step after an idle spell.
   *
   * @param requests Requests it started.
   * @param stepMs How long it took.
   * @param latecomers Requests that came in while it ran.
   */
  observe(requests: number, stepMs: number, latecomers = 0): void {
    this.#requests.add(requests + latecomers);
    this.#stepMs.add(stepMs);
    this.#stepMsPerRequest.add(stepMs / Math.max(1, requests));
  }

  /** Whether requests have been coming in bursts: the running average and the latest burst. */
  bursty(): boolean {
    return this.#requests.capped(1) >= BURSTY;
  }

  /**
   * The longest gap to wait for another request before the first step after an idle spell: 0
   * when requests have come alone, or each one's share of such a step is short.
   */
  quietMs(): number {
    if (!this.bursty()) return 0;
    if (this.#stepMsPerRequest.capped(0) < WORTH_WAITING_MS) return 0;
    return Math.min(BURST_QUIET_MS, this.limitMs());
  }

  /**
   * On a GPU, how many requests of a burst the first step after an idle spell waits for: a
   * majority of the usual burst, where bursts are of {@link SPLIT_BURST} requests or more. The
   * event loop reads, parses and tokenizes a burst's requests one after another (0.4 ms each on
   * the H200 machine: 13 ms for 32), while the GPU would idle; started with a majority, the first
   * step computes while the loop reads the rest, which go in the next step. The median request
   * has its first token after the first step (a majority, as in the CPU's two steps; see
   * `firstGroupSize`). Alternating with every request waited for, four pairs of serve_bench runs
   * on the H200 machine: bursts of 32 had their median first token after 41.1–42.1 and 33.4–33.9
   * ms against 44.0–45.3 and 36.5–37.4 (runs with a level of 8 streams before it, then without);
   * bursts of 8 were unchanged (11.7–12.5 against 11.9–12.3 ms).
   *
   * @returns Infinity where every request on its way is waited for.
   */
  majorityOfBurst(): number {
    const burst = Math.round(this.#requests.capped(0));
    return burst >= SPLIT_BURST ? Math.floor(burst / 2) + 1 : Infinity;
  }

  /** The longest the whole wait may take: a share of the usual first step, within the window. */
  limitMs(): number {
    return Math.min(this.#windowMs, SHARE_OF_STEP * this.#stepMs.capped(0));
  }
}
