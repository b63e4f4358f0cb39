/**
 * A single-consumer async queue: a producer pushes values, a consumer iterates them with
 * `for await`, and `end()` or `fail()` finishes the iteration.
 *
 * @module
 */

/** Unbounded queue consumed as an async iterable. */
export class AsyncQueue<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #waiter: (() => void) | undefined;
  #done = false;
  #error: unknown;

  /** Adds a value; ignored after `end()`/`fail()`. */
  push(value: T): void {
    if (this.#done) return;
    this.#items.push(value);
    this.#wake();
  }

  /** Finishes the iteration after the queued values. */
  end(): void {
    this.#done = true;
    this.#wake();
  }

  /** Finishes the iteration with an error after the queued values. */
  fail(error: unknown): void {
    if (this.#done) return;
    this.#error = error ?? new Error("Queue failed");
    this.end();
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    while (true) {
      if (this.#items.length > 0) {
        yield this.#items.shift() as T;
        continue;
      }
      if (this.#done) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
  }
}
