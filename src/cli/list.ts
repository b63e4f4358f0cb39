/**
 * `shimmy list [--json] [-s|--short]`: the models discovery finds, as a table, as names only,
 * or as JSON.
 *
 * @module
 */

import { discoverModels, type DiscoveryOptions } from "../models/discovery.ts";
import type { GlobalFlags } from "./global_flags.ts";
import { modelTable } from "./model_table.ts";
import { discoveryOptions } from "./model_lookup.ts";
import { UsageError } from "./usage_error.ts";
import { parseFlags } from "./flags.ts";
import { printable } from "../util/printable.ts";

/** Usage text of `shimmy list`. */
export const LIST_USAGE = `Usage: shimmy list [options]

Lists the models found on this machine: name, size, quantization, architecture, training
context, source and path. Any name shown works wherever a model is expected.

Options:
  -s, --short             Print the names only, one per line
  --json                  Print the models as a JSON array
  --model PATH            Also look at this file or folder; repeatable
  --model-dirs DIRS       Extra model folders, ';'-separated

Examples:
  shimmy list
  shimmy list --short
  shimmy --model-dirs ~/gguf list --json`;

/** Parsed `list` options. */
export interface ListArgs {
  /** `--json`. */
  json: boolean;
  /** `-s` / `--short`. */
  short: boolean;
  /** `--model PATH` values. */
  models: string[];
}

/**
 * Parses `list`'s arguments (global flags already removed).
 *
 * @param args Arguments after the command name.
 * @returns The options, or undefined when `--help` was asked.
 * @throws {UsageError} on bad flags or arguments.
 * @example
 * ```ts
 * parseListArgs(["-s"]); // { json: false, short: true, models: [] }
 * ```
 */
export function parseListArgs(args: string[]): ListArgs | undefined {
  const parsed = parseFlags(args, {
    json: { type: "boolean", default: false },
    short: { type: "boolean", short: "s", default: false },
    model: { type: "string", short: "m", multiple: true },
    help: { type: "boolean", short: "h", default: false },
  });
  const v = parsed.values;
  if (v.help) return undefined;
  if (v.json && v.short) throw new UsageError("--json and --short cannot be used together");
  return { json: v.json, short: v.short, models: v.model ?? [] };
}

/**
 * Runs `shimmy list`.
 *
 * @param args Arguments after the command name.
 * @param globals Global flags (`--model-dirs`).
 * @param discovery Discovery options to start from. Default `{}` (the process environment and
 *   home folder); tests pass `env`, `home` and `cwd`.
 * @returns The exit code: 0, also when no model was found (a hint goes to stderr).
 * @example
 * ```ts
 * Deno.exit(await listMain(["--short"], { verbose: false }));
 * ```
 */
export async function listMain(
  args: string[],
  globals: GlobalFlags,
  discovery: DiscoveryOptions = {},
): Promise<number> {
  const options = parseListArgs(args);
  if (!options) {
    console.log(LIST_USAGE);
    return 0;
  }
  const report = await discoverModels(discoveryOptions(globals, options.models, discovery));
  if (options.json) {
    console.log(JSON.stringify(report.models, null, 2));
    return 0;
  }
  if (options.short) {
    for (const model of report.models) console.log(printable(model.name));
    return 0;
  }
  if (report.models.length === 0) {
    console.error(
      "No models found; pass --model-dirs DIRS or --model PATH, or run shimmy discover to see " +
        "where models are searched",
    );
    return 0;
  }
  for (const line of modelTable(report.models)) console.log(line);
  return 0;
}
