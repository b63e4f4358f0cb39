import { deepEqual } from "node:assert/strict";
import { join } from "node:path";
import { REPO_ROOT } from "../fixtures/models.ts";

Deno.test("the server layer never imports src/ffi (it asks engine and models)", async () => {
  const offenders: string[] = [];
  const dir = join(REPO_ROOT, "src", "server");
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !entry.name.endsWith(".ts")) continue;
    const text = await Deno.readTextFile(join(dir, entry.name));
    if (/from\s+["'][^"']*\/ffi\//.test(text)) offenders.push(entry.name);
  }
  deepEqual(offenders, []);
});
