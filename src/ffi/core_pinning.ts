/**
 * Which cores a ggml thread pool pins its threads to, on Linux, when it has a thread per core.
 * Each decode is called from whichever thread of Deno's blocking pool is free (three of them
 * took turns in a 1-stream run on 2 cores), so the kernel kept placing that thread on the core
 * of the pool's other thread: in those stretches both shared one core and a stream decoded at
 * 125–185 tok/s instead of 220–250 (bench-125m, `bench/results/cpu-2core-2026-12-02c/`). Pinned,
 * every run stayed at 218–234.
 *
 * @module
 */

/**
 * The CPUs a process may run on, from the `Cpus_allowed_list` line of `/proc/self/status`.
 *
 * @param status The text of `/proc/self/status`.
 * @returns The CPU numbers in order, or undefined when the line is missing or malformed.
 * @example
 * ```ts
 * allowedCpus("Cpus_allowed_list:\t0-2,5\n"); // [0, 1, 2, 5]
 * ```
 */
export function allowedCpus(status: string): number[] | undefined {
  const line = /^Cpus_allowed_list:\s*(\S+)\s*$/m.exec(status)?.[1];
  if (line === undefined) return undefined;
  const cpus: number[] = [];
  for (const range of line.split(",")) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(range);
    if (!match) return undefined;
    const first = Number(match[1]);
    const last = Number(match[2] ?? match[1]);
    for (let cpu = first; cpu <= last; cpu++) cpus.push(cpu);
  }
  return cpus.length > 0 ? cpus : undefined;
}

/**
 * The file mapped at an address of this process, from the text of `/proc/self/maps`: which
 * shared library holds a function.
 *
 * @param address The address.
 * @param maps The text of `/proc/self/maps`.
 * @returns The file's path, or undefined when nothing file-backed is mapped there.
 * @example
 * ```ts
 * mappedFile(0x7f00_0000_1000n, "7f0000000000-7f0000002000 r-xp 00000000 08:01 42 /lib/x.so\n");
 * // "/lib/x.so"
 * ```
 */
export function mappedFile(address: bigint, maps: string): string | undefined {
  for (const line of maps.split("\n")) {
    const match = /^([0-9a-f]+)-([0-9a-f]+)\s+\S+\s+\S+\s+\S+\s+\d+\s+(\/.*)$/.exec(line);
    if (!match) continue;
    const start = BigInt(`0x${match[1]}`);
    const end = BigInt(`0x${match[2]}`);
    if (address >= start && address < end) return match[3];
  }
  return undefined;
}

/**
 * The CPUs to pin a pool of `threads` threads to: on Linux, when it has exactly one thread per
 * CPU the process may use (more than one). Elsewhere, or with cores to spare, the kernel places
 * the threads itself.
 *
 * @param threads Threads in the pool.
 * @param os The operating system (`Deno.build.os`).
 * @param readStatus Reads `/proc/self/status`.
 * @returns The CPUs, one per thread, or undefined for no pinning.
 * @example
 * ```ts
 * pinningCpus(2, "linux", () => "Cpus_allowed_list:\t0-1\n"); // [0, 1]
 * pinningCpus(2, "linux", () => "Cpus_allowed_list:\t0-15\n"); // undefined
 * ```
 */
export function pinningCpus(
  threads: number,
  os: string = Deno.build.os,
  readStatus: () => string = () => Deno.readTextFileSync("/proc/self/status"),
): number[] | undefined {
  if (os !== "linux" || threads < 2) return undefined;
  let cpus: number[] | undefined;
  try {
    cpus = allowedCpus(readStatus());
  } catch {
    return undefined;
  }
  return cpus?.length === threads ? cpus : undefined;
}
