import { rejects } from "node:assert/strict";
import { join } from "node:path";
import { smokeTest } from "../../scripts/smoke.ts";
import { describeLibraries } from "../../src/ffi/library.ts";
import { REPO_ROOT } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";

Deno.test({
  name:
    "the release smoke test passes on the checkout: version, two gpu-info at once, serve and one chat",
  ignore: !describeLibraries() && skipBecause("smoke", "no libraries in lib/ (deno task setup)"),
  async fn() {
    await smokeTest([Deno.execPath(), "run", "-A", join(REPO_ROOT, "main.ts")], 60);
  },
});

Deno.test({
  name:
    "the release smoke test fails an executable whose --version is wrong, run from a read-only folder",
  ignore: Deno.build.os === "windows" && skipBecause("smoke", "the stand-in is a shell script"),
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const exe = join(dir, "shimmy");
      await Deno.writeTextFile(
        exe,
        '#!/bin/sh\nls -ld "$(dirname "$0")" | cut -c1-10\n',
      );
      await Deno.chmod(exe, 0o755);
      await rejects(smokeTest([exe], 5), /--version printed "dr-xr-xr-x\\n"/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
