/**
 * `ModelGate`: decodes share a model, changes to it need it alone. llama.cpp keeps a model's LoRA
 * adapters in a set on the model (`llama_model::loras`): loading an adapter inserts into it, and
 * building a decode graph iterates it, on whichever threads run them. Two loads at once, or a
 * load beside a decode of any of the model's contexts, race on that set (a crash seen in the
 * hot-swap fault test). Decodes enter the gate shared; a change waits for the decodes in flight,
 * holds new ones back, and runs alone.
 *
 * @module
 */

/** Shared entry for decodes, exclusive entry for changes to the model. */
export class ModelGate {
  #shared = 0;
  /** The exclusive work running or waiting, chained so that changes run one at a time. */
  #exclusive: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  /**
   * Enters for a decode. Without a change pending this is synchronous (no event-loop turn on the
   * decode's path); otherwise it waits until the change is done.
   *
   * @returns The function that leaves, or a promise of it.
   */
  enterShared(): (() => void) | Promise<() => void> {
    if (this.#exclusive === undefined) return this.#enter();
    return this.#exclusive.then(() => this.enterShared());
  }

  /**
   * Runs work that reads the model's adapter set (creating a context reserves its graphs) beside
   * decodes, but not beside a change.
   *
   * @param work The work.
   * @returns What `work` returns.
   */
  async shared<T>(work: () => Promise<T>): Promise<T> {
    const entered = this.enterShared();
    const leave = typeof entered === "function" ? entered : await entered;
    try {
      return await work();
    } finally {
      leave();
    }
  }

  /**
   * Runs a change alone: after the decodes in flight leave, with new ones held back until it
   * ends, and after any change asked for before it.
   *
   * @param work The change.
   * @returns What `work` returns.
   * @example
   * ```ts
   * const adapter = await gate.exclusive(() => loadAdapter(path));
   * ```
   */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const previous = this.#exclusive ?? Promise.resolve();
    const run = previous.then(async () => {
      await this.#drain();
      return await work();
    });
    const done = run.then(() => {}, () => {});
    this.#exclusive = done;
    void done.then(() => {
      if (this.#exclusive === done) this.#exclusive = undefined;
    });
    return run;
  }

  /** Decodes in flight. */
  get decodesInFlight(): number {
    return this.#shared;
  }

  #enter(): () => void {
    this.#shared++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      if (--this.#shared === 0) {
        const drained = this.#drained;
        this.#drained = undefined;
        drained?.();
      }
    };
  }

  #drain(): Promise<void> {
    if (this.#shared === 0) return Promise.resolve();
    return new Promise((resolve) => (this.#drained = resolve));
  }
}
