/**
 * How many physical cores the process may run on. With simultaneous multithreading a core shows
 * as two or more CPUs that share its execution units; a decode, bound by memory, gains nothing
 * from a second thread on the same core and pays for the extra thread at every barrier, so
 * llama.cpp's tools default to one thread per physical core, and so does Shimmy.
 *
 * @module
 */

import { allowedCpus } from "./core_pinning.ts";

/**
 * The physical cores among some CPUs: how many distinct groups of siblings (CPUs of one core)
 * they fall into.
 *
 * @param cpus The CPUs (numbers as Linux names them).
 * @param siblingsOf A CPU's siblings as sysfs gives them
 *   (`/sys/devices/system/cpu/cpuN/topology/thread_siblings_list`, e.g. `"0,8"` or `"0-1"`), or
 *   undefined when unknown.
 * @returns The count, or undefined when any CPU's siblings are unknown.
 * @example
 * ```ts
 * const siblings = (cpu: number) => `${cpu % 4},${(cpu % 4) + 4}`; // 4 cores, 2 threads each
 * physicalCoresOf([0, 1, 2, 3, 4, 5, 6, 7], siblings); // 4
 * physicalCoresOf([0, 4], siblings); // 1
 * ```
 */
export function physicalCoresOf(
  cpus: readonly number[],
  siblingsOf: (cpu: number) => string | undefined,
): number | undefined {
  const groups = new Set<string>();
  for (const cpu of cpus) {
    const siblings = siblingsOf(cpu)?.trim();
    if (!siblings) return undefined;
    groups.add(siblings);
  }
  return groups.size > 0 ? groups.size : undefined;
}

/**
 * The physical cores this process may run on: on Linux from its CPU affinity and sysfs'
 * topology; elsewhere, or when those cannot be read, every CPU Deno reports
 * (`navigator.hardwareConcurrency`).
 *
 * @returns At least 1.
 */
export function physicalCores(): number {
  const logical = Math.max(1, navigator.hardwareConcurrency || 1);
  if (Deno.build.os !== "linux") return logical;
  try {
    const cpus = allowedCpus(Deno.readTextFileSync("/proc/self/status"));
    if (cpus === undefined) return logical;
    const cores = physicalCoresOf(
      cpus,
      (cpu) =>
        Deno.readTextFileSync(`/sys/devices/system/cpu/cpu${cpu}/topology/thread_siblings_list`),
    );
    return cores === undefined ? logical : Math.min(cores, logical);
  } catch {
    return logical;
  }
}
