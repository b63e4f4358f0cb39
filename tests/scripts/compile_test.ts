import { deepEqual, equal, match, ok } from "node:assert/strict";
import { dirname, join } from "node:path";
import {
  COMPILE_PERMISSIONS,
  compileArgs,
  DECODE_WORKER,
  embeddedLibraryFiles,
  GRAMMAR_WORKER,
  TEMPLATE_WORKER,
} from "../../scripts/compile.ts";
import { WEBUI_DIST } from "../../scripts/build_webui.ts";
import { RELEASE_TARGETS } from "../../scripts/release.ts";
import { PREBUILT_FLAVOURS } from "../../scripts/setup.ts";
import { findLibraryFile, platformName } from "../../src/ffi/library.ts";
import { fixtureModel, REPO_ROOT } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";

const flavour = platformName();
const libDir = join(REPO_ROOT, "lib", flavour);
const model = await fixtureModel("tiny-f32");

Deno.test("the executable embeds libllama and ggml's backends, and nothing the server does not load", () => {
  const files = embeddedLibraryFiles(libDir);
  ok(files.some((f) => /^libllama[.]/.test(f)));
  ok(files.some((f) => /^libggml-base/.test(f)));
  ok(files.some((f) => /^libggml-cpu/.test(f)));
  ok(!files.some((f) => /common|mtmd|\.node$|^bin$/.test(f)), files.join(" "));
});

Deno.test("deno compile embeds the libraries with their SHA256SUMS and exactly the needed permissions", () => {
  const args = compileArgs(REPO_ROOT, flavour, "/tmp/out/shimmy");
  // Deno's own self-extraction writes beside the executable and races; src/ffi/extract.ts does not.
  ok(!args.includes("--self-extracting"));
  deepEqual(args.filter((a) => a.startsWith("--allow")), COMPILE_PERMISSIONS);
  ok(!args.includes("-A") && !args.includes("--allow-all") && !args.includes("--allow-run"));
  const included = args.filter((_, i) => args[i - 1] === "--include");
  ok(
    included.every((path) =>
      path.startsWith(join("lib", flavour)) || path === TEMPLATE_WORKER ||
      path === GRAMMAR_WORKER || path === DECODE_WORKER || path === WEBUI_DIST
    ),
    included.join(" "),
  );
  ok(included.includes(TEMPLATE_WORKER), "the template worker is embedded");
  ok(included.includes(GRAMMAR_WORKER), "the grammar checks' worker is embedded");
  ok(included.includes(DECODE_WORKER), "the decode thread's worker is embedded");
  ok(included.includes(join("lib", flavour, "SHA256SUMS")), "the checksums are embedded");
  ok(!embeddedLibraryFiles(libDir).includes("SHA256SUMS"), "and listed once");
  ok(included.includes(WEBUI_DIST), "the chat page is embedded");
  equal(args[args.length - 1], "main.ts");
});

Deno.test("release targets cover every OS; only flavours with a pinned prebuilt are staged", () => {
  const triples = new Set(RELEASE_TARGETS.map((t) => t.triple));
  for (const os of ["linux", "apple-darwin", "windows"]) {
    ok([...triples].some((t) => t.includes(os)), os);
  }
  for (const flavour of PREBUILT_FLAVOURS) {
    ok(RELEASE_TARGETS.some((t) => t.flavour === flavour), flavour);
  }
});

async function copyTree(from: string, to: string) {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    const src = join(from, entry.name);
    const dst = join(to, entry.name);
    if (entry.isDirectory) await copyTree(src, dst);
    else if (entry.isFile) await Deno.copyFile(src, dst);
  }
}

/** Lays out an app root with lib/<flavour>/ beside it (as the executable's embedded files are). */
async function fakeExtraction(withLibraries: boolean): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "shimmy-extracted-" });
  await Deno.copyFile(join(REPO_ROOT, "main.ts"), join(root, "main.ts"));
  await Deno.copyFile(join(REPO_ROOT, "deno.json"), join(root, "deno.json"));
  await copyTree(join(REPO_ROOT, "src"), join(root, "src"));
  if (withLibraries) {
    const dest = join(root, "lib", flavour);
    await Deno.mkdir(dest, { recursive: true });
    for (const name of embeddedLibraryFiles(libDir)) {
      await Deno.copyFile(join(libDir, name), join(dest, name));
    }
  }
  return root;
}

async function runExtracted(root: string, args: string[]) {
  const env = { ...Deno.env.toObject() };
  delete env.SHIMMY_LIB_DIR;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(root, "main.ts"), ...args],
    cwd: root,
    env,
    clearEnv: true,
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("the loader finds the libraries in an extracted executable's layout", async () => {
  const root = await fakeExtraction(true);
  try {
    const run = await runExtracted(root, [
      "generate",
      "--model",
      model,
      "--prompt",
      "hi",
      "--max-tokens",
      "4",
      "--json",
    ]);
    equal(run.code, 0, run.stderr);
    equal(dirname(JSON.parse(run.stdout).lib_dir), join(root, "lib"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a missing extraction folder gives a clear error naming SHIMMY_LIB_DIR", async () => {
  const root = await fakeExtraction(false);
  try {
    const run = await runExtracted(root, ["generate", "--model", model, "--prompt", "hi"]);
    equal(run.code, 1);
    match(run.stderr, new RegExp(`${root}/lib/${flavour}`));
    match(run.stderr, /SHIMMY_LIB_DIR/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

const denort = Deno.env.get("DENORT_BIN");
Deno.test({
  name: "deno task compile makes one executable that runs generate on its own",
  ignore: !denort &&
    skipBecause("compile", "DENORT_BIN is not set (deno compile cannot download denort here)"),
  async fn() {
    ok(findLibraryFile(libDir, "llama"));
    const output = join(await Deno.makeTempDir(), "shimmy");
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(REPO_ROOT, "scripts", "compile.ts"), "--output", output],
      cwd: REPO_ROOT,
    }).output();
    equal(build.code, 0, new TextDecoder().decode(build.stderr));
    const version = await new Deno.Command(output, { args: ["--version"] }).output();
    match(new TextDecoder().decode(version.stdout), /shimmy .* \(llama\.cpp v0\.5\.0, /);
    const cache = await Deno.makeTempDir();
    const run = await new Deno.Command(output, {
      args: ["generate", "--model", model, "--prompt", "hi", "--max-tokens", "4", "--json"],
      env: { SHIMMY_LIB_DIR: "", SHIMMY_CACHE_DIR: cache },
    }).output();
    equal(run.code, 0, new TextDecoder().decode(run.stderr));
    const result = JSON.parse(new TextDecoder().decode(run.stdout));
    equal(result.tokens.length, 4);
    // The libraries were extracted to the per-user cache, keyed by their checksums.
    match(result.lib_dir, new RegExp(`^${cache}/libs/${flavour}-[0-9a-f]{16}$`));
    await Deno.remove(cache, { recursive: true });
  },
});
