/**
 * Per-thread CPU accounting from Linux's `/proc/PID/task/TID/stat`, for the probes that measure
 * where a server's CPU time goes.
 *
 * @module
 */

/** Clock ticks per second of `/proc`'s times (Linux's USER_HZ). */
export const TICKS_PER_SECOND = 100;

/** One thread of a process: its id and name, the CPU it last ran on and its CPU ticks so far. */
export interface ThreadSample {
  tid: string;
  /** The thread's name (`comm`), e.g. `worker-3` for a Web Worker's. */
  name: string;
  cpu: number;
  ticks: number;
}

/**
 * Reads one thread's stat line.
 *
 * @param pid The process.
 * @param tid The thread.
 * @returns Its sample.
 * @throws {Deno.errors.NotFound} when the thread has ended.
 * @example
 * ```ts
 * const main = threadSample(Deno.pid, String(Deno.pid)); // the main thread of this process
 * ```
 */
export function threadSample(pid: number, tid: string): ThreadSample {
  const stat = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/stat`);
  // The command name, which may hold spaces, between "(" and the last ") "; the fields after it.
  const nameEnd = stat.lastIndexOf(") ");
  const fields = stat.slice(nameEnd + 2).split(" ");
  return {
    tid,
    name: stat.slice(stat.indexOf("(") + 1, nameEnd),
    cpu: Number(fields[36]),
    ticks: Number(fields[11]) + Number(fields[12]),
  };
}

/**
 * A thread's CPU time so far in nanoseconds, from `/proc`'s schedstat (precise, where the ticks of
 * {@link threadSample} count in 10 ms steps).
 *
 * @example
 * ```ts
 * const ns = threadCpuNs(Deno.pid, String(Deno.pid)); // the main thread's
 * ```
 */
export function threadCpuNs(pid: number, tid: string): number {
  const text = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/schedstat`);
  return Number(text.split(" ")[0]);
}

/**
 * Every thread of a process.
 *
 * @param pid The process.
 * @returns One sample per thread still running.
 * @example
 * ```ts
 * const busiest = threadsOf(pid).sort((a, b) => b.ticks - a.ticks)[0];
 * ```
 */
export function threadsOf(pid: number): ThreadSample[] {
  const out: ThreadSample[] = [];
  for (const entry of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      out.push(threadSample(pid, entry.name));
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}
