/**
 * Model discovery: finds the GGUF models on this machine, wherever other tools put them, and
 * names them so that a request can ask for one by name or by path.
 *
 * Sources, searched in this order (see {@link discoveryRoots} for the exact paths):
 * `SHIMMY_BASE_GGUF` (+ `SHIMMY_LORA_GGUF`, its adapter), `--model PATH`, `--model-dirs` /
 * `SHIMMY_MODEL_PATHS`, `./models`, the Hugging Face cache, Ollama's store, LM Studio's
 * folders, and the original Shimmy's places (`~/models`, its data folder, the folder of
 * `SHIMMY_BASE_GGUF`). A file reached twice (a symlink, an Ollama blob with two tags) is
 * listed once, under the first source; its other names become aliases.
 *
 * Each file's GGUF header is read (never its tensors) to classify it: models are listed,
 * LoRA adapters are offered as adapters of their base model, multimodal projectors are kept
 * apart, and vocabulary-only, corrupt or unreadable files are reported in `skipped` with the
 * reason. Discovery never throws for what it finds on disk. An adapter goes with its base
 * model by, in order: `SHIMMY_LORA_GGUF` → `SHIMMY_BASE_GGUF`; the Ollama manifest holding
 * both; `general.base_model.*` metadata naming the model; the adapter's name starting with
 * the model's (`tiny-f32-lora` → `tiny-f32`); being the only model of its architecture in
 * the same folder. Adapters with no base found are still listed in `adapters`.
 *
 * **Names.** Every model gets a lowercase name, unique in the report and stable across runs
 * over the same files:
 * - files in folders (`--model`, `--model-dirs`, `./models`, LM Studio, `~/models`…): the file
 *   name without `.gguf` and without a split suffix (`qwen-00001-of-00003.gguf` → `qwen`);
 * - Hugging Face cache: `ORG/NAME:STEM`, STEM being the file's path in the snapshot without
 *   `.gguf` (`bartowski/llama-3.2-1b-instruct-gguf:llama-3.2-1b-instruct-q4_k_m`);
 * - Ollama: `NAME:TAG` (library models), `NAMESPACE/NAME:TAG`, or `HOST/NAMESPACE/NAME:TAG`.
 *
 * When a name is already taken by a model found earlier (source order, then path order within
 * a source), the later model is named `NAME@SOURCE` (`tiny@lmstudio`), and then
 * `NAME@SOURCE-2`, `NAME@SOURCE-3`… Models also answer to aliases (the file stem, the
 * Hugging Face `ORG/NAME`, an Ollama `NAME` for `NAME:latest`) when exactly one model has it.
 *
 * **Requests.** {@link resolveModel} matches a name, an alias, or a path that discovery found;
 * what a request names is compared with known names and paths only and never opened or
 * joined onto a folder, so `../../etc/passwd` is just an unknown model.
 *
 * @example Listing what was found
 * ```ts
 * import { discoverModels, resolveModel } from "./discovery.ts";
 * const report = await discoverModels({ modelDirs: "/data/models" });
 * for (const m of report.models) console.log(m.name, m.source, m.quantization, m.path);
 * const model = resolveModel(report, "qwen2.5-0.5b-instruct-q4_k_m");
 * ```
 *
 * @module
 */

import { basename, dirname, relative, resolve, sep } from "node:path";
import { quantOf } from "./hf_hub.ts";
import {
  type DiscoveryRoot,
  type DiscoveryRootOptions,
  discoveryRoots,
  type ModelSourceKind,
} from "./discovery_roots.ts";
import {
  describe,
  groupShards,
  isGgufName,
  modelStem,
  ScanBudget,
  scanHuggingFace,
  scanOllama,
  type ShardGroup,
  siblingShards,
  type SkipKind,
  type SkippedEntry,
  walkFiles,
} from "./discovery_scan.ts";
import {
  type GgufRole,
  type GgufSummary,
  inspectGguf,
  normalizeModelKey,
} from "./discovery_inspect.ts";
import {
  ModelNotFoundError,
  ORIGINAL_BASE_MODEL_NAME,
  originalOllamaName,
  originalShimmyName,
} from "./model_names.ts";

