/**
 * `deno task release`: one executable per target, each embedding the matching prebuilt
 * libraries from `npm:@node-llama-cpp/<flavour>@3.22.1`, plus `SHA256SUMS`. Targets without a
 * prebuilt package of the pinned version are listed as skipped with the reason. Each
 * `deno compile --target` needs that target's `denort` (downloaded by Deno, or `DENORT_BIN`
 * for the host).
 *
 * @module
 */

import { join } from "node:path";
import { defaultAppRoot } from "../src/ffi/library.ts";
import { compileArgs } from "./compile.ts";
import { installPrebuilt } from "./setup.ts";

/** A release target: Deno's target triple and the library flavour it embeds. */
export interface ReleaseTarget {
  triple: string;
  flavour: string;
  exe: string;
}

/** Every target a release builds. */
export const RELEASE_TARGETS: readonly ReleaseTarget[] = [
  { triple: "x86_64-unknown-linux-gnu", flavour: "linux-x64", exe: "shimmy-linux-x64" },
  { triple: "x86_64-unknown-linux-gnu", flavour: "linux-x64-cuda", exe: "shimmy-linux-x64-cuda" },
  {
    triple: "x86_64-unknown-linux-gnu",
    flavour: "linux-x64-vulkan",
    exe: "shimmy-linux-x64-vulkan",
  },
  { triple: "aarch64-unknown-linux-gnu", flavour: "linux-arm64", exe: "shimmy-linux-arm64" },
  { triple: "aarch64-apple-darwin", flavour: "mac-arm64-metal", exe: "shimmy-macos-arm64" },
  { triple: "x86_64-apple-darwin", flavour: "mac-x64", exe: "shimmy-macos-x64" },
  { triple: "x86_64-pc-windows-msvc", flavour: "win-x64", exe: "shimmy-windows-x64.exe" },
  {
    triple: "x86_64-pc-windows-msvc",
    flavour: "win-x64-cuda",
    exe: "shimmy-windows-x64-cuda.exe",
  },
  {
    triple: "x86_64-pc-windows-msvc",
    flavour: "win-x64-vulkan",
    exe: "shimmy-windows-x64-vulkan.exe",
  },
];

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function main(): Promise<number> {
  const root = defaultAppRoot();
  const dist = join(root, "dist", "release");
  await Deno.mkdir(dist, { recursive: true });
  const built: string[] = [];
  const skipped: string[] = [];
  for (const target of RELEASE_TARGETS) {
    const staged = await installPrebuilt(target.flavour, root);
    if ("error" in staged) {
      skipped.push(`${target.exe}: ${staged.error}`);
      continue;
    }
    const output = join(dist, target.exe);
    const args = compileArgs(root, target.flavour, output, target.triple);
    const status = await new Deno.Command(Deno.execPath(), { args, cwd: root }).spawn().status;
    if (!status.success) {
      skipped.push(
        `${target.exe}: deno compile failed (is denort for ${target.triple} reachable?)`,
      );
      continue;
    }
    built.push(target.exe);
  }
  const sums = await Promise.all(
    built.map(async (exe) => `${await sha256(join(dist, exe))}  ${exe}`),
  );
  await Deno.writeTextFile(join(dist, "SHA256SUMS"), sums.join("\n") + (sums.length ? "\n" : ""));
  console.log(`Built ${built.length}: ${built.join(", ") || "none"}`);
  for (const line of skipped) console.log(`Skipped ${line}`);
  return built.length > 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
