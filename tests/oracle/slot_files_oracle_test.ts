/**
 * Oracle test: slot files cross between Shimmy and llama.cpp's own server built from the same
 * source, both ways. A slot that one server saved after a greedy completion is restored by the
 * other (the same token count), whose next request with that prompt evaluates only its last
 * token and answers what the first server answered.
 */

import { equal, ok } from "node:assert/strict";
import { fixtureModel } from "../fixtures/models.ts";
import { referenceDir, skipBecause } from "../helpers.ts";
import { postJson, startServer } from "../server/harness.ts";
import { startReferenceServer } from "./reference_server.ts";

const reference = referenceDir();

const ignore = reference === undefined &&
  skipBecause(
    "slot files oracle",
    "reference tools not built: run scripts/build-libllama.sh --reference-tools --out lib/reference",
  );

/** A greedy `/completion` of 8 tokens: its text and the prompt tokens taken from the cache. */
async function complete(url: string, prompt: string) {
  const response = await postJson(`${url}/completion`, { prompt, n_predict: 8, temperature: 0 });
  equal(response.status, 200);
  const body = await response.json();
  return { text: body.content as string, cached: body.timings.cache_n as number };
}

async function slot(url: string, action: string, filename: string) {
  const response = await postJson(`${url}/slots/0?action=${action}`, { filename });
  const body = await response.json();
  equal(response.status, 200, JSON.stringify(body));
  return body;
}

/**
 * A greedy completion on the server at `from`, its slot saved to `file` and restored by the server
 * at `to`: the same token count and bytes, and `to` answers the prompt from the restored cache
 * with the same text.
 */
async function crossOver(from: string, to: string, file: string, prompt: string) {
  const first = await complete(from, prompt);
  const saved = await slot(from, "save", file);
  const restored = await slot(to, "restore", file);
  equal(restored.n_restored, saved.n_saved);
  equal(restored.n_read, saved.n_written);
  const again = await complete(to, prompt);
  ok(again.cached > 5, `${to} took the prompt from the restored cache: ${again.cached}`);
  equal(again.text, first.text);
}

Deno.test({
  name: "a slot saved by llama-server restores in Shimmy, and one saved by Shimmy in llama-server",
  ignore,
  fn: async () => {
    const folder = await Deno.makeTempDir({ prefix: "shimmy-slot-oracle-" });
    try {
      // The same KV layout on both sides: one slot of 512 cells, no fused attention (which
      // stores V untransposed).
      await using shimmy = await startServer({
        load: { parallel: 1, ctxSize: 512, flashAttn: "off" },
        settings: { slotSavePath: folder },
      });
      await using server = await startReferenceServer(
        reference as string,
        await fixtureModel("tiny-f32"),
        ["-fa", "off", "--slot-save-path", `${folder}/`],
      );

      await crossOver(shimmy.url, server.url, "shimmy.bin", "Once upon a time there was a fox.");
      await crossOver(server.url, shimmy.url, "llama.bin", "The keeper climbed to the lamp.");
    } finally {
      await Deno.remove(folder, { recursive: true });
    }
  },
});
