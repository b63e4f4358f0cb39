import { deepEqual, equal, ok } from "node:assert/strict";
import { allowedCpus, mappedFile, pinningCpus } from "../../src/ffi/core_pinning.ts";
import { Batch, Context, Llama, Model } from "../../src/ffi/mod.ts";
import { fixtureModel } from "../fixtures/models.ts";

Deno.test("allowedCpus() reads ranges and single CPUs, and nothing from a malformed line", () => {
  deepEqual(allowedCpus("Name:\tdeno\nCpus_allowed_list:\t0-2,5,7-8\nMems:\t0\n"), [
    0,
    1,
    2,
    5,
    7,
    8,
  ]);
  deepEqual(allowedCpus("Cpus_allowed_list:\t3\n"), [3]);
  equal(allowedCpus("Cpus_allowed_list:\t0-x\n"), undefined);
  equal(allowedCpus("Name:\tdeno\n"), undefined);
});

Deno.test("mappedFile() finds the file mapped at an address, not anonymous memory", () => {
  const maps = [
    "7f0000000000-7f0000001000 r--p 00000000 08:01 42   /opt/lib/libggml-cpu.so",
    "7f0000001000-7f0000003000 r-xp 00001000 08:01 42   /opt/lib/libggml-cpu.so",
    "7f0000003000-7f0000004000 rw-p 00000000 00:00 0 ",
    "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0   [stack]",
  ].join("\n");
  equal(mappedFile(0x7f0000002abcn, maps), "/opt/lib/libggml-cpu.so");
  equal(mappedFile(0x7f0000003100n, maps), undefined);
  equal(mappedFile(0x7ffd00000100n, maps), undefined);
});

Deno.test("pinningCpus() pins only a pool with one thread per allowed CPU, on Linux", () => {
  const two = () => "Cpus_allowed_list:\t0-1\n";
  deepEqual(pinningCpus(2, "linux", two), [0, 1]);
  equal(pinningCpus(1, "linux", two), undefined);
  equal(pinningCpus(3, "linux", two), undefined);
  equal(pinningCpus(2, "darwin", two), undefined);
  equal(pinningCpus(2, "windows", two), undefined);
  equal(pinningCpus(2, "linux", () => "Cpus_allowed_list:\t0-15\n"), undefined);
  equal(pinningCpus(2, "linux", () => Deno.readTextFileSync("/no/such/file")), undefined);
});

/** Each thread of this process and the CPUs it may run on. */
function threadCpus(): { tid: string; cpus: string }[] {
  return [...Deno.readDirSync("/proc/self/task")].map((entry) => {
    const dir = `/proc/self/task/${entry.name}`;
    const status = Deno.readTextFileSync(`${dir}/status`);
    return {
      tid: entry.name,
      cpus: /Cpus_allowed_list:\s*(\S+)/.exec(status)?.[1] ?? "",
    };
  });
}

const cpus = Deno.build.os === "linux"
  ? allowedCpus(Deno.readTextFileSync("/proc/self/status"))
  : undefined;

Deno.test({
  name: "a pool with a thread per CPU gives each thread its own CPU, the decoding thread the last",
  ignore: cpus === undefined || cpus.length < 2 || cpus.length > 16,
  async fn() {
    const list = cpus as number[];
    const llama = Llama.open();
    using model = await Model.load(llama, await fixtureModel("tiny-f32"));
    using ctx = await Context.create(model, { nCtx: 128, nBatch: 16, nThreads: list.length });
    using batch = new Batch(llama, 16);
    for (let step = 0; step < 3; step++) {
      batch.clear();
      batch.add(10 + step, step, 0, true);
      await ctx.decode(batch);
    }
    const threads = threadCpus();
    const pinned = threads.filter((t) => /^\d+$/.test(t.cpus));
    // The pool's own threads take a CPU each, and the threads of Deno's blocking pool that ran
    // the decodes (as the pool's first thread) the last one.
    for (const cpu of list) {
      ok(pinned.some((t) => t.cpus === String(cpu)), `CPU ${cpu}: ${JSON.stringify(threads)}`);
    }
    // The event loop's thread (the process's first) stays free.
    ok(!pinned.some((t) => t.tid === String(Deno.pid)));
  },
});
