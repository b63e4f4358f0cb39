import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import {
  packageExecutable,
  REPO_PLACEHOLDER,
  writeInstallers,
  writeReleaseSums,
} from "../../scripts/release.ts";
import { crc32 } from "../../scripts/zip.ts";
import { REPO_ROOT } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

async function sh(command: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(command, { args, env, stdin: "null" }).output();
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** A release folder as the publish job has it: two archives, the sums, the installers. */
async function releaseFolder(): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "shimmy-release-" });
  const exe = join(root, "exe");
  await Deno.writeTextFile(exe, "#!/bin/sh\necho fake\n");
  const dist = join(root, "release");
  await packageExecutable(exe, "shimmy-linux-x64", dist);
  await packageExecutable(exe, "shimmy-windows-x64", dist);
  await writeInstallers(REPO_ROOT, "someone/shimmy", dist);
  await writeReleaseSums(dist);
  return root;
}

Deno.test("crc32 matches the standard check value", () => {
  equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
});

Deno.test({
  name: "release archives hold the executable under its plain name, and SHA256SUMS lists them",
  ignore: Deno.build.os === "windows" &&
    skipBecause("release archives", "needs unzip and sha256sum"),
  async fn() {
    const root = await releaseFolder();
    const dist = join(root, "release");
    try {
      const tar = await sh("tar", ["-tvzf", join(dist, "shimmy-linux-x64.tar.gz")]);
      match(tar.stdout, /^-rwxr-xr-x .* shimmy\n$/);
      const unzip = await sh("unzip", ["-p", join(dist, "shimmy-windows-x64.zip"), "shimmy.exe"])
        .catch(() => undefined);
      if (unzip) equal(unzip.stdout, "#!/bin/sh\necho fake\n");
      const sums = await sh("sh", ["-c", `cd "${dist}" && sha256sum -c --strict SHA256SUMS`]);
      equal(sums.code, 0, sums.stderr);
      deepEqual(sums.stdout.trim().split("\n"), [
        "shimmy-linux-x64.tar.gz: OK",
        "shimmy-windows-x64.zip: OK",
      ]);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("published install scripts name the repository; the checkout's ask for SHIMMY_REPO", async () => {
  const root = await releaseFolder();
  try {
    for (const name of ["install.sh", "install.ps1"]) {
      const text = await Deno.readTextFile(join(root, "release", name));
      ok(!text.includes(REPO_PLACEHOLDER), name);
      ok(text.includes("someone/shimmy"), name);
    }
    const published = await sh("bash", [join(root, "release", "install.sh"), "--flavour", "x"]);
    equal(published.code, 1);
    match(published.stderr, /--flavour must be auto, cpu, cuda or vulkan, not x/);
    const bare = await sh("bash", [join(REPO_ROOT, "install.sh")], { SHIMMY_REPO: "" });
    equal(bare.code, 1);
    match(bare.stderr, /set SHIMMY_REPO=owner\/name/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test({
  name: "publish.sh checks every archive against SHA256SUMS before it calls gh",
  ignore: Deno.build.os === "windows" &&
    skipBecause("publish.sh", "a bash script for Linux runners"),
  async fn() {
    const root = await releaseFolder();
    const dist = join(root, "release");
    const log = join(root, "gh.log");
    const gh = join(root, "gh");
    await Deno.writeTextFile(
      gh,
      `#!/bin/sh\necho "$*" >> "${log}"\n[ "$1 $2" = "release view" ] && exit 1\nexit 0\n`,
    );
    await Deno.chmod(gh, 0o755);
    const publish = join(REPO_ROOT, "scripts", "ci", "publish.sh");
    try {
      const ok1 = await sh("bash", [publish, "v1.2.3", dist], { GH: gh });
      equal(ok1.code, 0, ok1.stderr);
      const calls = (await Deno.readTextFile(log)).trim().split("\n");
      equal(calls[0], "release view v1.2.3");
      match(calls[1]!, /^release create v1\.2\.3 --title Shimmy v1\.2\.3/);
      match(
        calls[2]!,
        /^release upload v1\.2\.3 .*shimmy-linux-x64\.tar\.gz .*SHA256SUMS .*install\.sh .*install\.ps1 --clobber$/,
      );
      await Deno.remove(log);
      await Deno.writeTextFile(join(dist, "shimmy-linux-x64.tar.gz"), "tampered");
      const bad = await sh("bash", [publish, "v1.2.3", dist], { GH: gh });
      equal(bad.code, 1);
      match(bad.stdout + bad.stderr, /shimmy-linux-x64\.tar\.gz: FAILED/);
      equal(await Deno.stat(log).then(() => true, () => false), false, "gh was not called");
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("toolchain.sh installs the CUDA toolkit or the Vulkan SDK for the runner's OS", async () => {
  const toolchain = join(REPO_ROOT, "scripts", "ci", "toolchain.sh");
  const linux = await sh("bash", [toolchain, "cuda", "--dry-run"], { SHIMMY_BUILD_OS: "Linux" });
  equal(linux.code, 0, linux.stderr);
  match(
    linux.stdout,
    /apt-get install -y -qq cuda-nvcc-12-8 cuda-cudart-dev-12-8 libcublas-dev-12-8/,
  );
  match(linux.stdout, /^env CUDA_PATH=\/usr\/local\/cuda-12\.8$/m);
  const windows = await sh("bash", [toolchain, "cuda", "--dry-run"], {
    SHIMMY_BUILD_OS: "MINGW64_NT-10.0",
    RUNNER_TEMP: "/t",
  });
  match(windows.stdout, /cuda\.exe -s nvcc_12\.8 cudart_12\.8 cublas_12\.8 cublas_dev_12\.8/);
  match(
    windows.stdout,
    /^env CUDA_PATH=C:\\Program Files\\NVIDIA GPU Computing Toolkit\\CUDA\\v12\.8$/m,
  );
  const vulkan = await sh("bash", [toolchain, "vulkan", "--dry-run"], { SHIMMY_BUILD_OS: "Linux" });
  match(vulkan.stdout, /^env VULKAN_SDK=.*\/x86_64$/m);
  const mac = await sh("bash", [toolchain, "metal", "--dry-run"], { SHIMMY_BUILD_OS: "Darwin" });
  equal(mac.code, 0, mac.stderr);
  const bad = await sh("bash", [toolchain, "rocm", "--dry-run"]);
  equal(bad.code, 1);
});
