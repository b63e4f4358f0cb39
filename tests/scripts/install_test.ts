import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { archiveName, packageExecutable, writeReleaseSums } from "../../scripts/release.ts";
import { REPO_ROOT } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";

const INSTALL_SH = join(REPO_ROOT, "install.sh");
const INSTALL_PS1 = join(REPO_ROOT, "install.ps1");

/** The tools install.sh may use; the test's PATH holds only these (and fake GPU tools). */
const TOOLS = [
  "bash",
  "sh",
  "env",
  "curl",
  "tar",
  "gzip",
  "sha256sum",
  "awk",
  "sed",
  "grep",
  "cut",
  "mktemp",
  "mkdir",
  "chmod",
  "cp",
  "mv",
  "rm",
  "uname",
  "cat",
];

const ASSETS = [
  "shimmy-linux-x64",
  "shimmy-linux-x64-cuda",
  "shimmy-linux-x64-vulkan",
  "shimmy-linux-arm64",
  "shimmy-macos-arm64",
  "shimmy-macos-x64",
  "shimmy-windows-x64",
  "shimmy-windows-x64-cuda",
];

interface FakeRelease {
  root: string;
  base: string;
  requests: string[];
  /** Replaces one archive's bytes after the sums were written. */
  tamper(name: string): Promise<void>;
  close(): Promise<void>;
}

