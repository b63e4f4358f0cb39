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
