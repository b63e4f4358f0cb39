import { equal, match, rejects } from "node:assert/strict";
import { join } from "node:path";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { GenerationError } from "../../src/engine/errors.ts";
import type { Switch } from "../../src/engine/gpu.ts";
import { checkSlotFileCells } from "../../src/engine/slot_file_cells.ts";
import { fixtureModel } from "../fixtures/models.ts";

/** Saves slot 1's cache after a greedy request, in a context of four slots. */
async function savedSlot(kvUnified: Switch, flashAttn: Switch) {
  const loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    parallel: 4,
    ctxSize: 1024,
    kvUnified,
    flashAttn,
  });
  const dir = await Deno.makeTempDir({ prefix: "shimmy-slot-cells-" });
  const generation = loaded.scheduler.submit({
    prompt: loaded.model.tokenize("the quick brown fox jumps over the lazy dog"),
    maxTokens: 4,
    sampling: { temperature: 0 },
  });
  await generation.result;
  // The scheduler put the lone request in slot 0; slot 1 takes a copy through a file.
  const good = join(dir, "good.bin");
  await loaded.scheduler.saveSlot(0, good);
  return {
    loaded,
    dir,
    good,
    async [Symbol.asyncDispose]() {
      await loaded.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A copy of the file with the 32-bit word at `offset` (from the end when negative) set. */
async function withWord(from: string, to: string, offset: number, value: number): Promise<void> {
  const bytes = await Deno.readFile(from);
  new DataView(bytes.buffer).setUint32(offset < 0 ? bytes.length + offset : offset, value, true);
  await Deno.writeFile(to, bytes);
}

/** Where the first stream's cell count is: after the header, the token list and the stream count. */
async function firstCountOffset(path: string): Promise<number> {
  const bytes = await Deno.readFile(path);
  return 12 + 4 * new DataView(bytes.buffer).getUint32(8, true) + 4;
}

for (const kvUnified of ["on", "off"] as const) {
  for (const flashAttn of ["on", "off"] as const) {
    Deno.test(`a slot file whose cell count no context could hold is refused before llama.cpp reads it (kv-unified ${kvUnified}, flash-attn ${flashAttn})`, async () => {
      await using saved = await savedSlot(kvUnified, flashAttn);
      const { loaded, dir, good } = saved;
      const limits = {
        streams: kvUnified === "on" ? 1 : 4,
        maxCells: loaded.context.nCtx,
        layers: loaded.model.nLayer,
      };
      await checkSlotFileCells(good, limits);
      equal((await loaded.scheduler.restoreSlot(1, good)).tokens > 0, true);
      // The first stream's count (slot 0's own stream, or the shared one), and the last stream's,
      // which the check reaches only by following the cells and the K and V rows before it.
      const corrupt = [["first", await firstCountOffset(good)], ["last", -4]] as const;
      for (const [which, offset] of kvUnified === "on" ? corrupt.slice(0, 1) : corrupt) {
        // 2^32 - 1 had llama.cpp allocate for ever; 2^20 it refuses itself, later and unclearly.
        const endless = join(dir, `${which}-endless.bin`);
        await withWord(good, endless, offset, 0xffffffff);
        await rejects(checkSlotFileCells(endless, limits), /4294967295 cells, more than this/);
        const bad = join(dir, `${which}.bin`);
        await withWord(good, bad, offset, 2 ** 20);
        await rejects(loaded.scheduler.restoreSlot(1, bad), (error: unknown) => {
          equal(error instanceof GenerationError && error.code, "invalid_request", String(error));
          match(
            String(error),
            new RegExp(`1048576 cells, more than this context's ${limits.maxCells}`),
          );
          return true;
        });
      }
      // The model serves on, and the good file still restores.
      equal((await loaded.scheduler.restoreSlot(2, good)).tokens > 0, true);
    });
  }
}