export {
  type DiscoveryEnv,
  type DiscoveryPlatform,
  type DiscoveryRoot,
  type DiscoveryRootOptions,
  discoveryRoots,
  MODEL_SOURCE_KINDS,
  type ModelSourceKind,
  type RootLayout,
  splitPathList,
} from "./discovery_roots.ts";
export { parseShardName, type SkipKind, type SkippedEntry } from "./discovery_scan.ts";

/** Options for {@link discoverModels}. */
export interface DiscoveryOptions extends DiscoveryRootOptions {
  /** Folder levels entered below each searched folder. Default: 6. */
  readonly maxDepth?: number;
  /** Directory entries read per searched root before its scan stops. Default: 20000. */
  readonly maxEntries?: number;
  /** Time for all folder scans together, in milliseconds. Default: 3000. */
  readonly timeLimitMs?: number;
  /** GGUF headers read at once. Default: 8. */
  readonly concurrency?: number;
}

/** A LoRA adapter found on disk. */
export interface DiscoveredAdapter {
  /** Unique lowercase name among adapters (same rules as model names). */
  readonly name: string;
  /** The file, as found. */
  readonly path: string;
  /** The file with symlinks resolved. */
  readonly realPath: string;
  /** File size in bytes. */
  readonly sizeBytes: number;
  /** Where it was found. */
  readonly source: ModelSourceKind;
  /** The precise place, e.g. `SHIMMY_LORA_GGUF` or `llama3:latest in ~/.ollama/models`. */
  readonly sourceDetail: string;
  /** The base architecture it was trained for (`general.architecture`). */
  readonly architecture: string | undefined;
  /** `adapter.lora.alpha`, when set. */
  readonly loraAlpha: number | undefined;
  /** Names of the models it was attached to (empty when no base model was found). */
  readonly baseModels: string[];
  /**
   * How the base was found: `env` (`SHIMMY_LORA_GGUF` goes with `SHIMMY_BASE_GGUF`), `ollama`
   * (a layer of the model's manifest), `metadata` (`general.base_model.*` matches the model's
   * name or repository), `name` (the adapter's file or `general.name` starts with the model's
   * name, e.g. `tiny-f32-lora` → `tiny-f32`; the longest such name wins), `folder` (the only
   * model of the same architecture in its folder).
   */
  readonly matchedBy: "env" | "ollama" | "metadata" | "name" | "folder" | undefined;
}

/** A multimodal projector (`mmproj`) file: not a chat model, kept for vision support. */
export interface DiscoveredProjector {
  /** The file, as found. */
  readonly path: string;
  /** The file with symlinks resolved. */
  readonly realPath: string;
  /** File size in bytes. */
  readonly sizeBytes: number;
  /** Where it was found. */
  readonly source: ModelSourceKind;
  /** The precise place. */
  readonly sourceDetail: string;
  /** The model it belongs to (an Ollama layer, or the only model in its folder). */
  readonly model: string | undefined;
}

/** A model found on disk. */
export interface DiscoveredModel {
  /** Unique lowercase name (see the module documentation for the rules). */
  readonly name: string;
  /** Other lowercase names that find it when no other model has them. */
  readonly aliases: string[];
  /**
   * The file to load: the first shard of a split model. For the Hugging Face cache it is the
   * snapshot path (a symlink into `blobs/`), so the shard names llama.cpp derives stay valid.
   */
  readonly path: string;
  /** {@link path} with symlinks resolved. */
  readonly realPath: string;
  /** Every shard in order (just `[path]` for a single file). */
  readonly shards: string[];
  /** Total size of all shards in bytes. */
  readonly sizeBytes: number;
  /** Where it was found. */
  readonly source: ModelSourceKind;
  /** The precise place, e.g. `SHIMMY_MODEL_PATHS (/data/models)`. */
  readonly sourceDetail: string;
  /** The searched root it was found under. */
  readonly root: string;
  /** `general.architecture`, e.g. `llama`. */
  readonly architecture: string;
  /** `general.name`, when set. */
  readonly displayName: string | undefined;
  /** `Q4_K_M`, `F16`…: from `general.file_type`, else the dominant tensor type. */
  readonly quantization: string | undefined;
  /** Training context length (`ARCH.context_length`). */
  readonly contextLength: number | undefined;
  /** Number of weights in all tensors. */
  readonly parameterCount?: number;
  /** Whether the file carries `tokenizer.chat_template`. */
  readonly hasChatTemplate: boolean;
  /** LoRA adapters that fit this model. */
  readonly adapters: DiscoveredAdapter[];
  /** A multimodal projector for it, when one was found. */
  readonly mmproj: string | undefined;
}

