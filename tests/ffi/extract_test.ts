import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import { join } from "node:path";
import {
  extractEmbeddedLibraries,
  LIBRARY_SUMS,
  parseSums,
  sha256Hex,
  writeSums,
} from "../../src/ffi/extract.ts";

/** An "install folder" with an embedded-looking lib/linux-x64/ of a few megabytes. */
async function fakeInstall(): Promise<{ root: string; source: string; cache: string }> {
  const root = await Deno.makeTempDir({ prefix: "shimmy-extract-" });
  const source = join(root, "install", "lib", "linux-x64");
  await Deno.mkdir(source, { recursive: true });
  const names: string[] = [];
  for (const [i, name] of ["libllama.so", "libggml.so", "libggml-base.so"].entries()) {
    const data = new Uint8Array(2 * 1024 * 1024 + i);
    crypto.getRandomValues(data.subarray(0, 65536));
    await Deno.writeFile(join(source, name), data);
    names.push(name);
  }
  await Deno.writeTextFile(join(source, "BUILD_INFO.json"), '{"flavour":"linux-x64"}\n');
  names.push("BUILD_INFO.json");
  writeSums(source, names);
  return { root, source, cache: join(root, "cache") };
}

function listing(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("two processes extracting at once both get one complete folder, and no temporary is left", async () => {
  const { root, source, cache } = await fakeInstall();
  try {
    const barrier = join(root, "barrier");
    await Deno.mkdir(barrier);
    const child = new URL("./extract_child.ts", import.meta.url).pathname;
    const racer = (me: string, other: string) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", child, source, cache, barrier, me, other],
        stdin: "null",
      }).output();
    const results = await Promise.all([racer("a", "b"), racer("b", "a")]);
    const outputs = results.map((r) => {
      equal(r.code, 0, new TextDecoder().decode(r.stderr));
      return JSON.parse(new TextDecoder().decode(r.stdout));
    });
    equal(outputs[0].dir, outputs[1].dir);
    const expected: Record<string, string> = {};
    for (const { name, sha256 } of parseSums(Deno.readTextFileSync(join(source, LIBRARY_SUMS)))) {
      expected[name] = sha256;
    }
    expected[LIBRARY_SUMS] = sha256Hex(Deno.readFileSync(join(source, LIBRARY_SUMS)));
    deepEqual(outputs[0].hashes, expected);
    deepEqual(outputs[1].hashes, expected);
    deepEqual(listing(join(cache, "libs")), [outputs[0].dir.split("/").pop()]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("extraction writes nothing beside a read-only install folder and is reused on the next start", async () => {
  const { root, source, cache } = await fakeInstall();
  const install = join(root, "install");
  try {
    const before = { install: listing(install), lib: listing(source) };
    await Deno.chmod(source, 0o555);
    await Deno.chmod(join(install, "lib"), 0o555);
    await Deno.chmod(install, 0o555);
    const dir = extractEmbeddedLibraries(source, { cacheDir: cache });
    match(dir, /libs[/\\]linux-x64-[0-9a-f]{16}$/);
    deepEqual({ install: listing(install), lib: listing(source) }, before);
    const mtime = Deno.statSync(join(dir, "libllama.so")).mtime;
    equal(extractEmbeddedLibraries(source, { cacheDir: cache }), dir);
    deepEqual(Deno.statSync(join(dir, "libllama.so")).mtime, mtime, "not copied again");
  } finally {
    await Deno.chmod(install, 0o755);
    await Deno.chmod(join(install, "lib"), 0o755);
    await Deno.chmod(source, 0o755);
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a file deleted from the extracted folder is restored on the next start", async () => {
  const { root, source, cache } = await fakeInstall();
  try {
    const dir = extractEmbeddedLibraries(source, { cacheDir: cache });
    await Deno.remove(join(dir, "libggml.so"));
    equal(extractEmbeddedLibraries(source, { cacheDir: cache }), dir);
    deepEqual(
      Deno.readFileSync(join(dir, "libggml.so")),
      Deno.readFileSync(join(source, "libggml.so")),
    );
    equal(listing(join(cache, "libs")).length, 1);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("an embedded file that does not match its checksum is refused, and nothing is left", async () => {
  const { root, source, cache } = await fakeInstall();
  try {
    await Deno.writeFile(join(source, "libggml.so"), new Uint8Array([1, 2, 3]));
    throws(
      () => extractEmbeddedLibraries(source, { cacheDir: cache }),
      /Cannot extract the native libraries into .*libggml\.so does not match its checksum/s,
    );
    deepEqual(listing(join(cache, "libs")), []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("an unwritable cache gives an error that names the folder and SHIMMY_CACHE_DIR", async () => {
  const { root, source } = await fakeInstall();
  try {
    const file = join(root, "not-a-folder");
    await Deno.writeTextFile(file, "");
    throws(
      () => extractEmbeddedLibraries(source, { cacheDir: join(file, "cache") }),
      (error: Error) => {
        match(error.message, /Cannot extract the native libraries into .*not-a-folder/);
        match(error.message, /SHIMMY_CACHE_DIR/);
        ok(error.cause);
        return true;
      },
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("SHA256SUMS lines that would leave the folder are refused", () => {
  const hex = "a".repeat(64);
  deepEqual(parseSums(`${hex}  libllama.so\n`), [{ sha256: hex, name: "libllama.so" }]);
  throws(() => parseSums(`${hex}  ../evil.so\n`), /Malformed SHA256SUMS line/);
  throws(() => parseSums(`${hex}  sub/evil.so\n`), /Malformed/);
  throws(() => parseSums(`nothex  x.so\n`), /Malformed/);
});
