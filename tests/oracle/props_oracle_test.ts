/**
 * Oracle test: Shimmy's `GET /props` tells what llama.cpp's own server built from the same source
 * tells of the same model and sizes: the context of one slot, the slots, the chat template, BOS and
 * EOS, the modalities, and default generation settings under the names llama-server uses. `?model=`
 * picks among several models.
 */

import { deepEqual, equal, notEqual, ok } from "node:assert/strict";
import { fixtureModel } from "../fixtures/models.ts";
import { referenceDir, skipBecause } from "../helpers.ts";
import { startServer } from "../server/harness.ts";
import { startReferenceServer } from "./reference_server.ts";

const reference = referenceDir();

const ignore = reference === undefined &&
  skipBecause(
    "props oracle",
    "reference tools not built: run scripts/build-libllama.sh --reference-tools --out lib/reference",
  );

type Props = Record<string, unknown> & {
  default_generation_settings: { n_ctx: number; params: Record<string, unknown> };
};

async function propsOf(url: string): Promise<Props> {
  const response = await fetch(url);
  equal(response.status, 200, url);
  return await response.json();
}

Deno.test({
  name: "/props tells what llama-server tells of the same model",
  ignore,
  fn: async () => {
    const model = await fixtureModel("qwen2");
    await using shimmy = await startServer({
      fixtures: ["qwen2", "tiny-f32"],
      load: { parallel: 2, ctxSize: 256 },
    });
    await using server = await startReferenceServer(reference as string, model, [
      "-np",
      "2",
      "-c",
      "512",
    ]);
    const ours = await propsOf(`${shimmy.url}/props`);
    const theirs = await propsOf(`${server.url}/props`);
    for (const key of ["total_slots", "chat_template", "bos_token", "eos_token", "modalities"]) {
      deepEqual(ours[key], theirs[key], key);
    }
    equal(ours.default_generation_settings.n_ctx, theirs.default_generation_settings.n_ctx);
    // Shimmy's --ctx-size is one slot's, llama-server's -c the slots' together.
    equal(ours.default_generation_settings.n_ctx, 256);
    const known = Object.keys(theirs.default_generation_settings.params);
    const ourKeys = Object.keys(ours.default_generation_settings.params);
    deepEqual(ourKeys.filter((key) => !known.includes(key)), []);
    ok(ourKeys.length >= 25, `${ourKeys.length} settings`);
    deepEqual(Object.keys(ours).filter((key) => !Object.keys(theirs).includes(key)), []);
    equal(ours.model_alias, "qwen2");
    // Another model by name; an unknown one is a 404.
    const tiny = await propsOf(`${shimmy.url}/props?model=tiny-f32`);
    equal(tiny.model_alias, "tiny-f32");
    notEqual(tiny.chat_template, ours.chat_template);
    equal(tiny.default_generation_settings.n_ctx, 256);
    const unknown = await fetch(`${shimmy.url}/props?model=nope`);
    equal(unknown.status, 404);
    await unknown.body?.cancel();
    const posted = await fetch(`${shimmy.url}/props`, { method: "POST", body: "{}" });
    equal(posted.status, 405);
    await posted.body?.cancel();
    equal((await fetch(`${shimmy.url}/v1/health`).then((r) => r.json())).status, "ok");
  },
});

Deno.test("/props shows the --chat-template in use: a file's source, or none for a built-in family", async () => {
  await using family = await startServer({ settings: { chatTemplate: { family: "chatml" } } });
  equal((await propsOf(`${family.url}/props`)).chat_template, "");
  const source = "{{ messages[0]['content'] }}";
  await using file = await startServer({
    settings: { chatTemplate: { template: source, path: "/tmp/t.jinja" } },
  });
  equal((await propsOf(`${file.url}/props`)).chat_template, source);
});