/** Archives made by `release package` from stand-in executables, served over loopback. */
async function fakeRelease(): Promise<FakeRelease> {
  const root = await Deno.makeTempDir({ prefix: "shimmy-install-" });
  const dist = join(root, "release");
  for (const asset of ASSETS) {
    const exe = join(root, "exe");
    await Deno.writeTextFile(exe, `#!/bin/sh\necho "fake ${asset} $*"\n`);
    await packageExecutable(exe, asset, dist);
  }
  await writeReleaseSums(dist);
  const requests: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const path = new URL(request.url).pathname;
      requests.push(path);
      const match = /^\/releases\/(?:latest\/download|download\/v[0-9.]+)\/([^/]+)$/.exec(path);
      if (!match) return new Response("not found", { status: 404 });
      try {
        return new Response(await Deno.readFile(join(dist, match[1]!)));
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  return {
    root,
    base: `http://127.0.0.1:${server.addr.port}/releases`,
    requests,
    tamper: (name) => Deno.writeFile(join(dist, name), new Uint8Array([1, 2, 3])),
    async close() {
      await server.shutdown();
      await Deno.remove(root, { recursive: true });
    },
  };
}

async function which(tool: string): Promise<string | undefined> {
  const [command, args] = Deno.build.os === "windows"
    ? ["where.exe", [tool]]
    : ["sh", ["-c", `command -v ${tool}`]];
  const out = await new Deno.Command(command, { args, stderr: "null" }).output()
    .catch(() => undefined);
  return out?.success ? new TextDecoder().decode(out.stdout).split(/\r?\n/)[0]!.trim() : undefined;
}

const notOnWindows = Deno.build.os === "windows" &&
  skipBecause("install.sh", "install.sh is for Linux and macOS; install.ps1 is tested here");

/**
 * A folder for PATH with fake `nvidia-smi` / `vulkaninfo` as asked and, except on Windows
 * (where only install.ps1 is tested), links to the real tools install.sh needs, so that the
 * machine's own GPU tools stay out of sight.
 */
async function toolPath(root: string, gpus: { nvidia?: boolean; vulkan?: boolean }) {
  const bin = await Deno.makeTempDir({ dir: root, prefix: "bin-" });
  const windows = Deno.build.os === "windows";
  if (!windows) {
    for (const tool of TOOLS) {
      const path = await which(tool);
      if (path) await Deno.symlink(path, join(bin, tool));
    }
  }
  const fake = async (name: string, lines: string[]) => {
    const file = join(bin, windows ? `${name}.cmd` : name);
    const body = windows
      ? ["@echo off", ...lines.map((l) => `echo ${l}`)]
      : ["#!/bin/sh", ...lines.map((l) => `echo "${l}"`)];
    await Deno.writeTextFile(file, body.join("\n") + "\n");
    if (!windows) await Deno.chmod(file, 0o755);
  };
  if (gpus.nvidia) await fake("nvidia-smi", ["GPU 0: NVIDIA H200 (UUID: GPU-0)"]);
  if (gpus.vulkan) {
    await fake("vulkaninfo", ["GPU0:", "  deviceType = PHYSICAL_DEVICE_TYPE_DISCRETE_GPU"]);
  }
  return bin;
}

interface InstallRun {
  code: number;
  stderr: string;
  dir: string;
  /** What the installed executable prints, or undefined when none was installed. */
  installed?: string;
}

async function install(
  release: FakeRelease,
  options: {
    args?: string[];
    os?: string;
    arch?: string;
    nvidia?: boolean;
    vulkan?: boolean;
  } = {},
): Promise<InstallRun> {
  const dir = await Deno.makeTempDir({ dir: release.root, prefix: "prefix-" });
  const bin = join(dir, "bin");
  const path = await toolPath(release.root, options);
  const out = await new Deno.Command(join(path, "bash"), {
    args: [INSTALL_SH, ...(options.args ?? [])],
    clearEnv: true,
    env: {
      PATH: path,
      HOME: dir,
      TMPDIR: dir,
      SHIMMY_INSTALL_BASE_URL: release.base,
      SHIMMY_INSTALL_DIR: bin,
      SHIMMY_OS: options.os ?? "Linux",
      SHIMMY_ARCH: options.arch ?? "x86_64",
    },
    stdin: "null",
  }).output();
  const result: InstallRun = {
    code: out.code,
    stderr: new TextDecoder().decode(out.stderr),
    dir: bin,
  };
  try {
    const run = await new Deno.Command(join(bin, "shimmy"), { args: ["--version"] }).output();
    result.installed = new TextDecoder().decode(run.stdout).trim();
  } catch {
    // nothing installed
  }
  return result;
}

Deno.test({
  name: "install.sh picks the build from the OS, the CPU and the GPU it finds",
  ignore: notOnWindows,
}, async () => {
  const release = await fakeRelease();
  try {
    const cases: [Parameters<typeof install>[1], string][] = [
      [{ nvidia: true, vulkan: true }, "shimmy-linux-x64-cuda"],
      [{ vulkan: true }, "shimmy-linux-x64-vulkan"],
      [{}, "shimmy-linux-x64"],
      [{ arch: "aarch64", nvidia: true }, "shimmy-linux-arm64"],
      [{ os: "Darwin", arch: "arm64" }, "shimmy-macos-arm64"],
      [{ os: "Darwin", arch: "x86_64" }, "shimmy-macos-x64"],
    ];
    for (const [options, asset] of cases) {
      const run = await install(release, options);
      equal(run.code, 0, run.stderr);
      equal(run.installed, `fake ${asset} --version`, JSON.stringify(options));
      equal(release.requests.at(-2), `/releases/latest/download/${archiveName(asset)}`);
      equal(release.requests.at(-1), "/releases/latest/download/SHA256SUMS");
      equal((await Deno.stat(join(run.dir, "shimmy"))).mode! & 0o777, 0o755);
      match(run.stderr, /checksum OK/);
    }
  } finally {
    await release.close();
  }
});

Deno.test({
  name: "install.sh --flavour overrides detection and --version pins a release",
  ignore: notOnWindows,
}, async () => {
  const release = await fakeRelease();
  try {
    const run = await install(release, {
      nvidia: true,
      args: ["--flavour", "vulkan", "--version", "v0.1.0"],
    });
    equal(run.code, 0, run.stderr);
    equal(run.installed, "fake shimmy-linux-x64-vulkan --version");
    deepEqual(release.requests.slice(-2), [
      "/releases/download/v0.1.0/shimmy-linux-x64-vulkan.tar.gz",
      "/releases/download/v0.1.0/SHA256SUMS",
    ]);
    const cpu = await install(release, { nvidia: true, args: ["--flavour=cpu"] });
    equal(cpu.installed, "fake shimmy-linux-x64 --version");
    const none = await install(release, {
      os: "Darwin",
      arch: "arm64",
      args: ["--flavour", "cuda"],
    });
    equal(none.code, 1);
    match(none.stderr, /there is no cuda build for macos-arm64 \(available: cpu\)/);
    equal(none.installed, undefined);
  } finally {
    await release.close();
  }
});

Deno.test({
  name: "install.sh installs nothing when the download does not match SHA256SUMS",
  ignore: notOnWindows,
}, async () => {
  const release = await fakeRelease();
  try {
    await release.tamper("shimmy-linux-x64.tar.gz");
    const run = await install(release);
    equal(run.code, 1);
    match(run.stderr, /checksum mismatch for shimmy-linux-x64\.tar\.gz/);
    equal(run.installed, undefined);
    ok(!/^install\.sh: installed/m.test(run.stderr), run.stderr);
    await release.tamper("SHA256SUMS");
    const unlisted = await install(release, { vulkan: true });
    equal(unlisted.code, 1);
    match(unlisted.stderr, /SHA256SUMS has no line for shimmy-linux-x64-vulkan\.tar\.gz/);
    equal(unlisted.installed, undefined);
  } finally {
    await release.close();
  }
});

const pwsh = await which("pwsh");
Deno.test({
  name: "install.ps1 picks the CUDA build when nvidia-smi sees a GPU, and refuses a bad checksum",
  ignore: !pwsh &&
    skipBecause(
      "install.ps1",
      "pwsh is not installed (GitHub's runners have it; ci.yml runs this)",
    ),
  async fn() {
    const release = await fakeRelease();
    try {
      const run = async (nvidia: boolean) => {
        const dir = await Deno.makeTempDir({ dir: release.root, prefix: "ps-" });
        const fakeBin = await toolPath(release.root, { nvidia });
        const sep = Deno.build.os === "windows" ? ";" : ":";
        const out = await new Deno.Command(pwsh!, {
          args: ["-NoProfile", "-NonInteractive", "-File", INSTALL_PS1],
          env: {
            PATH: `${fakeBin}${sep}${Deno.env.get("PATH")}`,
            SHIMMY_INSTALL_BASE_URL: release.base,
            SHIMMY_INSTALL_DIR: dir,
            SHIMMY_NO_MODIFY_PATH: "1",
          },
          stdin: "null",
        }).output();
        const exe = await Deno.readTextFile(join(dir, "shimmy.exe")).catch(() => undefined);
        return { code: out.code, stderr: new TextDecoder().decode(out.stderr), exe };
      };
      const cuda = await run(true);
      equal(cuda.code, 0, cuda.stderr);
      match(cuda.exe ?? "", /fake shimmy-windows-x64-cuda /);
      equal(release.requests.at(-2), "/releases/latest/download/shimmy-windows-x64-cuda.zip");
      await release.tamper("shimmy-windows-x64.zip");
      const bad = await run(false);
      ok(bad.code !== 0);
      match(bad.stderr, /checksum mismatch for shimmy-windows-x64\.zip/);
      equal(bad.exe, undefined);
    } finally {
      await release.close();
    }
  },
});
