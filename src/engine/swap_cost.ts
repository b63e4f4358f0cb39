/**
 * Whether keeping a slot's cache by exchanging it with another slot's is worth the time. With a
 * KV stream per slot, two caches change places through host memory (`Context.swapSequences`:
 * both serialized, then written back), on the event loop, while every request of the step waits:
 * on the 2-core CPU machine 1 ms for two 40-token caches of bench-125m with 8 slots, 5 ms with 32
 * slots, 12 ms inside `bench/serve_bench.ts`, where the requests of one burst made seven of them
 * in a row before their first step (bench/README.md, "Caches exchanged only where they pay").
 *
 * What an exchange spares is the prompt tokens of the kept cache, evaluated again if its
 * conversation comes back. So an exchange is made where evaluating those tokens again would take
 * longer than the exchange costs everyone waiting for it together: a long conversation on a CPU
 * (1 ms a token there for bench-125m), rarely a short one while many requests wait, and hardly
 * ever on a GPU, which evaluates a prompt token in hundredths of a millisecond.
 *
 * @module
 */

/**
 * What an exchange costs per byte of the two states until one has been timed: 1 ms a MiB, about
 * the cheapest measured (two 40-token caches with 8 slots on the CPU). An estimate on the cheap
 * side lets the first exchanges be made and timed; the running average then takes over.
 */
const PRIOR_MS_PER_BYTE = 1 / (1024 * 1024);
/** Weight of the newest observation in the running average. */
const SMOOTHING = 0.3;
/**
 * The most host memory an exchange may take for the two states: an exchange holds both in
 * JavaScript buffers at once, so two long conversations of a large model (an 8B model's 20,000
 * tokens take 2.5 GB each) must not exhaust the machine's memory for the sake of a cache.
 */
const MAX_SWAP_BYTES = 1024 * 1024 * 1024;
/** The share of the memory available now that an exchange may take at most. */
const SHARE_OF_AVAILABLE = 0.25;

/** Learns what exchanging caches costs and bounds the exchanges worth making. */
export class CacheSwapCost {
  #msPerByte = PRIOR_MS_PER_BYTE;

  /**
   * Records an exchange.
   *
   * @param bytes The two states' bytes together.
   * @param ms How long it took.
   */
  observe(bytes: number, ms: number): void {
    if (bytes <= 0) return;
    this.#msPerByte += SMOOTHING * (ms / bytes - this.#msPerByte);
  }

  /**
   * The most bytes two states may take together for their exchange to be worth it.
   *
   * @param keptTokens Tokens of the cache the exchange keeps.
   * @param msPerPromptToken What evaluating a prompt token costs (the prefill budget's estimate).
   * @param waiting Requests that wait for the exchange (those starting and those generating).
   * @returns A byte bound; 0 where nothing is worth exchanging.
   * @example
   * ```ts
   * const cost = new CacheSwapCost();
   * cost.maxBytes(500, 1, 2); // 250 MiB: 500 ms of prompt, 1 ms a MiB for each of two waiting
   * ```
   */
  maxBytes(keptTokens: number, msPerPromptToken: number, waiting: number): number {
    const sparedMs = keptTokens * msPerPromptToken;
    return sparedMs / (Math.max(1, waiting) * this.#msPerByte);
  }
}

/** How long a reading of the available memory stands before it is read again (ms). */
const MEMORY_READING_MS = 1_000;

/**
 * The machine's available memory, read at most once a second: the scheduler considers an
 * exchange for every request that overwrites a cache, most of them not worth making, and read
 * `/proc/meminfo` for each (0.2% of the event loop in a profile of bursts on the tiny model).
 */
export class AvailableMemory {
  readonly #read: () => number;
  #bytes = 0;
  #readAt = -Infinity;

  /** @param read Reads the available bytes now (default `Deno.systemMemoryInfo().available`). */
  constructor(read: () => number = () => Deno.systemMemoryInfo().available) {
    this.#read = read;
  }

  /**
   * The available bytes as last read, read again when that was over a second ago.
   *
   * @param now The time now (`performance.now()`).
   * @returns Bytes.
   */
  bytes(now: number = performance.now()): number {
    if (now - this.#readAt >= MEMORY_READING_MS) {
      this.#bytes = this.#read();
      this.#readAt = now;
    }
    return this.#bytes;
  }
}

/**
 * The most bytes two states may take together for an exchange, whatever it is worth: a quarter
 * of the memory available now, and at most 1 GiB.
 *
 * @param availableBytes Memory available now (see {@link AvailableMemory}).
 * @returns A byte bound.
 * @example
 * ```ts
 * swapMemoryBound(2 * 1024 ** 3); // 512 MiB
 * ```
 */
export function swapMemoryBound(availableBytes: number): number {
  return Math.min(MAX_SWAP_BYTES, SHARE_OF_AVAILABLE * availableBytes);
}
