/**
 * `shimmy discover [--llm-only] [--json]`: searches every model source again and shows what
 * was found where (each place searched, models, LoRA adapters with their base, multimodal
 * projectors) and what was skipped and why.
 *
 * @module
 */

import {
  type DiscoveredModel,
  discoverModels,
  type DiscoveryOptions,
  type DiscoveryReport,
} from "../models/discovery.ts";
import type { GlobalFlags } from "./global_flags.ts";
import { formatBytes, formatTable, modelTable } from "./model_table.ts";
import { discoveryOptions } from "./model_lookup.ts";
import { parseFlags } from "./flags.ts";
import { generatesText } from "../models/model_kind.ts";
import { printable } from "../util/printable.ts";

/** Usage text of `shimmy discover`. */
export const DISCOVER_USAGE = `Usage: shimmy discover [options]

Searches every model source again (SHIMMY_BASE_GGUF, --model, --model-dirs and
SHIMMY_MODEL_PATHS, ./models, the Hugging Face cache, Ollama, LM Studio, ~/models) and shows
each place searched, the models, LoRA adapters (with their base model) and multimodal
projectors found, and every file skipped with the reason.

Options:
  --llm-only              Show only chat models (no adapters, projectors, embedding or
                          reranking models, or skipped files)
  --json                  Print the discovery report as JSON
  --model PATH            Also look at this file or folder; repeatable
  --model-dirs DIRS       Extra model folders, ';'-separated

Examples:
  shimmy discover
  shimmy discover --llm-only
  shimmy --model-dirs /data/models discover --json`;

/** Parsed `discover` options. */
export interface DiscoverArgs {
  /** `--llm-only`. */
  llmOnly: boolean;
  /** `--json`. */
  json: boolean;
  /** `--model PATH` values. */
  models: string[];
}

/**
 * Parses `discover`'s arguments (global flags already removed).
 *
 * @param args Arguments after the command name.
 * @returns The options, or undefined when `--help` was asked.
 * @throws {UsageError} on bad flags or arguments.
 * @example
 * ```ts
 * parseDiscoverArgs(["--llm-only"]); // { llmOnly: true, json: false, models: [] }
 * ```
 */
export function parseDiscoverArgs(args: string[]): DiscoverArgs | undefined {
  const parsed = parseFlags(args, {
    "llm-only": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    model: { type: "string", short: "m", multiple: true },
    help: { type: "boolean", short: "h", default: false },
  });
  const v = parsed.values;
  if (v.help) return undefined;
  return { llmOnly: v["llm-only"], json: v.json, models: v.model ?? [] };
}

/**
 * Whether a discovered model is a chat (text generation) model: not an encoder, embedding,
 * reranking or audio model, judged by its architecture and then its names.
 *
 * @param model A discovered model.
 * @returns True for chat models.
 * @example
 * ```ts
 * const chat = report.models.filter(isChatModel);
 * ```
 */
export function isChatModel(model: DiscoveredModel): boolean {
  return generatesText(model.architecture, [model.name, model.displayName ?? ""]);
}

/**
 * Formats a discovery report for the terminal.
 *
 * @param report What discovery found.
 * @param llmOnly Show only the chat models. Default false.
 * @returns The lines to print.
 * @example
 * ```ts
 * console.log(formatDiscoveryReport(await discoverModels()).join("\n"));
 * ```
 */
export function formatDiscoveryReport(report: DiscoveryReport, llmOnly = false): string[] {
  const lines: string[] = [];
  const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
  if (llmOnly) {
    const chat = report.models.filter(isChatModel);
    lines.push(`${count(chat.length, "chat model")} found in ${report.elapsedMs} ms`);
    if (chat.length > 0) lines.push(...modelTable(chat, "  "));
    return lines;
  }

  const present = report.roots.filter((r) => r.present).length;
  lines.push(
    `Searched ${count(report.roots.length, "place")} (${present} present) in ` +
      `${report.elapsedMs} ms:`,
  );
  lines.push(...formatTable(
    ["STATUS", "SOURCE", "ENTRIES", "WHERE", "PATH"],
    report.roots.map((r) => [
      r.present ? "present" : "absent",
      r.source,
      r.present ? String(r.entries) : "-",
      r.label,
      r.path,
    ]),
    "  ",
  ));

  lines.push("", `Models (${report.models.length}):`);
  if (report.models.length === 0) {
    lines.push("  none: pass --model-dirs DIRS or --model PATH, or set SHIMMY_MODEL_PATHS");
  } else {
    lines.push(...modelTable(report.models, "  "));
    const details = report.models.filter((m) => m.aliases.length > 0 || m.mmproj !== undefined);
    for (const m of details) {
      const parts = [
        ...(m.aliases.length > 0 ? [`also answers to ${m.aliases.join(", ")}`] : []),
        ...(m.mmproj !== undefined ? [`projector ${m.mmproj}`] : []),
      ];
      lines.push(`  ${printable(m.name)}: ${printable(parts.join("; "))}`);
    }
  }

  lines.push("", `Adapters (${report.adapters.length}):`);
  if (report.adapters.length > 0) {
    lines.push(...formatTable(
      ["NAME", "BASE", "MATCHED BY", "SIZE", "SOURCE", "PATH"],
      report.adapters.map((a) => [
        a.name,
        a.baseModels.length > 0 ? a.baseModels.join(", ") : "(no base found)",
        a.matchedBy ?? "-",
        formatBytes(a.sizeBytes),
        a.source,
        a.path,
      ]),
      "  ",
    ));
  }

  lines.push("", `Projectors (${report.projectors.length}):`);
  if (report.projectors.length > 0) {
    lines.push(...formatTable(
      ["MODEL", "SIZE", "SOURCE", "PATH"],
      report.projectors.map((p) => [
        p.model ?? "(no model found)",
        formatBytes(p.sizeBytes),
        p.source,
        p.path,
      ]),
      "  ",
    ));
  }

  lines.push("", `Skipped (${report.skipped.length}):`);
  if (report.skipped.length > 0) {
    lines.push(...formatTable(
      ["KIND", "SOURCE", "REASON"],
      report.skipped.map((s) => [s.kind, s.source, s.reason]),
      "  ",
    ));
  }
  return lines;
}

/**
 * Runs `shimmy discover`.
 *
 * @param args Arguments after the command name.
 * @param globals Global flags (`--model-dirs`).
 * @param discovery Discovery options to start from. Default `{}` (the process environment and
 *   home folder); tests pass `env`, `home` and `cwd`.
 * @returns The exit code (0: problems found on disk are reported, not failures).
 * @example
 * ```ts
 * Deno.exit(await discoverMain(["--llm-only"], { verbose: false }));
 * ```
 */
export async function discoverMain(
  args: string[],
  globals: GlobalFlags,
  discovery: DiscoveryOptions = {},
): Promise<number> {
  const options = parseDiscoverArgs(args);
  if (!options) {
    console.log(DISCOVER_USAGE);
    return 0;
  }
  const report = await discoverModels(discoveryOptions(globals, options.models, discovery));
  if (options.json) {
    const shown = options.llmOnly
      ? {
        models: report.models.filter(isChatModel),
        roots: report.roots,
        elapsedMs: report.elapsedMs,
      }
      : report;
    console.log(JSON.stringify(shown, null, 2));
    return 0;
  }
  for (const line of formatDiscoveryReport(report, options.llmOnly)) console.log(line);
  return 0;
}
