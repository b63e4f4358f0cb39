/**
 * `deno task setup [--gpu cuda|vulkan] [--force]`: fills `lib/<flavour>/` with the prebuilt
 * llama.cpp libraries (v0.5.0) from `npm:@node-llama-cpp/<flavour>@3.22.1`. Deno downloads the
 * package into its own npm cache; this script copies the libraries out of it.
 *
 * `SHIMMY_GPU=cuda|vulkan` selects a GPU flavour as `--gpu` does. Where no prebuilt package of
 * the pinned version exists (macOS and Windows at 3.22.1), it says so and points at
 * `scripts/build-libllama.sh`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { defaultAppRoot, findLibraryFile, platformName } from "../src/ffi/library.ts";

const NLC_VERSION = "3.22.1";
const PREBUILT = new Set([
  "linux-x64",
  "linux-x64-cuda",
  "linux-x64-vulkan",
  "linux-arm64",
]);

async function denoJson(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args, stderr: "inherit" }).output();
  if (!out.success) throw new Error(`deno ${args.join(" ")} failed`);
  return new TextDecoder().decode(out.stdout);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      gpu: { type: "string", default: Deno.env.get("SHIMMY_GPU") ?? "" },
      force: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log("Usage: deno task setup [--gpu cuda|vulkan] [--force]");
    return 0;
  }
  const flavour = values.gpu ? `${platformName()}-${values.gpu}` : platformName();
  const dest = join(defaultAppRoot(), "lib", flavour);
  if (!values.force && findLibraryFile(dest, "llama")) {
    console.error(`setup: ${dest} already holds libllama (use --force to refresh)`);
    return 0;
  }
  if (!PREBUILT.has(flavour)) {
    console.error(
      `setup: node-llama-cpp@${NLC_VERSION} ships no prebuilt libraries for ${flavour}.\n` +
        `Build them from the same llama.cpp source instead: scripts/build-libllama.sh` +
        (values.gpu ? ` --${values.gpu}` : ""),
    );
    return 1;
  }
  const spec = `npm:@node-llama-cpp/${flavour}@${NLC_VERSION}`;
  console.error(`setup: fetching ${spec}`);
  await denoJson(["cache", "--quiet", spec]);
  const npmCache = JSON.parse(await denoJson(["info", "--json"])).npmCache as string;
  const source = join(npmCache, "registry.npmjs.org", "@node-llama-cpp", flavour, NLC_VERSION);
  const bins = join(source, "bins", flavour);
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
  return 0;
}

if (import.meta.main) Deno.exit(await main());
