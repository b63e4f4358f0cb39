/**
 * `shimmy pull REFERENCE`: downloads a model from the Hugging Face Hub (or a URL) into the
 * Hugging Face cache, with a progress bar on a terminal and plain lines otherwise.
 *
 * @module
 */

import { DEFAULT_QUANT } from "../models/hf_hub.ts";
import { pullModel, type PullProgress, type PullResult } from "../models/pull.ts";
import type { GlobalFlags } from "./global_flags.ts";
import { parseFlags } from "./flags.ts";
import { UsageError } from "./usage_error.ts";

/** Usage text of `shimmy pull`. */
export const PULL_USAGE = `Usage: shimmy pull REFERENCE [--dry-run]

Downloads a GGUF model into the Hugging Face cache (~/.cache/huggingface/hub, or HF_HOME/hub),
where shimmy, llama.cpp and other tools find it. An interrupted pull resumes where it
stopped; every file's SHA-256 is checked against the hub.

REFERENCE is one of:
  hf.co/ORG/REPO[:QUANT]    a repository's GGUF of that quantization (default ${DEFAULT_QUANT})
  ORG/REPO[:QUANT]          the same
  ORG/REPO/FILE.gguf        one file (all shards of a split model)
  https://…/FILE.gguf       any URL (saved in ~/.local/share/shimmy/models)

Options:
  --dry-run     Show what would be downloaded, download nothing
  --quiet       No progress

Environment:
  HF_TOKEN      Access token for gated or private repositories
                (https://huggingface.co/settings/tokens)
  HF_ENDPOINT   Hub mirror (default https://huggingface.co)

Examples:
  shimmy pull Qwen/Qwen2.5-0.5B-Instruct-GGUF              # Q4_K_M, about 490 MB
  shimmy pull hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M
  shimmy pull Qwen/Qwen2.5-0.5B-Instruct-GGUF --dry-run`;

/**
 * Runs `shimmy pull`.
 *
 * @param args Arguments after the command name.
 * @param _globals Global flags.
 * @returns The exit code.
 */
export async function pullMain(args: string[], _globals: GlobalFlags): Promise<number> {
  const parsed = parseFlags(args, {
    "dry-run": { type: "boolean", default: false },
    quiet: { type: "boolean", short: "q", default: false },
    help: { type: "boolean", short: "h", default: false },
  }, 1);
  if (parsed.values.help) {
    console.log(PULL_USAGE);
    return 0;
  }
  const reference = parsed.positionals[0];
  if (!reference) {
    throw new UsageError(
      "Name a model to pull, e.g. shimmy pull Qwen/Qwen2.5-0.5B-Instruct-GGUF",
      { pointToHelp: true },
    );
  }
  const abort = new AbortController();
  const onSignal = () => abort.abort(new Error("Pull stopped; run it again to resume"));
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const dryRun = parsed.values["dry-run"];
    const printer = pullProgressPrinter(parsed.values.quiet || dryRun);
    const result = await pullModel(reference, {
      dryRun,
      onProgress: printer.update,
      signal: abort.signal,
    });
    printer.done();
    console.log(dryRun ? dryRunReport(result) : pulledReport(result));
    return 0;
  } catch (error) {
    if (abort.signal.aborted) {
      console.error(`\nshimmy: pull stopped; run it again to resume`);
      return 130;
    }
    throw error;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
  }
}

function dryRunReport(result: PullResult): string {
  const lines = [
    `Would pull ${result.name}${result.commit ? ` (commit ${result.commit.slice(0, 12)})` : ""}:`,
  ];
  for (const f of result.files) {
    lines.push(
      `  ${f.path}  ${formatBytes(f.size)}${f.present ? "  (already here)" : ""}  → ${f.localPath}`,
    );
  }
  return lines.join("\n");
}

function pulledReport(result: PullResult): string {
  // A hub model is found by its reference from anywhere; a URL's file by its path.
  const model = result.repo ? result.name : shellWord(result.path);
  return `Pulled ${result.name} (${formatBytes(result.bytes)}): ${result.path}\n` +
    `Chat with it:  shimmy run ${model}\n` +
    `Serve it:      shimmy serve --model ${model}`;
}

/** A path as one word of a command line: as it is when it is plain, else quoted. */
function shellWord(path: string): string {
  const windows = Deno.build.os === "windows";
  if ((windows ? /^[\w@%+=:,./\\-]+$/ : /^[\w@%+=:,./-]+$/).test(path)) return path;
  return windows ? `"${path}"` : `'${path.replaceAll("'", `'\\''`)}'`;
}

/** A progress printer for pulls. */
export interface PullProgressPrinter {
  /** Takes a progress report. */
  update: (progress: PullProgress) => void;
  /** Ends the bar's line. */
  done: () => void;
}

/**
 * Pull progress on stderr: a live bar (bytes, speed, ETA) on a terminal, else a line per
 * file at each tenth.
 *
 * @param quiet Print nothing. Default false.
 * @param live Redraw one line. Default: whether stderr is a terminal.
 * @param write Where text goes. Default stderr.
 * @returns The printer.
 */
export function pullProgressPrinter(
  quiet = false,
  live: boolean = Deno.stderr.isTerminal(),
  write: (text: string) => void = (t) => Deno.stderr.writeSync(new TextEncoder().encode(t)),
): PullProgressPrinter {
  let current: string | undefined;
  let started = 0;
  let startBytes = 0;
  let lastTenth = -1;
  let lastDraw = 0;
  let drawn = false;
  return {
    update(p) {
      if (quiet || !p.file) return;
      if (p.status === "present") {
        write(`${p.file}: already downloaded\n`);
        return;
      }
      if (p.file !== current) {
        if (drawn) write("\n");
        drawn = false;
        current = p.file;
        started = performance.now();
        startBytes = p.completed ?? 0;
        lastTenth = -1;
        if (!live) write(`Downloading ${p.file}${p.total ? ` (${formatBytes(p.total)})` : ""}\n`);
      }
      const completed = p.completed ?? 0;
      const seconds = (performance.now() - started) / 1000;
      const speed = seconds > 0 ? (completed - startBytes) / seconds : 0;
      const fraction = p.total ? completed / p.total : 0;
      const eta = speed > 0 && p.total ? (p.total - completed) / speed : undefined;
      const stats = `${formatBytes(completed)}${p.total ? `/${formatBytes(p.total)}` : ""}  ` +
        `${formatBytes(speed)}/s${eta !== undefined ? `  ETA ${formatDuration(eta)}` : ""}`;
      if (live) {
        const now = performance.now();
        if (now - lastDraw < 100 && completed !== p.total) return;
        lastDraw = now;
        const width = 24;
        const filled = Math.round(fraction * width);
        const bar = "█".repeat(filled) + "░".repeat(width - filled);
        write(`\r${p.file} ${bar} ${Math.floor(fraction * 100)}%  ${stats}\x1b[K`);
        drawn = true;
      } else if (p.total) {
        const tenth = Math.floor(fraction * 10);
        if (tenth > lastTenth && (tenth > 0 || lastTenth < 0)) {
          lastTenth = tenth;
          if (tenth > 0) write(`${p.file}: ${tenth * 10}%  ${stats}\n`);
        }
      }
    },
    done() {
      if (drawn) write("\n");
      drawn = false;
    },
  };
}

/**
 * Bytes for people: `490.0 MB`.
 *
 * @param bytes A count.
 * @returns The text.
 */
export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return m >= 60
    ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
    : `${m}:${String(s % 60).padStart(2, "0")}`;
}
