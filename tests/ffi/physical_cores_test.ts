import { equal } from "node:assert/strict";
import { physicalCores, physicalCoresOf } from "../../src/ffi/physical_cores.ts";

Deno.test("CPUs that are threads of one core count as one core", () => {
  // 4 cores with 2 threads each, numbered as Linux does on most x86 machines (siblings n and n+4).
  const interleaved = (cpu: number) => `${cpu % 4},${(cpu % 4) + 4}\n`;
  equal(physicalCoresOf([0, 1, 2, 3, 4, 5, 6, 7], interleaved), 4);
  equal(physicalCoresOf([0, 1, 2, 3], interleaved), 4, "one thread of each core");
  equal(physicalCoresOf([0, 4], interleaved), 1, "both threads of one core");
  // Siblings numbered next to each other.
  const adjacent = (cpu: number) => `${cpu - (cpu % 2)}-${cpu - (cpu % 2) + 1}`;
  equal(physicalCoresOf([0, 1, 2, 3, 4, 5], adjacent), 3);
  // No simultaneous multithreading: every CPU is its own core.
  equal(physicalCoresOf([0, 1], (cpu) => `${cpu}`), 2);
});

Deno.test("unknown siblings leave the count to the caller", () => {
  equal(physicalCoresOf([0, 1], (cpu) => (cpu === 0 ? "0" : undefined)), undefined);
  equal(physicalCoresOf([0], () => " \n"), undefined);
  equal(physicalCoresOf([], () => "0"), undefined);
});

Deno.test("this machine's physical cores are between 1 and its CPUs", () => {
  const cores = physicalCores();
  const cpus = navigator.hardwareConcurrency;
  equal(cores >= 1 && cores <= cpus, true, `${cores} of ${cpus}`);
  if (Deno.build.os === "linux") {
    const siblings = Deno.readTextFileSync(
      "/sys/devices/system/cpu/cpu0/topology/thread_siblings_list",
    ).trim();
    // Without simultaneous multithreading (as on the CI machines) every CPU is a core.
    if (/^\d+$/.test(siblings)) equal(cores, cpus);
  }
});
