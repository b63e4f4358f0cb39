/**
 * Finds and opens the native libraries (libllama, libggml, libggml-base) for this platform.
 *
 * Resolution order, first match wins:
 * 1. `SHIMMY_LIB_DIR` (or the `libDir` option): a folder holding libllama and the ggml libraries.
 * 2. `lib/<flavour>` beside the application: the repository root when run from a checkout,
 *    the embedded file system of the compiled executable. `dlopen` needs real files, so an
 *    embedded folder is first copied to the per-user cache (`src/ffi/extract.ts`).
 * 3. `lib/<flavour>` beside the running executable (`Deno.execPath()`).
 *
 * A flavour is `<os>-<arch>[-<gpu>]`, named like node-llama-cpp's prebuilt packages
 * (`linux-x64`, `linux-x64-cuda`, `mac-arm64-metal`, `win-x64-vulkan`…). With the `auto` GPU
 * backend, GPU flavours are tried before the plain one: their folders also carry the CPU backend.
 * Both file naming schemes work: `libllama.so` (source builds) and `libllama.v0.5.0.so`
 * (prebuilt packages), likewise `.dylib` and `.dll`.
 *
 * @module
 */

import { basename, dirname, isAbsolute, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { extractEmbeddedLibraries } from "./extract.ts";
import { GGML_BASE_SYMBOLS, GGML_SYMBOLS, LLAMA_SYMBOLS } from "./symbols.ts";

/** GPU backends a user can ask for. */
export type GpuBackend = "auto" | "cpu" | "cuda" | "vulkan" | "metal";

/** Every accepted `--gpu-backend` value. */
export const GPU_BACKENDS: readonly GpuBackend[] = ["auto", "cpu", "cuda", "vulkan", "metal"];

/** Raised when no folder holds a loadable libllama. */
export class LibraryNotFoundError extends Error {
  /** Every path that was tried, in order, with why it was rejected. */
  readonly tried: readonly string[];

  /**
   * @param tried Paths tried and their reasons.
   * @param cause The last underlying error, if any.
   */
  constructor(tried: readonly string[], cause?: unknown) {
    super(
      [
        "Cannot find the llama.cpp native libraries (libllama). Tried:",
        ...tried.map((line) => `  - ${line}`),
        "Fix: run `deno task setup` (downloads the prebuilt libraries), or build them with",
        "`scripts/build-libllama.sh`, or point SHIMMY_LIB_DIR at a folder that holds libllama",
      ].join("\n"),
      { cause },
    );
    this.name = "LibraryNotFoundError";
    this.tried = tried;
  }
}

/** The opened native libraries. */
export interface NativeLibraries {
  /** Folder the libraries were loaded from. */
  readonly dir: string;
  /** libllama. */
  readonly llama: Deno.DynamicLibrary<typeof LLAMA_SYMBOLS>;
  /** libggml (backend registry). */
  readonly ggml: Deno.DynamicLibrary<typeof GGML_SYMBOLS>;
  /** libggml-base (devices). */
  readonly ggmlBase: Deno.DynamicLibrary<typeof GGML_BASE_SYMBOLS>;
  /** The file libggml-base was opened from. */
  readonly ggmlBaseFile: string;
  /** The file libllama was opened from (a worker thread opens it again, see `DecodeThread`). */
  readonly llamaFile: string;
}

/** Options for {@link openNativeLibraries}. */
export interface OpenOptions {
  /** Explicit folder; overrides `SHIMMY_LIB_DIR`. Default: none. */
  libDir?: string;
  /** GPU backend, which picks the flavour folder. Default: `"auto"`. */
  gpuBackend?: GpuBackend;
  /** Application root whose `lib/` is searched. Default: the repository root. */
  appRoot?: string;
}

/** The platform part of a flavour name (`linux-x64`, `mac-arm64`, `win-x64`). */
export function platformName(): string {
  const os = Deno.build.os === "darwin" ? "mac" : Deno.build.os === "windows" ? "win" : "linux";
  const arch = Deno.build.arch === "aarch64" ? "arm64" : "x64";
  return `${os}-${arch}`;
}

/**
 * The flavour folder names to try for a GPU backend, best first.
 *
 * @param backend The requested backend.
 * @returns Folder names under `lib/`.
 * @example
 * ```ts
 * flavourCandidates("cuda"); // ["linux-x64-cuda", "linux-x64"] on Linux x64
 * ```
 */
export function flavourCandidates(backend: GpuBackend): string[] {
  const base = platformName();
  const gpuOrder = base.startsWith("mac") ? ["metal"] : ["cuda", "vulkan"];
  const withGpu = (gpu: string) =>
    base.startsWith("mac") && gpu === "metal" ? [`${base}-metal`, base] : [`${base}-${gpu}`];
  switch (backend) {
    case "cpu":
      // GPU flavour folders carry the CPU backend too, so they are a fallback.
      return [...new Set([base, ...gpuOrder.flatMap(withGpu)])];
    case "auto":
      return [...new Set([...gpuOrder.flatMap(withGpu), base])];
    default:
      // The plain folder is the fallback: the device check then says which GPUs exist.
      return [...new Set([...withGpu(backend), base])];
  }
}

const LIB_PATTERN = (stem: string) =>
  new RegExp(`^(lib)?${stem}(\\.v\\d+(\\.\\d+)*)?\\.(so|dylib|dll)$`);

/**
 * Finds the file of one library in a folder, accepting both naming schemes.
 *
 * @param dir Folder to look in.
 * @param stem Library stem: `llama`, `ggml` or `ggml-base`.
 * @returns The file path, or undefined.
 */
export function findLibraryFile(dir: string, stem: string): string | undefined {
  const pattern = LIB_PATTERN(stem);
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].filter((e) => !e.isDirectory).map((e) => e.name);
  } catch (error) {
    if (error instanceof Deno.errors.PermissionDenied) throw error;
    return undefined;
  }
  return names.filter((n) => pattern.test(n)).sort().map((n) => join(dir, n))[0];
}