/** A searched place and whether it existed. */
export interface SearchedRoot extends DiscoveryRoot {
  /** Whether the path existed. */
  readonly present: boolean;
  /** Directory entries read while scanning it. */
  readonly entries: number;
}

/** Everything {@link discoverModels} found. */
export interface DiscoveryReport {
  /** Models, in source order. */
  readonly models: DiscoveredModel[];
  /** Every LoRA adapter, attached or not. */
  readonly adapters: DiscoveredAdapter[];
  /** Multimodal projectors. */
  readonly projectors: DiscoveredProjector[];
  /** What was found but not listed, and why (also scans stopped by a limit). */
  readonly skipped: SkippedEntry[];
  /** Every place searched, in order. */
  readonly roots: SearchedRoot[];
  /** How long discovery took, in milliseconds. */
  readonly elapsedMs: number;
}

/** A file (or split group) to inspect, with what its place says about it. */
interface Candidate {
  readonly shards: string[];
  readonly source: ModelSourceKind;
  readonly sourceDetail: string;
  readonly root: string;
  readonly baseName: string;
  readonly aliases: string[];
  /** Role known without reading the header (Ollama layers, `SHIMMY_LORA_GGUF`). */
  readonly role?: GgufRole;
  /** Folder for same-folder pairing; undefined where pairing makes no sense (Ollama blobs). */
  readonly folder: string | undefined;
  /** Identity keys known from the place (a Hugging Face repository, an LM Studio one). */
  readonly identity: string[];
  /** Links adapters and projectors to the model of the same manifest or environment. */
  readonly owner?: string;
}

/** A model while the report is being built. */
type ModelDraft = { -readonly [K in keyof DiscoveredModel]: DiscoveredModel[K] };

/** A unique candidate with its files checked. */
interface Located extends Candidate {
  realPath: string;
  sizeBytes: number;
  extraAliases: string[];
  /** Owners of every candidate merged into this one (two Ollama tags share a blob). */
  owners: Set<string>;
}

const DEFAULTS = { maxDepth: 6, maxEntries: 20_000, timeLimitMs: 3_000, concurrency: 8 };

/**
 * Searches every enabled source for GGUF models, adapters and projectors. Folder scans are
 * bounded (depth, entries per root, total time); a scan cut short is reported in `skipped`
 * with kind `limit`. Nothing found on disk makes it throw.
 *
 * @param options Sources, environment, home and working folders, limits; see
 *   {@link DiscoveryOptions}. Tests pass `env`, `home` and `cwd` so the real home folder is
 *   never read.
 * @returns The report.
 *
 * @example
 * ```ts
 * import { discoverModels } from "./discovery.ts";
 * const report = await discoverModels({ env: { HOME: "/home/ann" }, cwd: "/srv/shimmy" });
 * for (const s of report.skipped) console.log(`${s.path}: ${s.reason}`);
 * ```
 */
