import { equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "../fixtures/models.ts";

Deno.test("build-libllama.sh fails when the build fails, and installs nothing", async () => {
  const root = await Deno.makeTempDir();
  try {
    // A source tree that looks unpacked, and a cmake that configures but fails to build.
    const source = join(root, "cache", "llama.cpp-v0.5.0");
    await Deno.mkdir(join(source, "include"), { recursive: true });
    await Deno.writeTextFile(join(source, "include", "llama.h"), "");
    await Deno.writeTextFile(join(source, ".shimmy-source-ok"), "");
    const bin = join(root, "bin");
    await Deno.mkdir(bin);
    await Deno.writeTextFile(
      join(bin, "cmake"),
      '#!/bin/sh\ncase "$1" in --build) echo "the compiler crashed" >&2; exit 2;; esac\n',
    );
    await Deno.chmod(join(bin, "cmake"), 0o755);
    const out = join(root, "out");
    const result = await new Deno.Command("bash", {
      args: [join(REPO_ROOT, "scripts", "build-libllama.sh"), "--out", out],
      env: { PATH: `${bin}:${Deno.env.get("PATH")}`, SHIMMY_CACHE_DIR: join(root, "cache") },
      stdin: "null",
    }).output();
    const stderr = new TextDecoder().decode(result.stderr);
    ok(!result.success, `the script must fail:\n${stderr}`);
    match(stderr, /build failed \(cmake exit 2\)/);
    equal(await Deno.stat(out).then(() => true, () => false), false, "nothing was installed");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

async function dryRun(os: string, arch: string, flags: string[]): Promise<string> {
  const result = await new Deno.Command("bash", {
    args: [join(REPO_ROOT, "scripts", "build-libllama.sh"), "--dry-run", ...flags],
    env: { SHIMMY_BUILD_OS: os, SHIMMY_BUILD_ARCH: arch, PATH: "/usr/bin:/bin" },
    stdin: "null",
  }).output();
  equal(result.code, 0, new TextDecoder().decode(result.stderr));
  return new TextDecoder().decode(result.stdout);
}

Deno.test("build-libllama.sh configures each release flavour for its OS", async () => {
  const linux = await dryRun("Linux", "x86_64", ["--release", "--cuda", "--cuda-arch", "75;90"]);
  match(linux, /-DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON/);
  match(linux, /-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=75\\;90/);
  match(linux, /-DCMAKE_INSTALL_RPATH=\\\$ORIGIN/);
  match(linux, /build-linux-x64-cuda-release/);
  const mac = await dryRun("Darwin", "arm64", ["--release", "--metal"]);
  match(mac, /-DGGML_METAL=ON -DGGML_METAL_EMBED_LIBRARY=ON/);
  match(mac, /-DCMAKE_INSTALL_RPATH=@loader_path/);
  match(mac, /build-mac-arm64-metal-release/);
  ok(!mac.includes("GGML_CPU_ALL_VARIANTS"), "macOS arm64 keeps one CPU backend");
  const windows = await dryRun("MINGW64_NT-10.0", "x86_64", ["--release", "--vulkan"]);
  match(windows, /-DCMAKE_C_COMPILER=cl -DCMAKE_CXX_COMPILER=cl/);
  match(windows, /-DGGML_VULKAN=ON/);
  match(windows, /build-win-x64-vulkan-release/);
});