/** The repository root (or the extracted app root of a compiled executable). */
export function defaultAppRoot(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..");
}

/**
 * The candidate library folders in resolution order.
 *
 * @param options Explicit folder, backend and app root.
 * @returns Folders with a label saying where each came from.
 */
export function libraryDirCandidates(options: OpenOptions = {}): { dir: string; from: string }[] {
  const explicit = options.libDir ?? Deno.env.get("SHIMMY_LIB_DIR");
  if (explicit) return [{ dir: explicit, from: options.libDir ? "--lib-dir" : "SHIMMY_LIB_DIR" }];
  const flavours = flavourCandidates(options.gpuBackend ?? "auto");
  const roots = [
    { root: options.appRoot ?? defaultAppRoot(), from: "app lib/" },
    { root: dirname(Deno.execPath()), from: "executable lib/" },
  ];
  return roots.flatMap(({ root, from }) =>
    flavours.map((flavour) => ({ dir: join(root, "lib", flavour), from }))
  );
}

/** What a library folder says about itself (its `BUILD_INFO.json`, written by set-up). */
export interface LibraryInfo {
  /** The folder. */
  dir: string;
  /** Flavour name, e.g. `linux-x64-cuda`. */
  flavour: string;
  /** `prebuilt` or `from source`, when known. */
  built?: string;
}

/**
 * Finds the library folder that would be loaded, without loading it.
 *
 * @param options Where to look.
 * @returns The folder and its build info, or undefined when none holds libllama.
 */
export function describeLibraries(options: OpenOptions = {}): LibraryInfo | undefined {
  const found = libraryDirCandidates(options).find(({ dir }) => findLibraryFile(dir, "llama"));
  if (!found) return undefined;
  const info: LibraryInfo = { dir: found.dir, flavour: basename(found.dir) };
  try {
    const build = JSON.parse(Deno.readTextFileSync(join(found.dir, "BUILD_INFO.json")));
    if (typeof build.flavour === "string") info.flavour = build.flavour;
    if (typeof build.built === "string") info.built = build.built;
  } catch {
    // no build info: the folder name is the flavour
  }
  return info;
}

/**
 * Opens libllama, libggml and libggml-base from the first folder that has them.
 *
 * @param options Where to look.
 * @returns The opened libraries.
 * @throws {LibraryNotFoundError} listing every path tried; `PermissionDenied` is re-thrown.
 */
export function openNativeLibraries(options: OpenOptions = {}): NativeLibraries {
  const tried: string[] = [];
  let lastError: unknown;
  for (const { dir, from } of libraryDirCandidates(options)) {
    const llamaFile = findLibraryFile(dir, "llama");
    if (!llamaFile) {
      tried.push(`${dir} (${from}): no libllama there`);
      continue;
    }
    try {
      if (isEmbedded(dir)) {
        const extracted = extractEmbeddedLibraries(dir);
        return openFrom(extracted, join(extracted, basename(llamaFile)));
      }
      return openFrom(dir, llamaFile);
    } catch (error) {
      if (error instanceof Deno.errors.PermissionDenied) throw error;
      lastError = error;
      tried.push(`${llamaFile} (${from}): ${(error as Error).message}`);
    }
  }
  throw new LibraryNotFoundError(tried, lastError);
}

/** Whether a folder lies in the compiled executable's embedded (virtual) file system. */
function isEmbedded(dir: string): boolean {
  if (!Deno.build.standalone) return false;
  const rel = relative(defaultAppRoot(), dir);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

function openFrom(dir: string, llamaFile: string): NativeLibraries {
  if (Deno.build.os === "windows") {
    // Windows resolves a DLL's dependencies through PATH, not the DLL's own folder.
    Deno.env.set("PATH", `${dir};${Deno.env.get("PATH") ?? ""}`);
  }
  const require = (stem: string) => {
    const file = findLibraryFile(dir, stem);
    if (!file) throw new Error(`lib${stem} is missing beside libllama`);
    return file;
  };
  const ggmlBaseFile = require("ggml-base");
  const ggmlBase = Deno.dlopen(ggmlBaseFile, GGML_BASE_SYMBOLS);
  const ggml = Deno.dlopen(require("ggml"), GGML_SYMBOLS);
  const llama = Deno.dlopen(llamaFile, LLAMA_SYMBOLS);
  return { dir, llama, ggml, ggmlBase, ggmlBaseFile, llamaFile };
}
