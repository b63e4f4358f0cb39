/**
 * `ModelReplicas`: N independent copies of one model (`--replicas`, or the planner's choice
 * of a copy per GPU), each a {@link LoadedModel} with its own context, scheduler and slots.
 * A user takes one copy with {@link ModelReplicas.pick}, which hands out the least-loaded copy
 * (its busy slots plus queue, or the picks not yet released when more: a request counts from
 * lookup on, before its prompt is queued) and holds it until released. Settings that belong
 * to the model rather than a copy (attached LoRA adapters) go to every copy; a group of one
 * copy behaves as the copy alone. On GPUs the copies sit one per GPU (split mode `none`); on
 * the CPU they share the cores, which is how the routing is tested with tiny models.
 *
 * @module
 */

import { Llama } from "../ffi/llama.ts";
import { LoadedModel, type OpenModelOptions, planCopies } from "./loaded_model.ts";
import type { MultiGpuPlan } from "./multi_gpu_plan.ts";

/** How to open a model's copies. */
export interface ReplicaOpenOptions extends OpenModelOptions {
  /** Copies (`--replicas`). Default: the planner's choice (1 unless GPUs and demand call for more). */
  replicas?: number;
}

/** One copy as `/metrics` and `/api/ps` show it. */
export interface ReplicaInfo {
  /** Position of the copy in its group. */
  index: number;
  /** Devices it runs on (`CPU`, or GPU names). */
  devices: string[];
  /** Its slots. */
  slots: number;
  /** Slots generating or reading a prompt. */
  busySlots: number;
  /** Requests waiting for one of its slots. */
  queued: number;
  /** Users holding it now (requests from lookup to their end). */
  holders: number;
}

/** A copy handed to one user. */
export interface PickedCopy {
  /** The copy. */
  model: LoadedModel;
  /** Its position in the group. */
  index: number;
  /** Gives it back; calling twice is harmless. */
  release(): void;
}

/** N copies of one model, routed least-loaded first. */
export class ModelReplicas {
  /** The copies, in placement order. */
  readonly copies: readonly LoadedModel[];
  /** The plan that placed them. */
  readonly plan: MultiGpuPlan;
  readonly #holders: number[];

  /**
   * Groups copies already open (tests, and {@link ModelReplicas.open}).
   *
   * @param copies At least one copy of the same model.
   * @param plan The plan that placed them.
   */
  constructor(copies: readonly LoadedModel[], plan: MultiGpuPlan) {
    if (copies.length === 0) throw new RangeError("ModelReplicas needs at least one copy");
    this.copies = copies;
    this.plan = plan;
    this.#holders = copies.map(() => 0);
  }

  /**
   * Plans and opens the copies of a model; a copy that fails to open closes those before it.
   *
   * @param options As for `LoadedModel.open`, plus `replicas`.
   * @returns The group; the caller closes it.
   * @throws {SplitPlanError} / {ModelLoadError} / {ContextCreateError}
   * @example
   * ```ts
   * await using group = await ModelReplicas.open({ path: "model.gguf", replicas: 2 });
   * using picked = group.pick();
   * ```
   */
  static async open(options: ReplicaOpenOptions): Promise<ModelReplicas> {
    const llama = Llama.open({
      gpuBackend: options.gpuBackend ?? "auto",
      verbose: options.verbose ?? false,
    });
    const { plan } = await planCopies(llama, options, options.replicas);
    const copies: LoadedModel[] = [];
    const n = plan.copies.length;
    try {
      for (const [i, copy] of plan.copies.entries()) {
        const onProgress = options.onProgress;
        copies.push(
          await LoadedModel.open({
            ...options,
            placement: { plan, copy },
            ...(onProgress ? { onProgress: (f: number) => onProgress((i + f) / n) } : {}),
          }),
        );
      }
    } catch (error) {
      await Promise.all(copies.map((c) => c.close()));
      throw error;
    }
    return new ModelReplicas(copies, plan);
  }

  /** The first copy: what is the same for every copy (vocabulary, metadata) is read here. */
  get primary(): LoadedModel {
    return this.copies[0] as LoadedModel;
  }

  /**
   * Takes the least-loaded copy (first on ties) and holds it until released.
   *
   * @returns The copy and its release.
   * @example
   * ```ts
   * const picked = group.pick();
   * try {
   *   picked.model.scheduler.submit({ prompt: [1, 2, 3] });
   * } finally {
   *   picked.release();
   * }
   * ```
   */
  pick(): PickedCopy & Disposable {
    let best = 0;
    for (let i = 1; i < this.copies.length; i++) {
      if (this.#load(i) < this.#load(best)) best = i;
    }
    this.#holders[best] = (this.#holders[best] ?? 0) + 1;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.#holders[best] = (this.#holders[best] ?? 1) - 1;
    };
    return {
      model: this.copies[best] as LoadedModel,
      index: best,
      release,
      [Symbol.dispose]: release,
    };
  }

  #load(i: number): number {
    const stats = (this.copies[i] as LoadedModel).scheduler.stats();
    return Math.max(stats.busySlots + stats.queued, this.#holders[i] ?? 0);
  }

  /** Each copy's slots, load and devices. */
  replicaInfo(): ReplicaInfo[] {
    return this.copies.map((copy, index) => {
      const stats = copy.scheduler.stats();
      return {
        index,
        devices: copy.deviceNames,
        slots: stats.slots,
        busySlots: stats.busySlots,
        queued: stats.queued,
        holders: this.#holders[index] ?? 0,
      };
    });
  }

  /** Slots, busy slots, queue and decode steps summed over the copies. */
  stats(): { slots: number; busySlots: number; queued: number; steps: number } {
    const out = { slots: 0, busySlots: 0, queued: 0, steps: 0 };
    for (const copy of this.copies) {
      const stats = copy.scheduler.stats();
      out.slots += stats.slots;
      out.busySlots += stats.busySlots;
      out.queued += stats.queued;
      out.steps += stats.steps;
    }
    return out;
  }

  /** Whether no copy has busy slots or a queue. */
  idle(): boolean {
    const stats = this.stats();
    return stats.busySlots === 0 && stats.queued === 0;
  }

  /**
   * Replaces the adapters attached on every copy (see `LoadedModel.setLora`).
   *
   * @param set Paths and scales; [] detaches all.
   */
  async setLora(set: readonly { path: string; scale: number }[]): Promise<void> {
    for (const copy of this.copies) await copy.setLora(set);
  }

  /** The attached adapters (the same on every copy). */
  lora(): { path: string; scale: number }[] {
    return this.primary.lora();
  }

  /** Stops every copy's scheduler (cancelling its generations); frees nothing yet. */
  async stopSchedulers(): Promise<void> {
    await Promise.all(this.copies.map((c) => c.scheduler.close()));
  }

  /** Closes every copy. Safe to call twice. */
  async close(): Promise<void> {
    await Promise.all(this.copies.map((c) => c.close()));
  }

  /** Same as {@link close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
