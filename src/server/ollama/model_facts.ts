/**
 * What Ollama's listings say about a model file, read from its GGUF header (never its
 * tensors) and cached per file: `details` (`format`, `family`, `families`, `parameter_size`,
 * `quantization_level`), `digest` and `modified_at`.
 *
 * @module
 */

import { inspectGguf } from "../../models/discovery_inspect.ts";
import type { ModelEntry } from "../../models/registry.ts";

/** Ollama's `details` of a model. */
export interface OllamaDetails {
  parent_model: string;
  format: "gguf";
  family: string;
  families: string[];
  parameter_size: string;
  quantization_level: string;
}

/** What the listings show of a model. */
export interface ModelFacts {
  details: OllamaDetails;
  /** A sha256 hex digest: the blob's for a model of Ollama's store, else of path, size, time. */
  digest: string;
  /** The file's modification time, ISO 8601. */
  modifiedAt: string;
  /** `ARCH.context_length`, when set. */
  contextLength?: number;
}

const cache = new Map<string, { key: string; facts: ModelFacts }>();

/**
 * Reads (or recalls) a model's facts.
 *
 * @param entry The model.
 * @returns Its facts; a header that cannot be read leaves `family` and sizes empty.
 * @example
 * ```ts
 * const { details } = await modelFacts(entry); // details.quantization_level: "Q8_0"
 * ```
 */
export async function modelFacts(entry: ModelEntry): Promise<ModelFacts> {
  let mtime = new Date(0);
  try {
    mtime = (await Deno.stat(entry.path)).mtime ?? mtime;
  } catch {
    // the file may have moved; keep the epoch
  }
  const key = `${entry.sizeBytes}:${mtime.getTime()}`;
  const known = cache.get(entry.path);
  if (known?.key === key) return known.facts;
  const inspected = await inspectGguf([entry.path], entry.path);
  const summary = inspected.ok ? inspected.summary : undefined;
  const family = summary?.architecture ?? "";
  const facts: ModelFacts = {
    details: {
      parent_model: "",
      format: "gguf",
      family,
      families: family ? [family] : [],
      parameter_size: summary ? parameterSize(summary.parameterCount) : "",
      quantization_level: summary?.quantization ?? "",
    },
    digest: await digestOf(entry, key),
    modifiedAt: mtime.toISOString(),
    ...(summary?.contextLength !== undefined ? { contextLength: summary.contextLength } : {}),
  };
  cache.set(entry.path, { key, facts });
  return facts;
}

/**
 * A parameter count the way Ollama prints it.
 *
 * @param count Number of weights.
 * @returns E.g. `7.6B`, `494.03M`, `12.5K`.
 * @example
 * ```ts
 * parameterSize(494_032_768); // "494.03M"
 * ```
 */
export function parameterSize(count: number): string {
  if (count >= 1e9) return `${round(count / 1e9, 1)}B`;
  if (count >= 1e6) return `${round(count / 1e6, 2)}M`;
  if (count >= 1e3) return `${round(count / 1e3, 2)}K`;
  return String(count);
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** An Ollama blob's own digest, else sha256 of the path, size and time (stable per file). */
async function digestOf(entry: ModelEntry, key: string): Promise<string> {
  const blob = /sha256[-:]([0-9a-f]{64})$/.exec(entry.path);
  if (blob) return blob[1] as string;
  const bytes = new TextEncoder().encode(`${entry.path}\n${key}`);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
}
