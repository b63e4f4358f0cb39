/**
 * Model load progress on stderr: a live percentage on a terminal, nothing when piped or when
 * the command prints JSON.
 *
 * @module
 */

import { basename } from "node:path";

/** A progress printer for one model load. */
export interface ProgressPrinter {
  /** Reports progress in [0, 1]. */
  update: (fraction: number) => void;
  /** Ends the line. */
  done: () => void;
}

/**
 * Creates a progress printer.
 *
 * @param path The model being loaded.
 * @param quiet Print nothing. Default false.
 * @returns The printer.
 */
export function loadProgressPrinter(path: string, quiet = false): ProgressPrinter {
  const live = !quiet && Deno.stderr.isTerminal();
  const encoder = new TextEncoder();
  let last = -1;
  return {
    update(fraction) {
      const percent = Math.floor(fraction * 100);
      if (!live || percent === last) return;
      last = percent;
      Deno.stderr.writeSync(encoder.encode(`\rLoading ${basename(path)}… ${percent}%`));
    },
    done() {
      if (live && last >= 0) Deno.stderr.writeSync(encoder.encode("\n"));
    },
  };
}
