/**
 * Shared pieces of `shimmy list`, `shimmy discover` and `shimmy probe`: human sizes and counts,
 * aligned text tables and the model table.
 *
 * @module
 */

import type { DiscoveredModel } from "../models/discovery.ts";
import { printable } from "../util/printable.ts";

/**
 * Formats a byte count with binary units.
 *
 * @param bytes A size in bytes.
 * @returns E.g. `512 B`, `1.5 KiB`, `850.0 MiB`, `4.37 GiB`.
 * @example
 * ```ts
 * formatBytes(1536); // "1.5 KiB"
 * ```
 */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const sign = bytes < 0 ? "-" : "";
  if (unit === 0) return `${sign}${value} B`;
  return `${sign}${value.toFixed(unit >= 3 ? 2 : 1)} ${units[unit]}`;
}

/**
 * Formats a large count (parameters) with K/M/B suffixes.
 *
 * @param count A count.
 * @returns E.g. `950`, `12.3K`, `494M`, `7.24B`.
 * @example
 * ```ts
 * formatCount(494_032_768); // "494M"
 * ```
 */
export function formatCount(count: number): string {
  const steps: [number, string][] = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
  for (const [size, suffix] of steps) {
    if (Math.abs(count) >= size) {
      const value = count / size;
      const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
      return `${Number(value.toFixed(digits))}${suffix}`;
    }
  }
  return String(count);
}

/**
 * Lays out rows as columns separated by two spaces, each as wide as its widest cell; the
 * last column is not padded. Control characters in cells (from file names and metadata) are
 * written as escapes.
 *
 * @param header Column titles.
 * @param rows Cells, one array per row (as many cells as titles).
 * @param indent Text put before every line. Default `""`.
 * @returns The lines, header first.
 * @example
 * ```ts
 * formatTable(["NAME", "SIZE"], [["tiny", "1.2 MiB"]]);
 * // ["NAME  SIZE", "tiny  1.2 MiB"]
 * ```
 */
export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  indent = "",
): string[] {
  const all = [header, ...rows.map((row) => row.map(printable))];
  const widths = header.map((_, i) => Math.max(...all.map((row) => (row[i] ?? "").length)));
  return all.map((row) =>
    indent + row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i]!)).join("  ")
  );
}

/** Column titles of {@link modelTable}. */
export const MODEL_TABLE_HEADER: readonly string[] = [
  "NAME",
  "SIZE",
  "QUANT",
  "ARCH",
  "CONTEXT",
  "SOURCE",
  "PATH",
];

/**
 * The model table shown by `shimmy list` and `shimmy discover`.
 *
 * @param models Discovered models.
 * @param indent Text put before every line. Default `""`.
 * @returns The lines: a header, then one row per model.
 * @example
 * ```ts
 * for (const line of modelTable(report.models)) console.log(line);
 * ```
 */
export function modelTable(models: readonly DiscoveredModel[], indent = ""): string[] {
  return formatTable(
    MODEL_TABLE_HEADER,
    models.map((m) => [
      m.name,
      formatBytes(m.sizeBytes),
      m.quantization ?? "-",
      m.architecture,
      m.contextLength === undefined ? "-" : String(m.contextLength),
      m.source,
      m.shards.length > 1 ? `${m.path} (+${m.shards.length - 1} shards)` : m.path,
    ]),
    indent,
  );
}
