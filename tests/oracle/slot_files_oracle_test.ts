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

      const ours = "Once upon a time there was a little fox who lived in the woods.";
      const ourFirst = await complete(shimmy.url, ours);
      const ourSave = await slot(shimmy.url, "save", "shimmy.bin");
      const theirRestore = await slot(server.url, "restore", "shimmy.bin");
      equal(theirRestore.n_restored, ourSave.n_saved);
      equal(theirRestore.n_read, ourSave.n_written);
      const theirAnswer = await complete(server.url, ours);
      ok(theirAnswer.cached > 10, `llama-server used the restored cache: ${theirAnswer.cached}`);
      equal(theirAnswer.text, ourFirst.text);

      const theirs = "The lighthouse keeper climbed the stairs every evening to light the lamp.";
      const theirFirst = await complete(server.url, theirs);
      const theirSave = await slot(server.url, "save", "llama.bin");
      const ourRestore = await slot(shimmy.url, "restore", "llama.bin");
      equal(ourRestore.n_restored, theirSave.n_saved);
      equal(ourRestore.n_read, theirSave.n_written);
      const ourAnswer = await complete(shimmy.url, theirs);
      ok(ourAnswer.cached > 10, `Shimmy used the restored cache: ${ourAnswer.cached}`);
      equal(ourAnswer.text, theirFirst.text);
    } finally {
      await Deno.remove(folder, { recursive: true });
    }
  },
});
