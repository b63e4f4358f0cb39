/**
 * `deno task release <command>`: the release steps that `.github/workflows/release.yml` runs,
 * each also runnable on a developer machine.
 *
 * - `package --exe PATH --asset NAME [--out DIR]`: puts one executable into its release
 *   archive, `NAME.tar.gz` (Linux, macOS: `shimmy` inside) or `NAME.zip` (Windows:
 *   `shimmy.exe` inside), in `dist/release/` by default.
 * - `sums [DIR]`: writes `DIR/SHA256SUMS` over every archive in it (`sha256sum -c` format).
 * - `installers --repo OWNER/NAME [--out DIR]`: copies `install.sh` and `install.ps1` into
 *   the release with the repository filled in, so `releases/latest/download/install.sh` works.
 * - `local`: what one machine can build without the CI matrix: for every target whose
 *   prebuilt libraries exist at the pinned node-llama-cpp version, compiles and packages it,
 *   then writes the sums. Each `deno compile --target` needs that target's `denort`
 *   (downloaded by Deno, or `DENORT_BIN` for the host).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { basename, join } from "node:path";
import { defaultAppRoot } from "../src/ffi/library.ts";
import { sha256Hex, writeSums } from "../src/ffi/extract.ts";
import { compileArgs, embeddedLibraryFiles } from "./compile.ts";
import { installPrebuilt } from "./setup.ts";
import { createZip } from "./zip.ts";

/** A release target: Deno's target triple, the library flavour it embeds, its asset name. */
export interface ReleaseTarget {
  /** `deno compile --target` triple. */
  triple: string;
  /** Library folder under `lib/`. */
  flavour: string;
  /** Archive name without extension; also the name `install.sh` asks for. */
  asset: string;
}

/** Every target a release builds. */
export const RELEASE_TARGETS: readonly ReleaseTarget[] = [
  { triple: "x86_64-unknown-linux-gnu", flavour: "linux-x64", asset: "shimmy-linux-x64" },
  {
    triple: "x86_64-unknown-linux-gnu",
    flavour: "linux-x64-cuda",
    asset: "shimmy-linux-x64-cuda",
  },
  {
    triple: "x86_64-unknown-linux-gnu",
    flavour: "linux-x64-vulkan",
    asset: "shimmy-linux-x64-vulkan",
  },
  { triple: "aarch64-unknown-linux-gnu", flavour: "linux-arm64", asset: "shimmy-linux-arm64" },
  { triple: "aarch64-apple-darwin", flavour: "mac-arm64-metal", asset: "shimmy-macos-arm64" },
  { triple: "x86_64-apple-darwin", flavour: "mac-x64", asset: "shimmy-macos-x64" },
  { triple: "x86_64-pc-windows-msvc", flavour: "win-x64", asset: "shimmy-windows-x64" },
  { triple: "x86_64-pc-windows-msvc", flavour: "win-x64-cuda", asset: "shimmy-windows-x64-cuda" },
  {
    triple: "x86_64-pc-windows-msvc",
    flavour: "win-x64-vulkan",
    asset: "shimmy-windows-x64-vulkan",
  },
];

/**
 * The archive file name of an asset: `.zip` for Windows, `.tar.gz` elsewhere.
 *
 * @param asset Asset name, e.g. `shimmy-linux-x64`.
 * @returns E.g. `shimmy-linux-x64.tar.gz`.
 * @example
 * ```ts
 * archiveName("shimmy-windows-x64"); // "shimmy-windows-x64.zip"
 * ```
 */
export function archiveName(asset: string): string {
  return asset.includes("-windows-") ? `${asset}.zip` : `${asset}.tar.gz`;
}

/**
 * Puts an executable into its release archive.
 *
 * @param exe The built executable.
 * @param asset Asset name (see {@link RELEASE_TARGETS}).
 * @param outDir Folder for the archive.
 * @returns The archive's path.
 * @throws {Error} when `tar` fails.
 * @example
 * ```ts
 * await packageExecutable("dist/shimmy", "shimmy-linux-x64", "dist/release");
 * ```
 */
