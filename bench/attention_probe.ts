/**
 * Runs the CPU attention probe of `--flash-attn auto` (`src/engine/attention_probe.ts`) for a
 * model's heads on this machine, a few times, and prints both kernels' times and the verdicts,
 * without reading or writing the verdict cache. With `bench/cpu_kernel_check.sh` it shows whether
 * the probe picks the kernel that serves faster on a processor.
 *
 *   deno run -A bench/attention_probe.ts [MODEL] [--threads N] [--runs 3] [--lib-dir DIR]
 *
 * @module
 */

import { join } from "node:path";
import { modelAttentionDims, probeAttentionKernels } from "../src/engine/attention_probe.ts";
import { Llama } from "../src/ffi/llama.ts";
import { Model } from "../src/ffi/model.ts";
import { fixtureModel, REPO_ROOT } from "../tests/fixtures/models.ts";
import { benchArgs } from "./lib/args.ts";

async function main(): Promise<void> {
  const { values, positionals } = benchArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      threads: { type: "string", default: String(navigator.hardwareConcurrency) },
      runs: { type: "string", default: "3" },
      "lib-dir": { type: "string", default: join(REPO_ROOT, "lib/reference") },
    },
  }, import.meta.url);
  Deno.env.set("SHIMMY_LIB_DIR", values["lib-dir"] as string);
  const path = positionals[0] ?? await fixtureModel("bench-125m");
  const threads = Number(values.threads);
  const llama = Llama.open({ gpuBackend: "cpu" });
  const dims = await (async () => {
    using model = await Model.load(llama, path, { devices: [] });
    return modelAttentionDims(model);
  })();
  console.log(`${path}: ${JSON.stringify(dims)}, ${threads} threads, ${llama.libDir}`);
  for (let run = 1; run <= Number(values.runs); run++) {
    const probe = await probeAttentionKernels(llama, dims, { threads });
    const times = (t: { promptMs: number; tokenMs: number }) =>
      `prompt ${t.promptMs.toFixed(2)} ms, token ${t.tokenMs.toFixed(3)} ms`;
    console.log(
      `run ${run}: fused ${times(probe.fused)}; unfused ${
        times(probe.unfused)
      } -> ${probe.kernel}` +
        ` (${probe.elapsedMs.toFixed(0)} ms)`,
    );
  }
}

await main();
