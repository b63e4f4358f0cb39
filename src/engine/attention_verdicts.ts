/**
 * The attention probe's verdicts (`attention_probe.ts`), remembered in the process and in the
 * user cache folder (`attention-kernels.json`), keyed by the processor, the library folder, the
 * threads and the model's attention shape. A model loaded again, or a server started again, does
 * not probe again, and every process on a machine decodes a model with the same kernel (their
 * greedy tokens can differ where two candidates are almost tied). The processor is part of the
 * key because a disk can move between machines (virtual machines, a home folder on a network).
 *
 * @module
 */

import { dirname, join, resolve } from "node:path";
import { cpus } from "node:os";
import type { Llama } from "../ffi/llama.ts";
import { userCacheDir } from "../ffi/extract.ts";
import {
  type AttentionProbe,
  probeAttentionKernels,
  type ProbeOptions,
} from "./attention_probe.ts";
import type { AttentionDims } from "./attention_probe_model.ts";

/** Bumped when the probe measures differently, which makes earlier verdicts stale. */
const PROBE_VERSION = 1;
const CACHE_FILE = "attention-kernels.json";

/** Options for {@link cpuAttentionKernel}. */
export interface VerdictOptions extends ProbeOptions {
  /** Folder of the verdict file. Default: {@link userCacheDir}. */
  cacheDir?: string;
}

/** Verdicts of this process, by cache file and key. */
const remembered = new Map<string, Promise<AttentionProbe>>();
/** The probe running now: two at once (models loading together) would time each other. */
let lastProbe: Promise<unknown> = Promise.resolve();

/**
 * The CPU attention kernel for a model's attention on this machine: a remembered verdict, or a
 * new probe (which is then remembered, also on disk when the cache folder is writable and the
 * probe's rounds were steady).
 *
 * @param llama The runtime.
 * @param dims The model's heads and head sizes.
 * @param options Threads and cache folder.
 * @returns The probe's times and choice (`elapsedMs` 0 when remembered).
 * @throws what {@link probeAttentionKernels} throws, when llama.cpp refuses the probe model.
 * @example
 * ```ts
 * const dims = { heads: 12, headsKv: 12, keyLength: 64, valueLength: 64 };
 * const { kernel } = await cpuAttentionKernel(llama, dims, { threads: 2 });
 * ```
 */
export function cpuAttentionKernel(
  llama: Llama,
  dims: AttentionDims,
  options: VerdictOptions,
): Promise<AttentionProbe> {
  const key = verdictKey(llama.libDir, dims, options.threads);
  const file = verdictFile(options.cacheDir);
  const memo = `${file ?? ""}\n${key}`;
  let verdict = remembered.get(memo);
  if (!verdict) {
    verdict = lookUpOrProbe(
      file,
      key,
      () => oneAtATime(() => probeAttentionKernels(llama, dims, options)),
    );
    remembered.set(memo, verdict);
    verdict.catch(() => remembered.delete(memo));
  }
  return verdict;
}

/**
 * The key of a verdict in the verdict file: the probe's version, the processor, the library
 * folder, the threads and the attention's dimensions.
 *
 * @param libDir The runtime's library folder, as given (`lib/reference` and its absolute path are
 *   one folder, one key).
 * @param dims The model's heads and head sizes.
 * @param threads Threads of the context.
 * @returns The key.
 * @example
 * ```ts
 * verdictKey(llama.libDir, { heads: 4, headsKv: 2, keyLength: 16, valueLength: 16 }, 2);
 * ```
 */
export function verdictKey(libDir: string, dims: AttentionDims, threads: number): string {
  return JSON.stringify({
    version: PROBE_VERSION,
    processor: processorIdentity(),
    library: resolve(libDir),
    threads,
    ...dims,
  });
}

/** Runs a probe once the one before it has ended. */
function oneAtATime<T>(probe: () => Promise<T>): Promise<T> {
  const run = lastProbe.then(probe, probe);
  lastProbe = run.catch(() => {});
  return run;
}

/** The verdict file, or undefined where no cache folder is known (no home folder). */
function verdictFile(cacheDir: string | undefined): string | undefined {
  try {
    return join(cacheDir ?? userCacheDir(), CACHE_FILE);
  } catch {
    return undefined;
  }
}

async function lookUpOrProbe(
  file: string | undefined,
  key: string,
  probe: () => Promise<AttentionProbe>,
): Promise<AttentionProbe> {
  if (file === undefined) return await probe();
  const stored = (await readVerdicts(file))[key];
  if (isVerdict(stored)) return { ...stored, elapsedMs: 0 };
  const fresh = await probe();
  if (!fresh.steady) return fresh; // a busy machine's verdict: the next start probes again
  // Read again: another process may have added verdicts meanwhile.
  const verdicts = await readVerdicts(file);
  verdicts[key] = fresh;
  await writeVerdicts(file, verdicts).catch(() => {}); // a read-only cache only costs a probe
  return fresh;
}

/** Whether a stored entry is a whole verdict (a hand-edited or damaged one is probed again). */
function isVerdict(value: unknown): value is AttentionProbe {
  const entry = value as Partial<AttentionProbe> | undefined;
  const times = (t: unknown) =>
    typeof t === "object" && t !== null &&
    ["promptMs", "tokenMs"].every((k) => Number.isFinite((t as Record<string, unknown>)[k]));
  return typeof entry === "object" && entry !== null &&
    (entry.kernel === "fused" || entry.kernel === "unfused") &&
    times(entry.fused) && times(entry.unfused);
}

async function readVerdicts(file: string): Promise<Record<string, AttentionProbe>> {
  try {
    const parsed = JSON.parse(await Deno.readTextFile(file));
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? parsed : {};
  } catch {
    return {}; // missing or damaged: probe again
  }
}

/** Writes through a temporary file and a rename, so a reader never sees half a file. */
async function writeVerdicts(
  file: string,
  verdicts: Record<string, AttentionProbe>,
): Promise<void> {
  await Deno.mkdir(dirname(file), { recursive: true });
  const temp = `${file}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(temp, JSON.stringify(verdicts, null, 1));
  await Deno.rename(temp, file);
}

/**
 * What tells this processor from another: on Linux the vendor, family, model, stepping, name and
 * feature flags of `/proc/cpuinfo`'s first processor (virtual machines often name only the
 * vendor); elsewhere the model name. The core count is added.
 */
function processorIdentity(): string {
  return identity ??= readProcessorIdentity();
}

/** {@link processorIdentity}, read once per process (every model load asks for it). */
let identity: string | undefined;

function readProcessorIdentity(): string {
  const cores = navigator.hardwareConcurrency;
  try {
    const first = Deno.readTextFileSync("/proc/cpuinfo").split("\n\n")[0] ?? "";
    const fields = ["vendor_id", "cpu family", "model", "model name", "stepping", "flags"];
    const values = first.split("\n")
      .map((line) => line.split(":").map((part) => part.trim()))
      .filter(([name]) => fields.includes(name ?? ""))
      .map(([name, value]) => `${name}=${name === "flags" ? fnv1a(value ?? "") : value}`);
    if (values.length > 0) return `${values.join(";")};cores=${cores}`;
  } catch {
    // not Linux
  }
  return `${cpus()[0]?.model ?? "unknown"};cores=${cores}`;
}

/** A short hash of a long string (FNV-1a, 32 bits, hexadecimal). */
function fnv1a(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}
