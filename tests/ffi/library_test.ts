import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import { join } from "node:path";
import {
  findLibraryFile,
  flavourCandidates,
  libraryDirCandidates,
  LibraryNotFoundError,
  openNativeLibraries,
  platformName,
} from "../../src/ffi/library.ts";

Deno.test("findLibraryFile() accepts both the source-build and the prebuilt naming schemes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "libllama.v0.5.0.so"), "");
    await Deno.writeTextFile(join(dir, "libllama-common.so"), "");
    await Deno.writeTextFile(join(dir, "libggml-base.so"), "");
    await Deno.writeTextFile(join(dir, "ggml.dll"), "");
    equal(findLibraryFile(dir, "llama"), join(dir, "libllama.v0.5.0.so"));
    equal(findLibraryFile(dir, "ggml-base"), join(dir, "libggml-base.so"));
    equal(findLibraryFile(dir, "ggml"), join(dir, "ggml.dll"));
    equal(findLibraryFile(join(dir, "missing"), "llama"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("flavourCandidates() tries GPU flavours first, then the plain folder", () => {
  const base = platformName();
  const auto = flavourCandidates("auto");
  equal(auto[auto.length - 1], base);
  deepEqual(flavourCandidates("cpu")[0], base);
  if (!base.startsWith("mac")) {
    deepEqual(flavourCandidates("cuda"), [`${base}-cuda`, base]);
    deepEqual(flavourCandidates("vulkan"), [`${base}-vulkan`, base]);
  }
});

Deno.test("libraryDirCandidates() puts an explicit folder before everything else", () => {
  deepEqual(libraryDirCandidates({ libDir: "/opt/llama" }), [{
    dir: "/opt/llama",
    from: "--lib-dir",
  }]);
  const dirs = libraryDirCandidates({ appRoot: "/app", gpuBackend: "cpu" });
  equal(dirs[0]?.dir, join("/app", "lib", platformName()));
});

Deno.test("a missing library gives one clear error listing every path tried and the fix", () => {
  const previous = Deno.env.get("SHIMMY_LIB_DIR");
  Deno.env.delete("SHIMMY_LIB_DIR");
  try {
    throws(
      () => openNativeLibraries({ appRoot: "/nonexistent-shimmy-root", gpuBackend: "auto" }),
      (caught: unknown) => {
        ok(caught instanceof LibraryNotFoundError);
        ok(caught.tried.length >= flavourCandidates("auto").length);
        for (const flavour of flavourCandidates("auto")) {
          match(caught.message, new RegExp(`/nonexistent-shimmy-root/lib/${flavour}`));
        }
        match(caught.message, /deno task setup/);
        match(caught.message, /SHIMMY_LIB_DIR/);
        return true;
      },
    );
  } finally {
    if (previous !== undefined) Deno.env.set("SHIMMY_LIB_DIR", previous);
  }
});

Deno.test("a folder whose libllama cannot be opened is reported with its reason", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "libllama.so"), "not a shared library");
    throws(() => openNativeLibraries({ libDir: dir }), (caught: unknown) => {
      ok(caught instanceof LibraryNotFoundError);
      match(caught.message, new RegExp(`${dir}/libllama.so`));
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