export async function packageExecutable(
  exe: string,
  asset: string,
  outDir: string,
): Promise<string> {
  await Deno.mkdir(outDir, { recursive: true });
  const archive = join(outDir, archiveName(asset));
  if (archive.endsWith(".zip")) {
    const data = await Deno.readFile(exe);
    await Deno.writeFile(archive, await createZip([{ name: "shimmy.exe", data, mode: 0o755 }]));
    return archive;
  }
  const stage = await Deno.makeTempDir({ prefix: "shimmy-package-" });
  try {
    await Deno.copyFile(exe, join(stage, "shimmy"));
    await Deno.chmod(join(stage, "shimmy"), 0o755);
    const tar = await new Deno.Command("tar", {
      args: ["-czf", archive, "-C", stage, "shimmy"],
      stderr: "piped",
    }).output();
    if (!tar.success) {
      throw new Error(`tar failed: ${new TextDecoder().decode(tar.stderr).trim()}`);
    }
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
  return archive;
}

/**
 * Writes `SHA256SUMS` over every release archive in a folder.
 *
 * @param dir The folder.
 * @returns The lines written.
 * @example
 * ```ts
 * await writeReleaseSums("dist/release"); // ["3f…  shimmy-linux-x64.tar.gz", …]
 * ```
 */
export async function writeReleaseSums(dir: string): Promise<string[]> {
  const archives: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && /^shimmy-.*\.(tar\.gz|zip)$/.test(entry.name)) archives.push(entry.name);
  }
  const lines = await Promise.all(
    archives.sort().map(async (name) =>
      `${sha256Hex(await Deno.readFile(join(dir, name)))}  ${name}`
    ),
  );
  await Deno.writeTextFile(join(dir, "SHA256SUMS"), lines.map((l) => `${l}\n`).join(""));
  return lines;
}

/** The placeholder in the install scripts that {@link writeInstallers} replaces. */
export const REPO_PLACEHOLDER = "__SHIMMY_REPO__";

/**
 * Copies the install scripts into a release folder, naming the repository they download from.
 *
 * @param root Repository root.
 * @param repo `owner/name` on GitHub.
 * @param outDir Release folder.
 * @returns The files written.
 * @throws {Error} when `repo` is not `owner/name`.
 * @example
 * ```ts
 * await writeInstallers(".", "someone/shimmy", "dist/release");
 * ```
 */
export async function writeInstallers(
  root: string,
  repo: string,
  outDir: string,
): Promise<string[]> {
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) {
    throw new Error(
      `Cannot publish installers for repository ${JSON.stringify(repo)}: expected owner/name`,
    );
  }
  await Deno.mkdir(outDir, { recursive: true });
  const written: string[] = [];
  for (const name of ["install.sh", "install.ps1"]) {
    const text = await Deno.readTextFile(join(root, name));
    const path = join(outDir, name);
    await Deno.writeTextFile(path, text.replaceAll(REPO_PLACEHOLDER, repo), { mode: 0o755 });
    written.push(path);
  }
  return written;
}

async function buildLocal(root: string, dist: string): Promise<number> {
  const built: string[] = [];
  const skipped: string[] = [];
  for (const target of RELEASE_TARGETS) {
    const staged = await installPrebuilt(target.flavour, root);
    if ("error" in staged) {
      skipped.push(`${target.asset}: ${staged.error}`);
      continue;
    }
    writeSums(staged.dir, embeddedLibraryFiles(staged.dir));
    const exe = join(
      await Deno.makeTempDir(),
      target.triple.includes("windows") ? "shimmy.exe" : "shimmy",
    );
    const args = compileArgs(root, target.flavour, exe, target.triple);
    const status = await new Deno.Command(Deno.execPath(), { args, cwd: root }).spawn().status;
    if (!status.success) {
      skipped.push(
        `${target.asset}: deno compile failed (is denort for ${target.triple} reachable?)`,
      );
      continue;
    }
    built.push(basename(await packageExecutable(exe, target.asset, dist)));
  }
  await writeReleaseSums(dist);
  console.log(`Built ${built.length}: ${built.join(", ") || "none"}`);
  for (const line of skipped) console.log(`Skipped ${line}`);
  return built.length > 0 ? 0 : 1;
}

const USAGE = `Usage: deno task release <command>

Commands:
  package --exe PATH --asset NAME [--out DIR]   archive one executable (NAME.tar.gz or NAME.zip)
  sums [DIR]                                    write DIR/SHA256SUMS over the archives in DIR
  installers --repo OWNER/NAME [--out DIR]      copy install.sh and install.ps1, repo filled in
  local                                         compile and package every target this machine can

DIR defaults to dist/release.

Examples:
  deno task release package --exe dist/shimmy --asset shimmy-linux-x64
  deno task release sums dist/release`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      exe: { type: "string" },
      asset: { type: "string" },
      repo: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const root = defaultAppRoot();
  const dist = values.out ?? positionals[1] ?? join(root, "dist", "release");
  const command = positionals[0];
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (command === "package" && values.exe && values.asset) {
    console.log(await packageExecutable(values.exe, values.asset, dist));
    return 0;
  }
  if (command === "sums") {
    const lines = await writeReleaseSums(dist);
    console.log(lines.join("\n"));
    return lines.length > 0 ? 0 : 1;
  }
  if (command === "installers" && values.repo) {
    console.log((await writeInstallers(root, values.repo, dist)).join("\n"));
    return 0;
  }
  if (command === "local") return await buildLocal(root, dist);
  console.error(
    `release: expected package --exe --asset, sums, installers --repo or local (see --help)`,
  );
  return 1;
}

if (import.meta.main) Deno.exit(await main());
