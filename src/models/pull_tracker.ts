/**
 * Pulls a running server makes (`serve --allow-pull`): one pull per reference however many
 * requests ask for it at once, and the progress of each for `/health`. Every spelling of a
 * reference (`hf.co/o/r`, `o/r/`, `HF.CO/O/R`) is one pull: they would write the same files. A
 * failed pull stays in `/health` for a while, among a bounded number of the latest failures; a
 * request that follows a pull's progress stops following when it ends or its client goes.
 *
 * @module
 */

import { canonicalReference } from "./hf_hub.ts";
import { pullModel, type PullOptions, type PullProgress, type PullResult } from "./pull.ts";
import { RecentMap } from "../util/recent_map.ts";

/** Most failed pulls `/health` shows: the latest. */
export const MAX_FAILED_PULLS = 64;

/** How long `/health` shows a failed pull (ms): an hour. */
export const FAILED_PULL_MS = 60 * 60_000;

/** What `/health` shows of a pull. */
export interface PullStatus {
  /** The reference being pulled. */
  model: string;
  /** Its last progress report's status, or `failed`. */
  status: PullProgress["status"] | "failed";
  /** The file being fetched. */
  file?: string;
  /** Bytes of it on disk. */
  completed?: number;
  /** Its size. */
  total?: number;
  /** Why it failed. */
  error?: string;
}

/** Options of {@link ModelPulls}: those of every pull, and the clock. */
export type ModelPullsOptions = Omit<PullOptions, "onProgress" | "dryRun"> & {
  /** The clock failures age by, in ms. Default `performance.now`. */
  now?: () => number;
};

/** The pulls of one server. */
export class ModelPulls {
  readonly #pending = new Map<string, Promise<PullResult>>();
  /** Pulls under way, by canonical reference. */
  readonly #running = new Map<string, PullStatus>();
  /** The latest failures, by canonical reference. */
  readonly #failed: RecentMap<PullStatus>;
  readonly #followers = new Map<string, Set<(progress: PullProgress) => void>>();
  readonly #options: Omit<PullOptions, "onProgress" | "dryRun">;
  readonly #onProgress: ((model: string, progress: PullProgress) => void) | undefined;

  /**
   * @param options Pull options for every pull (cache folder, hub settings), and the clock.
   * @param onProgress Called with each pull's progress (the console printer).
   */
  constructor(
    options: ModelPullsOptions = {},
    onProgress?: (model: string, progress: PullProgress) => void,
  ) {
    const { now, ...pullOptions } = options;
    this.#options = pullOptions;
    this.#onProgress = onProgress;
    this.#failed = new RecentMap({
      maxEntries: MAX_FAILED_PULLS,
      maxAgeMs: FAILED_PULL_MS,
      ...(now ? { now } : {}),
    });
  }

  /**
   * Pulls a reference, or joins the pull of it already running.
   *
   * @param reference A hub reference or URL.
   * @returns What was pulled.
   * @throws {PullError} as {@link pullModel} does.
   * @example
   * ```ts
   * const pulls = new ModelPulls();
   * const { path } = await pulls.pull("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF");
   * ```
   */
  pull(reference: string): Promise<PullResult> {
    const key = canonicalReference(reference);
    let pending = this.#pending.get(key);
    if (!pending) {
      this.#failed.delete(key); // tried again: this pull's status replaces the failure
      this.#running.set(key, { model: reference, status: "listing" });
      pending = pullModel(reference, {
        ...this.#options,
        onProgress: (progress) => {
          this.#running.set(key, { model: reference, ...progress });
          this.#onProgress?.(reference, progress);
          for (const follower of this.#followers.get(key) ?? []) follower(progress);
        },
      }).catch((error) => {
        this.#failed.set(key, { model: reference, status: "failed", error: error.message });
        throw error;
      }).finally(() => {
        this.#pending.delete(key);
        this.#running.delete(key);
      });
      this.#pending.set(key, pending);
    }
    return pending;
  }

  /**
   * Follows the progress of a reference's pull (`POST /api/pull`), this one or the next, until
   * the returned function is called or `signal` aborts.
   *
   * @param reference A hub reference or URL, in any of its spellings.
   * @param onProgress Called with each progress report.
   * @param signal Stops following when it aborts (the client went away).
   * @returns Stops following; call it once the request is done.
   * @example
   * ```ts
   * const pulls = new ModelPulls();
   * const unfollow = pulls.follow("hf.co/o/r", (p) => console.log(p.status));
   * try {
   *   await pulls.pull("hf.co/o/r");
   * } finally {
   *   unfollow();
   * }
   * ```
   */
  follow(
    reference: string,
    onProgress: (progress: PullProgress) => void,
    signal?: AbortSignal,
  ): () => void {
    const key = canonicalReference(reference);
    let followers = this.#followers.get(key);
    if (!followers) this.#followers.set(key, followers = new Set());
    // A function of its own, so that one function following twice is two followers.
    const follower = (progress: PullProgress) => onProgress(progress);
    followers.add(follower);
    const unfollow = () => {
      signal?.removeEventListener("abort", unfollow);
      followers.delete(follower);
      if (followers.size === 0 && this.#followers.get(key) === followers) {
        this.#followers.delete(key);
      }
    };
    if (signal?.aborted) unfollow();
    else signal?.addEventListener("abort", unfollow, { once: true });
    return unfollow;
  }

  /** Pulls running, then the latest failed, for `/health`. */
  status(): PullStatus[] {
    return [...this.#running.values(), ...this.#failed.values()];
  }
}
