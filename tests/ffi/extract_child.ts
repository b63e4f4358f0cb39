/**
 * One "executable starting": extracts a library folder, waiting at the rename until the other
 * racer has also staged its copy, then prints the folder and the hash of every file in it.
 * Run by `extract_test.ts` as two concurrent processes.
 *
 * Usage: deno run -A extract_child.ts SOURCE CACHE BARRIER ME OTHER
 *
 * @module
 */

import { join } from "node:path";
import { extractEmbeddedLibraries, sha256Hex } from "../../src/ffi/extract.ts";

const [source, cache, barrier, me, other] = Deno.args as [string, string, string, string, string];
const dir = extractEmbeddedLibraries(source, {
  cacheDir: cache,
  beforeRename() {
    Deno.writeTextFileSync(join(barrier, me), "");
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      try {
        Deno.statSync(join(barrier, other));
        return;
      } catch {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
      }
    }
    throw new Error("The other process never reached the rename");
  },
});
const hashes: Record<string, string> = {};
for (const entry of Deno.readDirSync(dir)) {
  hashes[entry.name] = sha256Hex(Deno.readFileSync(join(dir, entry.name)));
}
console.log(JSON.stringify({ dir, hashes }));
