/**
 * Pulls a running server makes (`serve --allow-pull`): one pull per reference however many
 * requests ask for it at once, and the progress of each for `/health`.
 *
 * @module
 */

import { pullModel, type PullOptions, type PullProgress, type PullResult } from "./pull.ts";

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

/** The pulls of one server. */
export class ModelPulls {
  readonly #pending = new Map<string, Promise<PullResult>>();
  readonly #status = new Map<string, PullStatus>();
  readonly #listeners = new Map<string, Set<(progress: PullProgress) => void>>();
  readonly #options: PullOptions;
  readonly #onProgress: ((model: string, progress: PullProgress) => void) | undefined;

  /**
   * @param options Pull options for every pull (cache folder, hub settings).
   * @param onProgress Called with each pull's progress (the console printer).
   */
  constructor(
    options: Omit<PullOptions, "onProgress" | "dryRun"> = {},
    onProgress?: (model: string, progress: PullProgress) => void,
  ) {
    this.#options = options;
    this.#onProgress = onProgress;
  }

  /**
   * Pulls a reference, or joins the pull of it already running.
   *
   * @param reference A hub reference or URL.
   * @param onProgress Called with this pull's progress until it ends (`POST /api/pull`).
   * @returns What was pulled.
   * @throws {PullError} as {@link pullModel} does.
   * @example
   * ```ts
   * const pulls = new ModelPulls();
   * const { path } = await pulls.pull("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF");
   * ```
   */
  pull(reference: string, onProgress?: (progress: PullProgress) => void): Promise<PullResult> {
    const key = reference.toLowerCase();
    let listeners = this.#listeners.get(key);
    if (!listeners) this.#listeners.set(key, listeners = new Set());
    if (onProgress) listeners.add(onProgress);
    let pending = this.#pending.get(key);
    if (!pending) {
      this.#status.set(key, { model: reference, status: "listing" });
      pending = pullModel(reference, {
        ...this.#options,
        onProgress: (progress) => {
          this.#status.set(key, { model: reference, ...progress });
          this.#onProgress?.(reference, progress);
          for (const listener of this.#listeners.get(key) ?? []) listener(progress);
        },
      }).then((result) => {
        this.#status.delete(key);
        return result;
      }, (error) => {
        this.#status.set(key, { model: reference, status: "failed", error: error.message });
        throw error;
      }).finally(() => {
        this.#pending.delete(key);
        this.#listeners.delete(key);
      });
      this.#pending.set(key, pending);
    }
    return pending;
  }

  /** Pulls running or failed, for `/health`. */
  status(): PullStatus[] {
    return [...this.#status.values()];
  }
}