export async function discoverModels(options: DiscoveryOptions = {}): Promise<DiscoveryReport> {
  const started = Date.now();
  const maxDepth = options.maxDepth ?? DEFAULTS.maxDepth;
  const maxEntries = options.maxEntries ?? DEFAULTS.maxEntries;
  const timeLimitMs = options.timeLimitMs ?? DEFAULTS.timeLimitMs;
  const deadline = started + timeLimitMs;
  const visited = new Set<string>();
  const skipped: SkippedEntry[] = [];
  const searched: SearchedRoot[] = [];
  const candidates: Candidate[] = [];

  for (const root of discoveryRoots(options)) {
    const budget = new ScanBudget(maxDepth, maxEntries, deadline, timeLimitMs);
    const found = await scanRoot(root, budget, visited, skipped);
    candidates.push(...found.candidates);
    searched.push({ ...root, present: found.present, entries: budget.entries });
    if (budget.stopped !== undefined) {
      skipped.push({
        path: root.path,
        kind: "limit",
        reason: `Scan of ${root.path} stopped: ${budget.stopped}; files further in were not ` +
          "searched (point --model-dirs at the folder that holds the models)",
        source: root.source,
      });
    } else if (budget.depthReached) {
      skipped.push({
        path: root.path,
        kind: "limit",
        reason: `Scan of ${root.path} stopped at the depth limit of ${maxDepth} folder levels; ` +
          "deeper folders were not searched",
        source: root.source,
      });
    }
  }

  const located = await locate(candidates, skipped);
  const inspected = await mapLimited(
    located,
    options.concurrency ?? DEFAULTS.concurrency,
    (c) =>
      inspectGguf(c.shards, c.role === undefined ? basename(c.shards[0]!) : c.baseName, c.role),
  );

  const models: ModelDraft[] = [];
  const modelInfo = new Map<DiscoveredModel, { candidate: Located; summary: GgufSummary }>();
  const adapters: { adapter: DiscoveredAdapter; candidate: Located; summary: GgufSummary }[] = [];
  const projectors: { projector: DiscoveredProjector; candidate: Located }[] = [];
  const modelNames = new NameTable();
  const adapterNames = new NameTable();

  located.forEach((candidate, i) => {
    const result = inspected[i]!;
    if (!result.ok) {
      skipped.push({
        path: result.path || candidate.shards[0]!,
        kind: result.kind,
        reason: result.reason,
        source: candidate.source,
      });
      return;
    }
    const { summary } = result;
    const common = {
      path: candidate.shards[0]!,
      realPath: candidate.realPath,
      sizeBytes: candidate.sizeBytes,
      source: candidate.source,
      sourceDetail: candidate.sourceDetail,
    };
    if (summary.role === "adapter") {
      const adapter: DiscoveredAdapter = {
        ...common,
        name: adapterNames.claim(candidate.baseName, candidate.source),
        architecture: summary.architecture,
        loraAlpha: summary.loraAlpha,
        baseModels: [],
        matchedBy: undefined,
      };
      adapters.push({ adapter, candidate, summary });
    } else if (summary.role === "projector") {
      projectors.push({ projector: { ...common, model: undefined }, candidate });
    } else {
      const name = modelNames.claim(candidate.baseName, candidate.source);
      const aliases = [
        ...new Set([...candidate.aliases, ...candidate.extraAliases].map((a) => a.toLowerCase())),
      ].filter((a) => a !== name && a !== "");
      const model: ModelDraft = {
        ...common,
        name,
        aliases,
        shards: candidate.shards,
        root: candidate.root,
        architecture: summary.architecture ?? "unknown",
        displayName: summary.displayName,
        quantization: summary.quantization,
        contextLength: summary.contextLength,
        parameterCount: summary.parameterCount,
        hasChatTemplate: summary.hasChatTemplate,
        adapters: [],
        mmproj: undefined,
      };
      models.push(model);
      modelInfo.set(model, { candidate, summary });
    }
  });

  const attachedAdapters = attachAdapters(models, modelInfo, adapters);
  const pairedProjectors = pairProjectors(models, modelInfo, projectors);
  return {
    models,
    adapters: attachedAdapters,
    projectors: pairedProjectors,
    skipped,
    roots: searched,
    elapsedMs: Date.now() - started,
  };
}

/** Hands out unique names: the base, then `BASE@SOURCE`, then `BASE@SOURCE-N`. */
class NameTable {
  readonly #taken = new Set<string>();

