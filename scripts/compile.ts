/**
 * `deno task compile [--flavour F] [--output PATH] [--target TRIPLE]`: builds the single
 * `shimmy` executable with `deno compile`, embedding the app, the chat page (built first by
 * `scripts/build_webui.ts`) and the native libraries of one flavour (`lib/<flavour>/`,
 * default: the best one present for this machine) with their `SHA256SUMS`. The library
 * resolver finds `lib/<flavour>/` in the embedded file system, as in a checkout, and on first
 * run copies it to the per-user cache (`src/ffi/extract.ts`): nothing is written beside the
 * executable, and two copies starting at once do not race.
 *
 * `deno compile` needs Deno's `denort` runtime. It downloads it unless `DENORT_BIN` points at
 * a local copy; without network and without `DENORT_BIN` this step cannot run.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, relative } from "node:path";
import { defaultAppRoot, findLibraryFile, flavourCandidates } from "../src/ffi/library.ts";
import { LIBRARY_SUMS, writeSums } from "../src/ffi/extract.ts";
import { buildWebui, WEBUI_DIST } from "./build_webui.ts";

/**
 * The permissions the executable is granted: libraries and models (ffi, read), serving and
 * pulling (net), `SHIMMY_*` and `HF_*` settings (env), free memory for the load check (sys),
 * and the Hugging Face cache and models folder that `shimmy pull` writes (write).
 */
export const COMPILE_PERMISSIONS = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
];

/** Files in a library folder that the executable does not need. */
const NOT_EMBEDDED = [
  /^bin$/,
  /^libllama-common/,
  /^libllama-(server|bench)-impl/,
  /^libmtmd/,
  /^_nlcBuildMetadata\.json$/,
  /\.node$/,
  new RegExp(`^${LIBRARY_SUMS}$`),
];

/**
 * The files of a library folder that go into the executable (besides its `SHA256SUMS`).
 *
 * @param libDir The flavour folder.
 * @returns File names to embed.
 */
export function embeddedLibraryFiles(libDir: string): string[] {
  return [...Deno.readDirSync(libDir)]
    .map((entry) => entry.name)
    .filter((name) => !NOT_EMBEDDED.some((pattern) => pattern.test(name)))
    .sort();
}

/** The template renderer's worker module, which `deno compile` must be told to embed. */
export const TEMPLATE_WORKER = "src/engine/template_worker_main.ts";

/** The grammar checks' worker module (`src/engine/grammar_worker.ts`), embedded the same way. */
export const GRAMMAR_WORKER = "src/engine/grammar_worker_main.ts";

/** The decode thread's worker module (`src/ffi/decode_thread.ts`), embedded the same way. */
export const DECODE_WORKER = "src/ffi/decode_thread_main.ts";

/**
 * The `deno compile` arguments for one flavour.
 *
 * @param root Repository root.
 * @param flavour Library flavour folder under `lib/`.
 * @param output Executable path.
 * @param target Optional `--target` triple.
 * @returns Arguments after `deno`.
 */
export function compileArgs(root: string, flavour: string, output: string, target?: string) {
  const libDir = join(root, "lib", flavour);
  const includes = embeddedLibraryFiles(libDir).flatMap((name) => [
    "--include",
    relative(root, join(libDir, name)),
  ]);
  return [
    "compile",
    ...COMPILE_PERMISSIONS,
    "--no-check",
    ...(target ? ["--target", target] : []),
    ...includes,
    // The checksums that name the first-run extraction folder; written by writeSums().
    "--include",
    relative(root, join(libDir, LIBRARY_SUMS)),
    // Workers are not embedded unless named: the chat template renderer runs in one, and so
    // do the grammar checks and the decode thread.
    "--include",
    TEMPLATE_WORKER,
    "--include",
    GRAMMAR_WORKER,
    "--include",
    DECODE_WORKER,
    // The chat page, built by buildWebui() just before.
    "--include",
    WEBUI_DIST,
    "--output",
    output,
    "main.ts",
  ];
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      flavour: { type: "string" },
      output: { type: "string" },
      target: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log("Usage: deno task compile [--flavour F] [--output PATH] [--target TRIPLE]");
    return 0;
  }
  const root = defaultAppRoot();
  const flavour = values.flavour ??
    flavourCandidates("auto").find((f) => findLibraryFile(join(root, "lib", f), "llama"));
  if (!flavour || !findLibraryFile(join(root, "lib", flavour), "llama")) {
    console.error(
      `compile: no libraries in lib/${flavour ?? "<flavour>"}; run deno task setup first`,
    );
    return 1;
  }
  const exe = Deno.build.os === "windows" ? "shimmy.exe" : "shimmy";
  const output = values.output ?? join(root, "dist", exe);
  try {
    await buildWebui(root);
  } catch (error) {
    console.error(`compile: ${(error as Error).message}`);
    return 1;
  }
  const libDir = join(root, "lib", flavour);
  writeSums(libDir, embeddedLibraryFiles(libDir));
  const args = compileArgs(root, flavour, output, values.target);
  console.error(`compile: deno ${args.join(" ")}`);
  const status = await new Deno.Command(Deno.execPath(), { args, cwd: root }).spawn().status;
  if (!status.success) {
    console.error(
      "compile: deno compile failed. Without network it needs DENORT_BIN=/path/to/denort",
    );
    return 1;
  }
  console.error(`compile: wrote ${output} (libraries: lib/${flavour})`);
  return 0;
}

if (import.meta.main) Deno.exit(await main());
