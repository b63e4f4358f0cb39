/**
 * Sampler chains of ended requests, kept for later requests with the same settings. Building a
 * chain takes several native calls, and a lone request waits for them before its prompt starts
 * (50–70 µs of its way in, measured on the 2-core CPU and the H200 machine), while a request
 * with the settings of the last one (the usual case: one client, one set of settings) can take
 * that chain back after one `llama_sampler_reset`.
 *
 * Reset gives a chain the state a new one has: penalties forget their tokens, a grammar starts
 * over, and a draw with a fixed seed starts its sequence again. A chain is kept only when that
 * makes it the same as a new chain built from the request's stages: never for a random draw that
 * the request did not seed (its stages carry a seed drawn for that request alone, which the next
 * request must not repeat), nor for a grammar (compiled on a worker thread, and large) or a
 * logit bias (its map has no key here), nor once it ran on a device.
 *
 * @module
 */

import { Sampler, type SamplerStage } from "../ffi/sampler.ts";
import type { Model } from "../ffi/model.ts";

/** Spare chains by their stages, the oldest dropped first once there are `limit`. */
export class SpareChains {
  readonly #model: Model;
  readonly #limit: number;
  /** Insertion order is age order: the first key holds the oldest chain. */
  readonly #byKey = new Map<string, Sampler[]>();
  #count = 0;

  /**
   * @param model The model the chains sample for.
   * @param limit Most chains kept (the scheduler's slot count: that many run at once).
   */
  constructor(model: Model, limit: number) {
    this.#model = model;
    this.#limit = limit;
  }

  /** Chains kept now. */
  get size(): number {
    return this.#count;
  }

  /**
   * A chain for `stages`: a kept one, reset, or a new one.
   *
   * @param stages The request's stages.
   * @param seeded Whether the request fixed the seed of its draws.
   * @returns The chain; the caller owns it until it gives it to {@link keep}.
   * @throws {SamplerStageError} when llama.cpp rejects a stage of a new chain.
   */
  take(stages: SamplerStage[], seeded: boolean): Sampler {
    const key = chainKey(stages, seeded);
    const kept = key === undefined ? undefined : this.#byKey.get(key);
    let sampler: Sampler | undefined;
    while (kept && kept.length > 0 && !sampler) {
      sampler = kept.pop() as Sampler;
      this.#count--;
      // Closed by a request that failed after handing it over: dropped.
      if (sampler.closed) sampler = undefined;
    }
    if (kept?.length === 0) this.#byKey.delete(key as string);
    if (!sampler) return Sampler.chain(this.#model, stages);
    sampler.reset();
    return sampler;
  }

  /**
   * Takes a chain whose request ended: kept if a later request can use it, else freed.
   *
   * @param sampler A chain the caller owns; it must not be used afterwards.
   * @param seeded Whether its request fixed the seed of its draws.
   */
  keep(sampler: Sampler, seeded: boolean): void {
    if (sampler.closed) return;
    const key = sampler.claimedForDevice ? undefined : chainKey(sampler.stages, seeded);
    if (key === undefined || this.#limit === 0) return sampler.close();
    if (this.#count >= this.#limit) this.#dropOldest();
    const kept = this.#byKey.get(key) ?? [];
    kept.push(sampler);
    // Re-inserted, so that the key moves to the back of the age order.
    this.#byKey.delete(key);
    this.#byKey.set(key, kept);
    this.#count++;
  }

  /** Frees every kept chain. */
  close(): void {
    for (const chains of this.#byKey.values()) for (const sampler of chains) sampler.close();
    this.#byKey.clear();
    this.#count = 0;
  }

  #dropOldest(): void {
    const [key, chains] = this.#byKey.entries().next().value as [string, Sampler[]];
    (chains.shift() as Sampler).close();
    this.#count--;
    if (chains.length === 0) this.#byKey.delete(key);
  }
}

/**
 * What makes a reset chain the same as a new one built from `stages`, or undefined when none is
 * (see the module's description).
 */
function chainKey(stages: readonly SamplerStage[], seeded: boolean): string | undefined {
  for (const stage of stages) {
    if (stage.type === "grammar" || stage.type === "logit_bias") return undefined;
    if ("seed" in stage && !seeded) return undefined;
  }
  return JSON.stringify(stages);
}
