/**
 * `deno task setup [--gpu cuda|vulkan] [--flavour F] [--force]`: fills `lib/<flavour>/` with
 * the prebuilt llama.cpp libraries (v0.5.0) from `npm:@node-llama-cpp/<flavour>@3.22.1`. Deno
 * downloads the package into its own npm cache; this script copies the libraries out of it.
 *
 * `SHIMMY_GPU=cuda|vulkan` selects a GPU flavour as `--gpu` does; `--flavour` names any
 * flavour (release builds stage other platforms' libraries this way). Where no prebuilt
 * package of the pinned version exists (macOS and Windows at 3.22.1), it says so and points
 * at `scripts/build-libllama.sh`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { defaultAppRoot, findLibraryFile, platformName } from "../src/ffi/library.ts";
import { buildWebui } from "./build_webui.ts";

/** The node-llama-cpp release whose packages carry llama.cpp v0.5.0. */
export const NLC_VERSION = "3.22.1";

/** Flavours with a prebuilt package at {@link NLC_VERSION}. */
export const PREBUILT_FLAVOURS: readonly string[] = [
  "linux-x64",
  "linux-x64-cuda",
  "linux-x64-vulkan",
  "linux-arm64",
];

async function deno(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args, stderr: "inherit" }).output();
  if (!out.success) throw new Error(`deno ${args.join(" ")} failed`);
  return new TextDecoder().decode(out.stdout);
}

/**
 * Copies one flavour's prebuilt libraries into `<root>/lib/<flavour>/`.
 *
 * @param flavour E.g. `linux-x64-cuda`.
 * @param root Repository root.
 * @param force Replace libraries already there.
 * @returns The folder, or an error message when no prebuilt package exists.
 */
export async function installPrebuilt(
  flavour: string,
  root: string,
  force = false,
): Promise<{ dir: string } | { error: string }> {
  const dest = join(root, "lib", flavour);
  if (!force && findLibraryFile(dest, "llama")) return { dir: dest };
  if (!PREBUILT_FLAVOURS.includes(flavour)) {
    return {
      error: `node-llama-cpp@${NLC_VERSION} ships no prebuilt libraries for ${flavour}; ` +
        `build them from the same llama.cpp source on that platform: scripts/build-libllama.sh`,
    };
  }
  const spec = `npm:@node-llama-cpp/${flavour}@${NLC_VERSION}`;
  console.error(`setup: fetching ${spec}`);
  await deno(["cache", "--quiet", spec]);
  const npmCache = JSON.parse(await deno(["info", "--json"])).npmCache as string;
  const bins = join(
    npmCache,
    "registry.npmjs.org",
    "@node-llama-cpp",
    flavour,
    NLC_VERSION,
    "bins",
    flavour,
  );
  await Deno.mkdir(dest, { recursive: true });
  let copied = 0;
  for await (const entry of Deno.readDir(bins)) {
    if (!entry.isFile || entry.name.endsWith(".node")) continue;
    await Deno.copyFile(join(bins, entry.name), join(dest, entry.name));
    copied++;
  }
  await Deno.writeTextFile(
    join(dest, "BUILD_INFO.json"),
    JSON.stringify({ source: spec, built: "prebuilt", flavour }, null, 2) + "\n",
  );
  console.error(`setup: copied ${copied} files into ${dest}`);
  return { dir: dest };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      gpu: { type: "string", default: Deno.env.get("SHIMMY_GPU") ?? "" },
      flavour: { type: "string" },
      force: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log("Usage: deno task setup [--gpu cuda|vulkan] [--flavour F] [--force]");
    return 0;
  }
  const flavour = values.flavour ??
    (values.gpu ? `${platformName()}-${values.gpu}` : platformName());
  const result = await installPrebuilt(flavour, defaultAppRoot(), values.force);
  if ("error" in result) {
    console.error(`setup: ${result.error}`);
    return 1;
  }
  console.error(`setup: libraries ready in ${result.dir}`);
  try {
    // The chat page that `shimmy serve` shows at `/` (also `deno task webui`).
    const page = await buildWebui(defaultAppRoot());
    console.error(`setup: chat page built in ${page.dir}`);
  } catch (error) {
    console.error(`setup: ${(error as Error).message}`);
    return 1;
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
