import { equal, ok } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { fixtureLora, fixtureModel } from "../fixtures/models.ts";

Deno.test("requests that ask for an adapter together share one load of it", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  const path = await fixtureLora("tiny-f32-lora");
  const [a, b, c] = await Promise.all([
    loaded.adapter(path),
    loaded.adapter(path),
    loaded.loraChoices([{ path, scale: 0.5 }]),
  ]);
  equal(a, b);
  equal(c[0]?.adapter, a);
  equal(await loaded.adapter(path), a, "and later ones reuse it");
});

Deno.test("a failed adapter load is not remembered: the next request tries again", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/late.gguf`;
    const first = await loaded.adapter(path).catch((error: Error) => error);
    ok(first instanceof Error, "a missing file fails");
    await Deno.copyFile(await fixtureLora("tiny-f32-lora"), path);
    equal((await loaded.adapter(path)).path, path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
