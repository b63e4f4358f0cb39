/**
 * Ending the process at once, as a second Ctrl-C asks: `Deno.exit` runs the C libraries' exit
 * handlers and static destructors (ggml's among them) while ggml's threads may still be computing
 * a step, and one exit in about fifteen crashed there (status 139, a segmentation fault, where
 * 130 was due). The C library's `_exit` (`TerminateProcess` on Windows) runs none of them.
 *
 * @module
 */

import { systemCLibrary } from "./symbol_address.ts";

/**
 * Ends the process now with a status, running no exit handler of any library. Output written
 * before (`console.error`) has reached its file already: Deno writes it synchronously.
 *
 * @param code The exit status.
 * @example
 * ```ts
 * exitNow(130); // a second SIGINT
 * ```
 */
export function exitNow(code: number): never {
  try {
    if (Deno.build.os === "windows") {
      const kernel = Deno.dlopen(
        "kernel32.dll",
        {
          GetCurrentProcess: { parameters: [], result: "pointer" },
          TerminateProcess: { parameters: ["pointer", "u32"], result: "i32" },
        } as const,
      );
      kernel.symbols.TerminateProcess(kernel.symbols.GetCurrentProcess(), code);
    } else {
      const name = systemCLibrary();
      if (name !== undefined) {
        const libc = Deno.dlopen(name, { _exit: { parameters: ["i32"], result: "void" } } as const);
        libc.symbols._exit(code);
      }
    }
  } catch {
    // No C library to call: Deno's own exit below.
  }
  Deno.exit(code);
}
