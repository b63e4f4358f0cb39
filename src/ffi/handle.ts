/**
 * The ownership pattern shared by every native handle class: one owner, `close()` safe to
 * call twice, `[Symbol.dispose]`, a use-after-close check, and a `FinalizationRegistry` only
 * as a backstop for handles nobody closed.
 *
 * @module
 */

import { ClosedHandleError } from "./errors.ts";

const backstop = new FinalizationRegistry<() => void>((free) => free());

/** Counts of native handles currently open, by kind (tests check these return to zero). */
export const openHandles: Record<string, number> = {};

/** The kinds with open handles and their counts (zero counts left out). */
export function liveHandles(): Record<string, number> {
  return Object.fromEntries(Object.entries(openHandles).filter(([, n]) => n !== 0));
}

/** Base class for an owned native pointer. */
export abstract class NativeHandle {
  #pointer: Deno.PointerObject | null;
  readonly #kind: string;
  readonly #token = {};

  /**
   * @param kind Name of the handle kind, used in errors and {@link openHandles}.
   * @param pointer The native pointer, now owned by this object.
   * @param free Frees the pointer; called exactly once.
   */
  protected constructor(kind: string, pointer: Deno.PointerObject, free: () => void) {
    this.#pointer = pointer;
    this.#kind = kind;
    openHandles[kind] = (openHandles[kind] ?? 0) + 1;
    this.#free = () => {
      free();
      openHandles[kind] = (openHandles[kind] ?? 1) - 1;
    };
    backstop.register(this, this.#free, this.#token);
  }

  readonly #free: () => void;

  /** The native pointer; throws once closed. */
  get pointer(): Deno.PointerObject {
    if (this.#pointer === null) throw new ClosedHandleError(this.#kind);
    return this.#pointer;
  }

  /** Whether {@link close} has run. */
  get closed(): boolean {
    return this.#pointer === null;
  }

  /** Frees the native object. Safe to call more than once. */
  close(): void {
    if (this.#pointer === null) return;
    this.#pointer = null;
    backstop.unregister(this.#token);
    this.#free();
  }

  /** Same as {@link close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
