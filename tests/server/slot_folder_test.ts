/**
 * The bounded slot folder on its own, with files written by hand: what counts toward the bound,
 * the disk's free space kept, and writes that take turns.
 */

import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { HttpError } from "../../src/server/http_error.ts";
import { MAX_SLOT_FILES, SlotFolder } from "../../src/server/slot_folder.ts";

/** A temporary folder, removed with everything in it when disposed. */
async function tempFolder(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "shimmy-slot-folder-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** A write of `bytes` bytes to `name` in `folder`, as llama.cpp's would be. */
function writer(folder: string, name: string, bytes: number): () => Promise<number> {
  return async () => {
    await Deno.writeFile(join(folder, name), new Uint8Array(bytes));
    return bytes;
  };
}

Deno.test("SlotFolder counts the regular files directly in the folder, not links, folders or what they hold", async () => {
  await using temp = await tempFolder();
  await Deno.writeFile(join(temp.path, "a.bin"), new Uint8Array(300));
  await Deno.writeFile(join(temp.path, "b.bin"), new Uint8Array(200));
  await Deno.mkdir(join(temp.path, "sub"));
  await Deno.writeFile(join(temp.path, "sub", "deep.bin"), new Uint8Array(5000));
  await Deno.symlink(join(temp.path, "sub", "deep.bin"), join(temp.path, "link.bin"));
  const folder = new SlotFolder(temp.path, { maxBytes: 1000 });
  deepEqual(await folder.usage("a.bin"), { used: 500, files: 2, existing: 300 });
  deepEqual(await folder.usage("new.bin"), { used: 500, files: 2, existing: undefined });
  equal(await folder.write("c.bin", 500, writer(temp.path, "c.bin", 500)), 500, "to the byte");
  await rejects(folder.write("d.bin", 1, writer(temp.path, "d.bin", 1)), (error) => {
    ok(error instanceof HttpError);
    equal(error.status, 507);
    equal(error.code, "slot_folder_full");
    return true;
  });
});

Deno.test("SlotFolder refuses a write that would leave the disk less than its reserve, and writes nothing", async () => {
  await using temp = await tempFolder();
  const gib = 2 ** 30;
  let space = { free: 1.5 * gib, total: 100 * gib };
  const folder = new SlotFolder(temp.path, {
    maxBytes: Infinity,
    diskSpace: () => Promise.resolve(space),
  });
  let wrote = false;
  const write = () => {
    wrote = true;
    return Promise.resolve(1);
  };
  // 1 GiB is the smaller reserve here (5 % would be 5 GiB).
  await rejects(folder.write("big.bin", 0.6 * gib, write), (error) => {
    ok(error instanceof HttpError);
    equal(error.status, 507);
    equal(error.code, "disk_space_low");
    match(error.message, /has 1\.5 GiB free; saving "big\.bin" \(614\.4 MiB\) would leave less/);
    match(error.message, /1\.0 GiB kept free: delete slot files there, or free space on the disk$/);
    return true;
  });
  equal(wrote, false);
  equal(await folder.write("fits.bin", 0.4 * gib, write), 1);
  // On a 10 GiB disk, 5 % (512 MiB) is the smaller reserve.
  space = { free: 1.5 * gib, total: 10 * gib };
  equal(await folder.write("big.bin", 0.9 * gib, write), 1);
  deepEqual(await Array.fromAsync(Deno.readDir(temp.path)), [], "nothing was written by hand");
});

Deno.test("SlotFolder writes to the folder take turns, so two at once cannot both pass the bound", async () => {
  await using temp = await tempFolder();
  const folder = new SlotFolder(temp.path, { maxBytes: 1500 });
  const slowWrite = (name: string) => async () => {
    await new Promise((resolve) => setTimeout(resolve, 50)); // both checks would pass meanwhile
    return await writer(temp.path, name, 1000)();
  };
  const results = await Promise.allSettled([
    folder.write("a.bin", 1000, slowWrite("a.bin")),
    folder.write("b.bin", 1000, slowWrite("b.bin")),
  ]);
  deepEqual(results.map((r) => r.status), ["fulfilled", "rejected"]);
  equal((await folder.usage()).used, 1000);
});

Deno.test("SlotFolder removes a new file whose write failed, and keeps a replaced one", async () => {
  await using temp = await tempFolder();
  const folder = new SlotFolder(temp.path);
  await folder.write("new.bin", 10, async () => {
    await Deno.writeFile(join(temp.path, "new.bin"), new Uint8Array(3)); // cut short
    return 0;
  });
  await Deno.writeFile(join(temp.path, "old.bin"), new Uint8Array(10));
  await rejects(folder.write("old.bin", 10, () => Promise.reject(new Error("disk gone"))));
  deepEqual((await Array.fromAsync(Deno.readDir(temp.path))).map((e) => e.name), ["old.bin"]);
});

Deno.test("SlotFolder takes no new file past MAX_SLOT_FILES, and still replaces one", async () => {
  await using temp = await tempFolder();
  for (let i = 0; i < MAX_SLOT_FILES; i++) {
    await Deno.writeFile(join(temp.path, `f${i}.bin`), new Uint8Array(1));
  }
  const folder = new SlotFolder(temp.path);
  await rejects(folder.write("new.bin", 1, writer(temp.path, "new.bin", 1)), (error) => {
    ok(error instanceof HttpError);
    equal(error.status, 507);
    equal(error.code, "slot_folder_full");
    match(error.message, /holds 4096 files/);
    return true;
  });
  equal(await folder.write("f7.bin", 2, writer(temp.path, "f7.bin", 2)), 2, "a name it holds");
});
