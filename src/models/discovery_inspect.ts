/**
 * Classifies GGUF files for model discovery from their headers alone (metadata and tensor
 * index, never tensor data): chat/base model, LoRA adapter, multimodal projector, or a file
 * to skip (vocabulary only, corrupt, unreadable). Never throws.
 *
 * @module
 */

import { basename } from "node:path";
import { readGgufInfo } from "../gguf/reader.ts";
import { ggmlTypeName, GgufError, type GgufInfo, GgufValueType } from "../gguf/types.ts";
import { describe, type SkipKind } from "./discovery_scan.ts";

/**
 * Names of `general.file_type` values (`enum llama_ftype` of the pinned `llama.h`), without
 * the `MOSTLY_` prefix. Values llama.cpp has retired are absent.
 */
export const LLAMA_FILE_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: "F32",
  1: "F16",
  2: "Q4_0",
  3: "Q4_1",
  7: "Q8_0",
  8: "Q5_0",
  9: "Q5_1",
  10: "Q2_K",
  11: "Q3_K_S",
  12: "Q3_K_M",
  13: "Q3_K_L",
  14: "Q4_K_S",
  15: "Q4_K_M",
  16: "Q5_K_S",
  17: "Q5_K_M",
  18: "Q6_K",
  19: "IQ2_XXS",
  20: "IQ2_XS",
  21: "Q2_K_S",
  22: "IQ3_XS",
  23: "IQ3_XXS",
  24: "IQ1_S",
  25: "IQ4_NL",
  26: "IQ3_S",
  27: "IQ3_M",
  28: "IQ2_S",
  29: "IQ2_M",
  30: "IQ4_XS",
  31: "IQ1_M",
  32: "BF16",
  36: "TQ1_0",
  37: "TQ2_0",
  38: "MXFP4_MOE",
  39: "NVFP4",
  40: "Q1_0",
  41: "Q2_0",
};

/** `LLAMA_FTYPE_GUESSED`: a flag llama.cpp adds when it inferred the file type. */
const FILE_TYPE_GUESSED = 1024;

/** What a GGUF file is, from its header. */
export type GgufRole = "model" | "adapter" | "projector";

/** The facts discovery keeps from a GGUF header. */
export interface GgufSummary {
  /** What the file is. */
  readonly role: GgufRole;
  /** `general.architecture` (for an adapter: its base's architecture). */
  readonly architecture: string | undefined;
  /** `general.name`. */
  readonly displayName: string | undefined;
  /** Quantization from `general.file_type`, else the type holding most matrix bytes. */
  readonly quantization: string | undefined;
  /** `ARCH.context_length`. */
  readonly contextLength: number | undefined;
  /** Number of weights in all tensors of all shards. */
  readonly parameterCount: number;
  /** Whether `tokenizer.chat_template` is set. */
  readonly hasChatTemplate: boolean;
  /** Normalised names identifying this model (`general.name`, `general.basename`, …). */
  readonly identity: readonly string[];
  /** Normalised names of the base model(s) from `general.base_model.*` (adapters use them). */
  readonly baseModels: readonly string[];
  /** `adapter.lora.alpha`, for adapters. */
  readonly loraAlpha: number | undefined;
}

/** The outcome of {@link inspectGguf}. */
export type InspectResult =
  | { readonly ok: true; readonly summary: GgufSummary }
  | { readonly ok: false; readonly kind: SkipKind; readonly path: string; readonly reason: string };

/** Reads a metadata value of the expected kind, ignoring values of another type. */
function str(info: GgufInfo, key: string): string | undefined {
  const v = Object.hasOwn(info.metadata, key) ? info.metadata[key] : undefined;
  return v?.type === GgufValueType.STRING ? v.value : undefined;
}

function num(info: GgufInfo, key: string): number | undefined {
  const v = Object.hasOwn(info.metadata, key) ? info.metadata[key] : undefined;
  if (v === undefined || v.type === GgufValueType.ARRAY) return undefined;
  if (typeof v.value === "number") return v.value;
  return typeof v.value === "bigint" ? Number(v.value) : undefined;
}

/**
 * Normalises a model name or repository for matching: lowercase, spaces and underscores as
 * dashes, a Hugging Face URL reduced to `ORG/NAME`, a trailing `-gguf` removed.
 *
 * @param value A name, `ORG/NAME` or URL.
 * @returns The normalised form.
 */
