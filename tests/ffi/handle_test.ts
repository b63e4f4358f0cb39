import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { join } from "node:path";
import { NativeHandle } from "../../src/ffi/handle.ts";
import { ClosedHandleError } from "../../src/ffi/errors.ts";
import { REPO_ROOT } from "../fixtures/models.ts";

/** A handle over a fake pointer that records when it is freed. */
class FakeHandle extends NativeHandle {
  constructor(name: string, freed: string[], dependsOn: NativeHandle[] = []) {
    super("Fake", Deno.UnsafePointer.create(1n) as Deno.PointerObject, () => freed.push(name), [
      ...dependsOn,
    ]);
  }
}

Deno.test("NativeHandle.close() frees open dependents before the handle itself", () => {
  const freed: string[] = [];
  const model = new FakeHandle("model", freed);
  const pool = new FakeHandle("pool", freed);
  const context = new FakeHandle("context", freed, [model, pool]);
  const sampler = new FakeHandle("sampler", freed, [model]);
  equal(model.dependentCount, 2);
  model.close();
  deepEqual(freed, ["context", "sampler", "model"]);
  ok(context.closed && sampler.closed);
  pool.close();
  deepEqual(freed, ["context", "sampler", "model", "pool"], "the context is not freed twice");
  model.close();
  equal(freed.length, 4, "close is idempotent");
});

Deno.test("NativeHandle: a closed dependent is forgotten by its dependency", () => {
  const freed: string[] = [];
  const model = new FakeHandle("model", freed);
  const adapter = new FakeHandle("adapter", freed, [model]);
  adapter.close();
  equal(model.dependentCount, 0);
  model.close();
  deepEqual(freed, ["adapter", "model"]);
});

Deno.test("NativeHandle refuses a closed dependency and use after close", () => {
  const freed: string[] = [];
  const model = new FakeHandle("model", freed);
  model.close();
  throws(() => new FakeHandle("context", freed, [model]), ClosedHandleError);
  throws(() => model.pointer, ClosedHandleError);
});

Deno.test("NativeHandle backstop: the garbage collector frees dependents before what they depend on", async () => {
  // Handles nobody closed, collected in one GC: parents must still be freed after children.
  const script = `
    import { NativeHandle } from ${JSON.stringify(join(REPO_ROOT, "src/ffi/handle.ts"))};
    class Fake extends NativeHandle {
      constructor(name, log, deps = []) {
        super("Fake", Deno.UnsafePointer.create(1n), () => log.push(name), deps);
      }
    }
    const log = [];
    (() => {
      for (let i = 0; i < 200; i++) {
        const model = new Fake("m" + i, log);
        const pool = new Fake("p" + i, log);
        new Fake("c" + i, log, [model, pool]);
        new Fake("s" + i, log, [model]);
      }
    })();
    for (let round = 0; round < 50 && log.length < 800; round++) {
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    console.log(JSON.stringify(log));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--expose-gc", script],
    stderr: "inherit",
  }).output();
  ok(out.success, "the script ran");
  const log = JSON.parse(new TextDecoder().decode(out.stdout)) as string[];
  equal(log.length, 800, "every handle was freed by the backstop");
  const at = new Map(log.map((name, i) => [name, i]));
  for (let i = 0; i < 200; i++) {
    const model = at.get(`m${i}`)!;
    ok(at.get(`c${i}`)! < model && at.get(`s${i}`)! < model, `model ${i} freed after its users`);
    ok(at.get(`c${i}`)! < at.get(`p${i}`)!, `pool ${i} freed after its context`);
  }
});