  claim(base: string, source: ModelSourceKind): string {
    const plain = base.toLowerCase() || "model";
    let name = plain;
    if (this.#taken.has(name)) name = `${plain}@${source}`;
    for (let n = 2; this.#taken.has(name); n++) name = `${plain}@${source}-${n}`;
    this.#taken.add(name);
    return name;
  }
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results keep their order. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

/** Scans one root into candidates; problems go to `skipped`. */
async function scanRoot(
  root: DiscoveryRoot,
  budget: ScanBudget,
  visited: Set<string>,
  skipped: SkippedEntry[],
): Promise<{ present: boolean; candidates: Candidate[] }> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(root.path);
  } catch (error) {
    if (root.explicit) {
      const what = root.layout === "folder" ? "folder" : "file";
      skipped.push({
        path: root.path,
        kind: error instanceof Deno.errors.NotFound ? "not-found" : "unreadable",
        reason: `Cannot search ${root.label} ${what} ${root.path}: ${describe(error)}`,
        source: root.source,
      });
    }
    return { present: false, candidates: [] };
  }
  const problem = (p: { path: string; kind: SkipKind; reason: string }) =>
    skipped.push({ ...p, source: root.source });

  if (
    root.layout === "file" || root.layout === "adapter" ||
    (root.layout === "path" && !stat.isDirectory)
  ) {
    if (!stat.isFile) {
      problem({
        path: root.path,
        kind: "unreadable",
        reason: `Cannot use ${root.label} ${root.path}: it is not a file`,
      });
      return { present: true, candidates: [] };
    }
    const group = await siblingShards(root.path);
    if (!group.ok) {
      problem({ path: group.path, kind: "missing-shard", reason: group.reason });
      return { present: true, candidates: [] };
    }
    const candidate: Candidate = {
      shards: group.shards,
      source: root.source,
      sourceDetail: root.label,
      root: root.path,
      baseName: modelStem(root.path),
      aliases: [
        originalShimmyName(modelStem(root.path)),
        ...(root.source === "env" ? [ORIGINAL_BASE_MODEL_NAME] : []),
      ],
      folder: dirname(root.path),
      identity: [],
      ...(root.layout === "adapter" ? { role: "adapter" as const } : {}),
      ...(root.source === "env" ? { owner: "env" } : {}),
    };
    return { present: true, candidates: [candidate] };
  }

  if (!stat.isDirectory) {
    problem({
      path: root.path,
      kind: "unreadable",
      reason: `Cannot search ${root.label} ${root.path}: it is not a folder`,
    });
    return { present: true, candidates: [] };
  }

  if (root.layout === "huggingface") {
    const found = await scanHuggingFace(root.path, budget, visited);
    found.problems.forEach(problem);
    const byPath = new Map(found.files.map((f) => [f.path, f]));
    const candidates = fromGroups(
      groupShards(found.files.map((f) => f.path)),
      problem,
      (shards) => {
        const file = byPath.get(shards[0]!)!;
        const stem = file.relativePath.replace(/\.gguf$/i, "");
        const shard = modelStem(basename(file.relativePath));
        const relStem = (stem.includes("/") ? `${dirname(stem)}/${shard}` : shard).toLowerCase();
        const repo = file.repo.toLowerCase();
        return {
          shards,
          source: root.source,
          sourceDetail: `${file.repo} revision ${file.revision.slice(0, 12)} in ${root.label}`,
          root: root.path,
          baseName: `${repo}:${relStem}`,
          aliases: [
            shard,
            repo,
            ...pulledAliases(repo, file.relativePath),
            originalShimmyName(shard),
          ],
          folder: dirname(shards[0]!),
          identity: [normalizeRepo(file.repo), normalizeRepo(file.repo).split("/").at(-1)!],
        };
      },
    );
    return { present: true, candidates };
  }

  if (root.layout === "ollama") {
    const found = await scanOllama(root.path, budget, visited);
    found.problems.forEach(problem);
    const candidates: Candidate[] = [];
    for (const model of found.models) {
      const detail = `${model.reference} in ${root.label}`;
      const base = {
        source: root.source,
        sourceDetail: detail,
        root: root.path,
        folder: undefined,
        identity: [],
        owner: model.manifest,
      };
      const aliases = [
        ...(model.name.endsWith(":latest") ? [model.name.slice(0, -":latest".length)] : []),
        originalOllamaName(model.reference),
      ];
      candidates.push({ ...base, shards: [model.model], baseName: model.name, aliases });
      for (const blob of model.adapters) {
        const baseName = `${model.name.replace(/:latest$/, "")}-adapter`;
        candidates.push({ ...base, shards: [blob], baseName, aliases: [], role: "adapter" });
      }
      for (const blob of model.projectors) {
        candidates.push({
          ...base,
          shards: [blob],
          baseName: model.name,
          aliases: [],
          role: "projector",
        });
      }
    }
    return { present: true, candidates };
  }

  // A plain folder (`--model DIR`, `--model-dirs`, `./models`, LM Studio, Shimmy's places).
  const walked = await walkFiles(root.path, budget, visited, isGgufName);
  walked.problems.forEach(problem);
  const candidates = fromGroups(groupShards(walked.files), problem, (shards) => {
    const first = shards[0]!;
    const parts = relative(root.path, first).split(sep);
    const repo = root.source === "lmstudio" && parts.length === 3
      ? `${parts[0]}/${parts[1]}`
      : undefined;
    return {
      shards,
      source: root.source,
      sourceDetail: repo === undefined
        ? `${root.label} (${root.path})`
        : `${repo} in ${root.label}`,
      root: root.path,
      baseName: modelStem(first),
      aliases: [originalShimmyName(modelStem(first))],
      folder: dirname(first),
      identity: repo === undefined
        ? []
        : [normalizeRepo(repo), normalizeRepo(repo).split("/").at(-1)!],
    };
  });
  return { present: true, candidates };
}

/**
 * The names `shimmy pull` reports for a hub file: `hf.co/ORG/REPO:QUANT` and `ORG/REPO:QUANT`
 * (lowercase), and `hf.co/ORG/REPO`.
 */
function pulledAliases(repo: string, relativePath: string): string[] {
  const quant = quantOf(relativePath)?.toLowerCase();
  return [`hf.co/${repo}`, ...(quant ? [`hf.co/${repo}:${quant}`, `${repo}:${quant}`] : [])];
}

function normalizeRepo(repo: string): string {
  return repo.toLowerCase().replace(/[\s_]+/g, "-").replace(/-gguf$/, "");
}

function fromGroups(
  groups: readonly ShardGroup[],
  problem: (p: { path: string; kind: SkipKind; reason: string }) => void,
  make: (shards: string[]) => Candidate,
): Candidate[] {
  const out: Candidate[] = [];
  for (const group of groups) {
    if (group.ok) out.push(make(group.shards));
    else problem({ path: group.path, kind: "missing-shard", reason: group.reason });
  }
  return out;
}

/**
 * Resolves symlinks, sums shard sizes and drops files already found (the first finder
 * keeps the file; the names of later finders become its aliases).
 */
async function locate(
  candidates: readonly Candidate[],
  skipped: SkippedEntry[],
): Promise<Located[]> {
  const byReal = new Map<string, Located>();
  const out: Located[] = [];
  for (const candidate of candidates) {
    let realPath: string;
    let sizeBytes = 0;
    try {
      realPath = await Deno.realPath(candidate.shards[0]!);
      for (const shard of candidate.shards) sizeBytes += (await Deno.stat(shard)).size;
    } catch (error) {
      const path = candidate.shards[0]!;
      const missing = error instanceof Deno.errors.NotFound;
      skipped.push({
        path,
        kind: missing ? "broken-link" : "unreadable",
        reason: missing
          ? `${path} points to a missing file; the download may be unfinished`
          : `Cannot read ${path}: ${describe(error)}`,
        source: candidate.source,
      });
      continue;
    }
    const earlier = byReal.get(realPath);
    if (earlier !== undefined) {
      if (candidate.role === undefined || candidate.role === earlier.role) {
        earlier.extraAliases.push(candidate.baseName, ...candidate.aliases);
        if (candidate.owner !== undefined) earlier.owners.add(candidate.owner);
      }
      continue;
    }
    const owners = new Set(candidate.owner === undefined ? [] : [candidate.owner]);
    const located: Located = { ...candidate, realPath, sizeBytes, extraAliases: [], owners };
    byReal.set(realPath, located);
    out.push(located);
  }
  return out;
}

/** Attaches adapters to base models: environment/manifest links, metadata, then folder. */
function attachAdapters(
  models: readonly ModelDraft[],
  info: ReadonlyMap<DiscoveredModel, { candidate: Located; summary: GgufSummary }>,
  adapters: readonly { adapter: DiscoveredAdapter; candidate: Located; summary: GgufSummary }[],
): DiscoveredAdapter[] {
  const out: DiscoveredAdapter[] = [];
  const archFits = (model: DiscoveredModel, arch: string | undefined) =>
    arch === undefined || model.architecture === "unknown" || model.architecture === arch;
  for (const { adapter, candidate, summary } of adapters) {
    let bases: ModelDraft[] = [];
    let matchedBy: DiscoveredAdapter["matchedBy"];
    if (candidate.owner !== undefined) {
      bases = models.filter((m) => info.get(m)?.candidate.owners.has(candidate.owner!));
      matchedBy = candidate.owner === "env" ? "env" : "ollama";
    }
    if (bases.length === 0 && summary.baseModels.length > 0) {
      const wanted = new Set(summary.baseModels);
      bases = models.filter((m) => {
        const known = info.get(m)!;
        return archFits(m, summary.architecture) &&
          [...known.summary.identity, ...known.candidate.identity].some((k) => wanted.has(k));
      });
      matchedBy = "metadata";
    }
    if (bases.length === 0) {
      bases = byNameHint(
        models.filter((m) => archFits(m, summary.architecture)),
        [candidate.baseName, modelStem(candidate.shards[0]!), summary.displayName ?? ""],
      );
      matchedBy = "name";
    }
    if (bases.length === 0 && candidate.folder !== undefined) {
      const inFolder = models.filter((m) =>
        info.get(m)!.candidate.folder === candidate.folder && archFits(m, summary.architecture)
      );
      if (inFolder.length === 1) bases = inFolder;
      matchedBy = "folder";
    }
    const attached: DiscoveredAdapter = bases.length === 0
      ? adapter
      : { ...adapter, baseModels: bases.map((m) => m.name), matchedBy };
    for (const model of bases) model.adapters.push(attached);
    out.push(attached);
  }
  return out;
}

/**
 * The models whose name (or file stem, or alias) is the longest prefix of an adapter name,
 * followed by `-`, `_` or `.` (`tiny-f32-lora` → `tiny-f32`).
 */
function byNameHint(models: readonly ModelDraft[], adapterNames: readonly string[]): ModelDraft[] {
  const wanted = adapterNames.map((n) => normalizeModelKey(n)).filter((n) => n !== "");
  let best = 0;
  let found: ModelDraft[] = [];
  for (const model of models) {
    const keys = [model.name, modelStem(model.path), ...model.aliases].map(normalizeModelKey);
    let score = 0;
    for (const key of keys) {
      if (key === "") continue;
      for (const name of wanted) {
        if (name.length > key.length && name.startsWith(key) && /[-_.]/.test(name[key.length]!)) {
          score = Math.max(score, key.length);
        }
      }
    }
    if (score > best) {
      best = score;
      found = [model];
    } else if (score > 0 && score === best) {
      found.push(model);
    }
  }
  return found;
}

/** Pairs projectors with the model of the same manifest, or the only model in their folder. */
function pairProjectors(
  models: readonly ModelDraft[],
  info: ReadonlyMap<DiscoveredModel, { candidate: Located; summary: GgufSummary }>,
  projectors: readonly { projector: DiscoveredProjector; candidate: Located }[],
): DiscoveredProjector[] {
  return projectors.map(({ projector, candidate }) => {
    let owners: ModelDraft[] = candidate.owner === undefined
      ? []
      : models.filter((m) => info.get(m)?.candidate.owners.has(candidate.owner!));
    if (owners.length === 0 && candidate.folder !== undefined) {
      owners = models.filter((m) => info.get(m)!.candidate.folder === candidate.folder);
    }
    const owner = owners.length === 1 ? owners[0]! : undefined;
    if (owner === undefined) return projector;
    owner.mmproj ??= projector.path;
    return { ...projector, model: owner.name };
  });
}

/** Compares paths as strings (case-insensitively on Windows); the disk is never consulted. */
function samePath(a: string, b: string): boolean {
  return Deno.build.os === "windows" ? a.toLowerCase() === b.toLowerCase() : a === b;
}

function pathMatches(model: { path: string; realPath: string; shards?: string[] }, query: string) {
  const forms = new Set([query]);
  try {
    forms.add(resolve(query));
  } catch {
    // not a path: names only
  }
  const known = [model.path, model.realPath, ...(model.shards?.slice(0, 1) ?? [])];
  return [...forms].some((q) => known.some((k) => samePath(k, q)));
}

/**
 * Finds a discovered model by name, path or alias, in that order: an exact name (any case);
 * a path equal to a model's path, first shard or resolved path (a relative path is resolved
 * against the working folder as a string only); an alias that exactly one model has.
 *
 * @param report A discovery report.
 * @param nameOrPath What the user or request asked for.
 * @returns The model, or `undefined` when nothing matches or an alias is ambiguous.
 *
 * @example
 * ```ts
 * import { discoverModels, findModel } from "./discovery.ts";
 * const report = await discoverModels();
 * findModel(report, "llama3"); // e.g. the Ollama model llama3:latest
 * ```
 */
export function findModel(
  report: Pick<DiscoveryReport, "models">,
  nameOrPath: string,
): DiscoveredModel | undefined {
  return lookup(report.models, nameOrPath).match;
}

function lookup<T extends { name: string; path: string; realPath: string; aliases?: string[] }>(
  items: readonly T[],
  query: string,
): { match?: T; ambiguous: T[] } {
  const wanted = query.trim();
  if (wanted === "") return { ambiguous: [] };
  const lower = wanted.toLowerCase();
  const byName = items.find((m) => m.name === lower);
  if (byName !== undefined) return { match: byName, ambiguous: [] };
  const byPath = items.find((m) => pathMatches(m, wanted));
  if (byPath !== undefined) return { match: byPath, ambiguous: [] };
  const byAlias = items.filter((m) => m.aliases?.includes(lower));
  if (byAlias.length === 1) return { match: byAlias[0]!, ambiguous: [] };
  return { ambiguous: byAlias };
}

/**
 * Like {@link findModel}, but throws a {@link ModelNotFoundError} (HTTP 404) that lists the
 * available names.
 *
 * @param report A discovery report.
 * @param nameOrPath What the user or request asked for.
 * @returns The model.
 * @throws {ModelNotFoundError} When nothing matches, or an alias matches several models.
 *
 * @example
 * ```ts
 * import { discoverModels, resolveModel } from "./discovery.ts";
 * const model = resolveModel(await discoverModels(), "tinyllama");
 * console.log(model.path);
 * ```
 */
export function resolveModel(
  report: Pick<DiscoveryReport, "models">,
  nameOrPath: string,
): DiscoveredModel {
  const { match, ambiguous } = lookup(report.models, nameOrPath);
  if (match !== undefined) return match;
  if (ambiguous.length > 1) {
    throw new ModelNotFoundError(
      nameOrPath,
      `Model "${nameOrPath}" is ambiguous: it could be ${
        ambiguous.map((m) => m.name).join(", ")
      }; use one of these names`,
    );
  }
  const names = report.models.map((m) => m.name);
  const shown = names.slice(0, 20).join(", ") +
    (names.length > 20 ? `, and ${names.length - 20} more` : "");
  throw new ModelNotFoundError(
    nameOrPath,
    names.length === 0
      ? `Model "${nameOrPath}" not found: no models were discovered; pass --model PATH or --model-dirs DIRS`
      : `Model "${nameOrPath}" not found. Available: ${shown}; run "shimmy discover" to see where models are searched`,
  );
}

/**
 * Finds a discovered LoRA adapter by name or path (same rules as {@link findModel}, without
 * aliases).
 *
 * @param report A discovery report.
 * @param nameOrPath The adapter's name or file.
 * @returns The adapter, or `undefined`.
 *
 * @example
 * ```ts
 * import { discoverModels, findAdapter } from "./discovery.ts";
 * findAdapter(await discoverModels(), "my-lora");
 * ```
 */
export function findAdapter(
  report: Pick<DiscoveryReport, "adapters">,
  nameOrPath: string,
): DiscoveredAdapter | undefined {
  return lookup(report.adapters, nameOrPath).match;
}
