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
 * wait is bounded by a tenth of what such a step takes. Where those steps are short (a model on a
 * GPU: a few milliseconds), a late request loses little and such a wait would cost a lone request
 * a good share of its first token, so nothing waits; nor where requests come alone.
 *
 * @module
 */

/** A gap this long with no new request ends a burst (ms). */
export const BURST_QUIET_MS = 2;

/** The wait for stragglers is at most this share of the first step's usual duration. */
const SHARE_OF_STEP = 0.1;

/** First steps shorter than this (ms, averaged) are not worth waiting for stragglers. */
const WORTH_WAITING_MS = 20;

/** Requests starting together after an idle spell, averaged, from which requests count as bursts. */
const BURSTY = 1.5;

/** Weight of the newest observation in the running averages. */
const WEIGHT = 0.3;

/** Running averages of how steps after an idle spell start, and the wait they allow. */
export class BurstLinger {
  readonly #windowMs: number;
  #requests = 1;
  #stepMs = 0;

  /** @param windowMs The longest the whole wait may take (the scheduler's arrival window). */
  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  /**
   * Records the first step after an idle spell.
   *
   * @param requests Requests it started.
   * @param stepMs How long it took.
   */
  observe(requests: number, stepMs: number): void {
    this.#requests += WEIGHT * (requests - this.#requests);
    this.#stepMs = this.#stepMs === 0 ? stepMs : this.#stepMs + WEIGHT * (stepMs - this.#stepMs);
  }

  /**
   * The longest gap to wait for another request before the first step after an idle spell: 0
   * when requests have come alone, or such steps are short.
   */
  quietMs(): number {
    if (this.#requests < BURSTY || this.#stepMs < WORTH_WAITING_MS) return 0;
    return Math.min(BURST_QUIET_MS, this.limitMs());
  }

  /** The longest the whole wait may take: a share of the usual first step, within the window. */
  limitMs(): number {
    return Math.min(this.#windowMs, SHARE_OF_STEP * this.#stepMs);
  }
}
