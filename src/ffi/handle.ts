/**
 * The ownership pattern shared by every native handle class: one owner, `close()` safe to
 * call twice, `[Symbol.dispose]`, a use-after-close check, and a `FinalizationRegistry` only
 * as a backstop for handles nobody closed.
 *
 * A handle names the handles it depends on (a context depends on its model and thread pool,
 * a sampler and a LoRA adapter on their model). Dependents are always freed first: closing a
 * dependency closes its open dependents before freeing itself, and the backstop's free
 * function of a dependent holds its dependencies, so the garbage collector cannot finalize a
 * dependency while a dependent of it is still waiting to be freed.
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
  readonly #free: () => void;
  /** Open handles that depend on this one (weakly held, so they can still be collected). */
  readonly #dependents = new Set<WeakRef<NativeHandle>>();
  readonly #dependencies: readonly NativeHandle[];
  readonly #self = new WeakRef<NativeHandle>(this);

  /**
   * @param kind Name of the handle kind, used in errors and {@link openHandles}.
   * @param pointer The native pointer, now owned by this object.
   * @param free Frees the pointer; called exactly once. It must not reference this object.
   * @param dependsOn Handles that must stay open while this one is (freed after it).
   */
  protected constructor(
    kind: string,
    pointer: Deno.PointerObject,
    free: () => void,
    dependsOn: readonly NativeHandle[] = [],
  ) {
    for (const dependency of dependsOn) dependency.#pointerOrThrow();
    this.#pointer = pointer;
    this.#kind = kind;
    this.#dependencies = dependsOn;
    openHandles[kind] = (openHandles[kind] ?? 0) + 1;
    const held = [...dependsOn];
    this.#free = () => {
      free();
      openHandles[kind] = (openHandles[kind] ?? 1) - 1;
      held.length = 0; // the dependencies may be finalized from now on
    };
    for (const dependency of dependsOn) dependency.#dependents.add(this.#self);
    backstop.register(this, this.#free, this.#token);
  }

  #pointerOrThrow(): Deno.PointerObject {
    if (this.#pointer === null) throw new ClosedHandleError(this.#kind);
    return this.#pointer;
  }

  /** The native pointer; throws once closed. */
  get pointer(): Deno.PointerObject {
    return this.#pointerOrThrow();
  }

  /** Whether {@link close} has run. */
  get closed(): boolean {
    return this.#pointer === null;
  }

  /** How many open handles depend on this one. */
  get dependentCount(): number {
    return [...this.#dependents].filter((ref) => ref.deref()?.closed === false).length;
  }

  /**
   * Frees the native object, after closing every open handle that depends on it. Safe to call
   * more than once.
   */
  close(): void {
    if (this.#pointer === null) return;
    for (const ref of [...this.#dependents]) ref.deref()?.close();
    this.#dependents.clear();
    this.#pointer = null;
    backstop.unregister(this.#token);
    for (const dependency of this.#dependencies) dependency.#dependents.delete(this.#self);
    this.#free();
  }

  /** Same as {@link close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
