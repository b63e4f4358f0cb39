/**
 * `shimmy gpu-info [--json]`: every ggml backend device with its type, description and
 * memory, and which one `--gpu-backend auto` would choose.
 *
 * @module
 */

import { planDevices } from "../engine/gpu.ts";
import { Llama } from "../ffi/llama.ts";
import type { GlobalFlags } from "./global_flags.ts";
import { formatBytes, formatTable } from "./model_table.ts";
import { parseFlags } from "./flags.ts";

/** Usage text of `shimmy gpu-info`. */
export const GPU_INFO_USAGE = `Usage: shimmy gpu-info [--json]

Lists the compute devices llama.cpp sees (from the libraries Shimmy loads) and the one
--gpu-backend auto picks.

Examples:
  shimmy gpu-info
  shimmy --gpu-backend vulkan gpu-info --json`;

/**
 * Runs `shimmy gpu-info`.
 *
 * @param args Arguments after the command name.
 * @param globals Global flags.
 * @returns The exit code.
 */
export function gpuInfoMain(args: string[], globals: GlobalFlags): Promise<number> {
  const values = parseFlags(args, {
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  }).values;
  if (values.help) {
    console.log(GPU_INFO_USAGE);
    return Promise.resolve(0);
  }
  const llama = Llama.open({ gpuBackend: globals.gpuBackend ?? "auto", verbose: globals.verbose });
  const devices = llama.devices();
  const auto = planDevices(devices, "auto");
  const report = {
    lib_dir: llama.libDir,
    devices: devices.map((d) => ({
      index: d.index,
      name: d.name,
      backend: d.backend,
      type: d.type,
      description: d.description,
      free_bytes: d.freeBytes,
      total_bytes: d.totalBytes,
    })),
    auto: {
      backend: auto.backend,
      devices: auto.devices.map((d) => d.name),
    },
  };
  if (values.json) {
    console.log(JSON.stringify(report, null, 2));
    return Promise.resolve(0);
  }
  console.log(`Libraries: ${llama.libDir}`);
  console.log(
    formatTable(
      ["#", "DEVICE", "BACKEND", "TYPE", "DESCRIPTION", "FREE", "TOTAL"],
      devices.map((d) => [
        String(d.index),
        d.name,
        d.backend,
        d.type,
        d.description,
        formatBytes(d.freeBytes),
        formatBytes(d.totalBytes),
      ]),
    ).join("\n"),
  );
  const chosen = auto.devices.map((d) => d.name).join(", ");
  console.log(`--gpu-backend auto uses: ${auto.backend}${chosen ? ` (${chosen})` : ""}`);
  return Promise.resolve(0);
}
