/**
 * The address of a function exported by a library that is already loaded. `Deno.dlopen` binds
 * functions to call, but some llama.cpp APIs take a C function pointer; for those this asks the
 * platform's loader (`dlsym` on Linux and macOS, `GetProcAddress` on Windows).
 *
 * @module
 */

import { cString } from "./cstring.ts";

const LOADERS = {
  linux: { library: "libc.so.6", fallback: "libdl.so.2", noLoad: 0x4 },
  darwin: { library: "/usr/lib/libSystem.B.dylib", fallback: undefined, noLoad: 0x10 },
} as const;

/**
 * The platform's C library (glibc's `libc.so.6` on Linux, `libSystem` on macOS), for calls Deno
 * has no API for; undefined on Windows, where such calls live in `kernel32.dll`.
 */
export function systemCLibrary(): string | undefined {
  return LOADERS[Deno.build.os as keyof typeof LOADERS]?.library;
}
const RTLD_LAZY = 0x1;

/**
 * Finds an exported function of a loaded library.
 *
 * @param libraryPath The path the library was opened with (`Deno.dlopen`).
 * @param symbol The exported name.
 * @returns Its address, or null when the library is not loaded, the name is not exported, or
 *   the platform's loader cannot be reached.
 * @example
 * ```ts
 * const address = exportedFunction("/opt/shimmy/lib/libggml-base.so", "ggml_time_us");
 * ```
 */
export function exportedFunction(libraryPath: string, symbol: string): Deno.PointerValue {
  try {
    return Deno.build.os === "windows"
      ? windowsProcAddress(libraryPath, symbol)
      : posixSymbol(libraryPath, symbol);
  } catch {
    return null;
  }
}

function posixSymbol(libraryPath: string, symbol: string): Deno.PointerValue {
  const loader = LOADERS[Deno.build.os as keyof typeof LOADERS];
  if (!loader) return null;
  const interfaceOf = {
    dlopen: { parameters: ["buffer", "i32"], result: "pointer" },
    dlsym: { parameters: ["pointer", "buffer"], result: "pointer" },
    dlclose: { parameters: ["pointer"], result: "i32" },
  } as const;
  let dl: Deno.DynamicLibrary<typeof interfaceOf>;
  try {
    dl = Deno.dlopen(loader.library, interfaceOf);
  } catch (error) {
    if (!loader.fallback) throw error;
    dl = Deno.dlopen(loader.fallback, interfaceOf); // glibc before 2.34
  }
  try {
    // RTLD_NOLOAD: only find the copy already loaded, never load a second one.
    const handle = dl.symbols.dlopen(cString(libraryPath), RTLD_LAZY | loader.noLoad);
    if (handle === null) return null;
    const address = dl.symbols.dlsym(handle, cString(symbol));
    dl.symbols.dlclose(handle); // the library stays loaded by its own handle
    return address;
  } finally {
    dl.close();
  }
}

function windowsProcAddress(libraryPath: string, symbol: string): Deno.PointerValue {
  const kernel32 = Deno.dlopen(
    "kernel32.dll",
    {
      GetModuleHandleW: { parameters: ["buffer"], result: "pointer" },
      GetProcAddress: { parameters: ["pointer", "buffer"], result: "pointer" },
    } as const,
  );
  try {
    const wide = new Uint16Array(libraryPath.length + 1);
    for (let i = 0; i < libraryPath.length; i++) wide[i] = libraryPath.charCodeAt(i);
    const module = kernel32.symbols.GetModuleHandleW(new Uint8Array(wide.buffer));
    if (module === null) return null;
    return kernel32.symbols.GetProcAddress(module, cString(symbol));
  } finally {
    kernel32.close();
  }
}