export function normalizeModelKey(value: string): string {
  return value.trim().toLowerCase()
    .replace(/^https?:\/\/(www\.)?(huggingface\.co|hf\.co)\//, "")
    .replace(/[\s_]+/g, "-")
    .replace(/\/+$/, "")
    .replace(/-gguf$/, "");
}

/** Every key a `{name, organization, repo_url}` triple can be matched by. */
function keysOf(name?: string, organization?: string, url?: string): string[] {
  const keys: string[] = [];
  if (name) keys.push(normalizeModelKey(name));
  if (name && organization) keys.push(normalizeModelKey(`${organization}/${name}`));
  if (url) {
    const repo = normalizeModelKey(url);
    keys.push(repo);
    const last = repo.split("/").at(-1);
    if (last) keys.push(last);
  }
  return keys;
}

function baseModelKeys(info: GgufInfo): string[] {
  const count = num(info, "general.base_model.count") ?? 0;
  const keys: string[] = [];
  for (let i = 0; i < Math.min(count, 16); i++) {
    const at = `general.base_model.${i}`;
    keys.push(
      ...keysOf(
        str(info, `${at}.name`),
        str(info, `${at}.organization`),
        str(info, `${at}.repo_url`),
      ),
    );
  }
  return [...new Set(keys)];
}

/** The ggml type holding the most bytes among matrices (2+ dimensions), by name. */
function dominantType(headers: readonly GgufInfo[]): string | undefined {
  const bytes = new Map<number, number>();
  for (const info of headers) {
    for (const t of info.tensors) {
      if (t.shape.length < 2) continue;
      const size = t.byteSize ?? t.shape.reduce((a, b) => a * b, 1);
      bytes.set(t.type, (bytes.get(t.type) ?? 0) + size);
    }
  }
  let best: [number, number] | undefined;
  for (const entry of bytes) if (best === undefined || entry[1] > best[1]) best = entry;
  return best === undefined ? undefined : ggmlTypeName(best[0]);
}

/** Maps a read failure to a skip reason. */
function readFailure(path: string, error: unknown): InspectResult {
  if (error instanceof GgufError) {
    const kind: SkipKind = error.code === "not_found" ? "not-found" : "corrupt";
    return { ok: false, kind, path, reason: error.message };
  }
  return {
    ok: false,
    kind: "unreadable",
    path,
    reason: `Cannot read ${path}: ${describe(error)}`,
  };
}

/**
 * Reads the headers of a model's shards and classifies it:
 *
 * - `general.type = adapter`, or any `adapter.type` (e.g. `lora`) → `adapter`;
 * - `general.architecture = clip`, `general.type = mmproj`, or `mmproj` in `nameHint` →
 *   `projector`;
 * - no tensors in any shard (a vocabulary-only file) → skipped, kind `vocab-only`;
 * - no `general.architecture` → skipped, kind `corrupt`;
 * - otherwise → `model`.
 *
 * Unreadable or corrupt shards are reported as skipped; nothing is thrown.
 *
 * @param shards The file, or every shard of a split model in order.
 * @param nameHint The file name or model name (checked for `mmproj`).
 * @param role A role already known from elsewhere (an Ollama layer, `SHIMMY_LORA_GGUF`).
 * @returns The summary, or why the file is skipped.
 *
 * @example
 * ```ts
 * import { inspectGguf } from "./discovery_inspect.ts";
 * const result = await inspectGguf(["model.gguf"], "model.gguf");
 * if (result.ok) console.log(result.summary.role, result.summary.quantization);
 * ```
 */
export async function inspectGguf(
  shards: readonly string[],
  nameHint: string,
  role?: GgufRole,
): Promise<InspectResult> {
  const headers: GgufInfo[] = [];
  for (const path of shards) {
    try {
      headers.push(await readGgufInfo(path, { skipArrays: true })); // scalars are enough
    } catch (error) {
      return readFailure(path, error);
    }
  }
  const first = headers[0];
  const firstPath = shards[0];
  if (first === undefined || firstPath === undefined) {
    return { ok: false, kind: "not-found", path: "", reason: "No file was given" };
  }

  const generalType = str(first, "general.type")?.toLowerCase();
  const adapterType = str(first, "adapter.type")?.toLowerCase();
  const architecture = str(first, "general.architecture");
  const lowerHint = basename(nameHint).toLowerCase();
  const detected: GgufRole = generalType === "adapter" || adapterType !== undefined
    ? "adapter"
    : architecture?.toLowerCase() === "clip" || generalType === "mmproj" ||
        lowerHint.includes("mmproj")
    ? "projector"
    : "model";
  const finalRole = role ?? detected;

  const tensorCount = headers.reduce((n, h) => n + h.tensors.length, 0);
  if (tensorCount === 0) {
    return {
      ok: false,
      kind: "vocab-only",
      path: firstPath,
      reason: `File ${firstPath} has no tensors (a vocabulary-only file), so it is not a model`,
    };
  }
  if (finalRole === "model" && architecture === undefined) {
    return {
      ok: false,
      kind: "corrupt",
      path: firstPath,
      reason: `File ${firstPath} has no general.architecture, so llama.cpp cannot load it`,
    };
  }
  const splitCount = num(first, "split.count");
  if (splitCount !== undefined && splitCount > 1 && splitCount !== shards.length) {
    return {
      ok: false,
      kind: "missing-shard",
      path: firstPath,
      reason: `File ${firstPath} says the model has ${splitCount} shards but ${shards.length} ${
        shards.length === 1 ? "was" : "were"
      } found; name the shards NAME-00001-of-0000${splitCount}.gguf and keep them together`,
    };
  }

  const fileType = num(first, "general.file_type");
  const fromFileType = fileType === undefined
    ? undefined
    : LLAMA_FILE_TYPE_NAMES[fileType & ~FILE_TYPE_GUESSED];
  const parameterCount = headers.reduce(
    (n, h) => n + h.tensors.reduce((m, t) => m + t.shape.reduce((a, b) => a * b, 1), 0),
    0,
  );
  const identity = [
    ...keysOf(str(first, "general.name"), str(first, "general.organization")),
    ...keysOf(str(first, "general.basename"), str(first, "general.organization")),
    ...keysOf(undefined, undefined, str(first, "general.source.repo_url")),
  ];
  return {
    ok: true,
    summary: {
      role: finalRole,
      architecture,
      displayName: str(first, "general.name"),
      quantization: fromFileType ?? dominantType(headers),
      contextLength: architecture === undefined
        ? undefined
        : num(first, `${architecture}.context_length`),
      parameterCount,
      hasChatTemplate: (str(first, "tokenizer.chat_template") ?? "") !== "",
      identity: [...new Set(identity)],
      baseModels: baseModelKeys(first),
      loraAlpha: num(first, "adapter.lora.alpha"),
    },
  };
}
