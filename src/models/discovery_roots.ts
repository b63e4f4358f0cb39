/**
 * Where model discovery looks: the search roots of every source, computed only from the
 * options, the environment and the home folder passed in (nothing here touches the disk),
 * so each source can be tested with a fake environment, including Windows paths on Linux.
 *
 * @module
 */

import { isAbsolute, join, posix, resolve, win32 } from "node:path";

/**
 * Where a model was found.
 *
 * - `env`: `SHIMMY_BASE_GGUF` (and `SHIMMY_LORA_GGUF`, an adapter).
 * - `cli`: `--model PATH` (a file, or a folder to scan).
 * - `model-dirs`: `--model-dirs` and `SHIMMY_MODEL_PATHS`.
 * - `local`: `./models` under the working folder.
 * - `huggingface`: the Hugging Face hub cache.
 * - `ollama`: Ollama's model store.
 * - `lmstudio`: LM Studio's model folders.
 * - `shimmy`: the original Shimmy's places (`~/models`, the data folder, the folder of
 *   `SHIMMY_BASE_GGUF`).
 */
export type ModelSourceKind =
  | "env"
  | "cli"
  | "model-dirs"
  | "local"
  | "huggingface"
  | "ollama"
  | "lmstudio"
  | "shimmy";

/** Every source, in priority order: an earlier source wins a name or a file found twice. */
export const MODEL_SOURCE_KINDS: readonly ModelSourceKind[] = [
  "env",
  "cli",
  "model-dirs",
  "local",
  "huggingface",
  "ollama",
  "lmstudio",
  "shimmy",
];

/** The operating system whose conventions are used (same values as `Deno.build.os`). */
export type DiscoveryPlatform = typeof Deno.build.os;

/** The environment: a plain object (tests) or a lookup function. */
export type DiscoveryEnv =
  | Readonly<Record<string, string | undefined>>
  | ((name: string) => string | undefined);

/** What a search root holds, which decides how it is scanned. */
export type RootLayout =
  /** One model file (`SHIMMY_BASE_GGUF`). */
  | "file"
  /** One LoRA adapter file (`SHIMMY_LORA_GGUF`). */
  | "adapter"
  /** A file or a folder (`--model PATH`). */
  | "path"
  /** A folder scanned for `*.gguf` files. */
  | "folder"
  /** A Hugging Face hub cache (`models--ORG--NAME/snapshots/REV/…`). */
  | "huggingface"
  /** An Ollama store (`manifests/…` and `blobs/sha256-…`). */
  | "ollama";

/** One place discovery looks. */
export interface DiscoveryRoot {
  /** The source it belongs to. */
  readonly source: ModelSourceKind;
  /** Absolute path. */
  readonly path: string;
  /** Where the path came from, e.g. `"SHIMMY_MODEL_PATHS"` or `"~/models"`. */
  readonly label: string;
  /** How it is scanned. */
  readonly layout: RootLayout;
  /** True when the user named it (a missing explicit root is reported in `skipped`). */
  readonly explicit: boolean;
}

/** Options for {@link discoveryRoots} (and, through it, `discoverModels`). */
export interface DiscoveryRootOptions {
  /** Environment variables. Default: the process environment (`Deno.env.get`). */
  readonly env?: DiscoveryEnv;
  /**
   * Home folder. Default: `USERPROFILE` on Windows, `HOME` elsewhere, read from `env`; when
   * absent, the sources under the home folder are not searched.
   */
  readonly home?: string;
  /** Folder that relative paths and `./models` are relative to. Default: `Deno.cwd()`. */
  readonly cwd?: string;
  /** Path conventions to follow. Default: `Deno.build.os`. */
  readonly platform?: DiscoveryPlatform;
  /** `--model PATH` values, in order (files or folders). Default: none. */
  readonly models?: readonly string[];
  /** `--model-dirs` value(s); each string may hold a path list. Default: none. */
  readonly modelDirs?: string | readonly string[];
  /** Sources to search; a source left out is on. Default: all on. */
  readonly sources?: Readonly<Partial<Record<ModelSourceKind, boolean>>>;
}

/**
 * Returns an environment lookup for a {@link DiscoveryEnv}. On Windows, names are matched
 * case-insensitively, as Windows does.
 *
 * @param env The environment (default: the process environment).
 * @param platform Conventions to follow.
 * @returns A lookup returning `undefined` for unset or empty variables.
 */
export function envLookup(
  env: DiscoveryEnv | undefined,
  platform: DiscoveryPlatform,
): (name: string) => string | undefined {
  let get: (name: string) => string | undefined;
  if (env === undefined) {
    get = (name) => Deno.env.get(name);
  } else if (typeof env === "function") {
    get = env;
  } else if (platform === "windows") {
    const folded = new Map(Object.entries(env).map(([k, v]) => [k.toUpperCase(), v]));
    get = (name) => folded.get(name.toUpperCase());
  } else {
    get = (name) => Object.hasOwn(env, name) ? env[name] : undefined;
  }
  return (name) => {
    const value = get(name)?.trim();
    return value ? value : undefined;
  };
}

/**
 * Splits a path list such as `SHIMMY_MODEL_PATHS`: on `;` everywhere and also on `:` (the
 * path delimiter) outside Windows, where `:` belongs to drive letters.
 *
 * @param value The list.
 * @param platform Conventions to follow. Default: `Deno.build.os`.
 * @returns The non-empty entries, trimmed.
 *
 * @example
 * ```ts
 * import { splitPathList } from "./discovery_roots.ts";
 * splitPathList("/a:/b;/c", "linux"); // ["/a", "/b", "/c"]
 * splitPathList("C:\\m;D:\\n", "windows"); // ["C:\\m", "D:\\n"]
 * ```
 */
export function splitPathList(
  value: string,
  platform: DiscoveryPlatform = Deno.build.os,
): string[] {
  const separator = platform === "windows" ? /;/ : /[;:]/;
  return value.split(separator).map((part) => part.trim()).filter((part) => part !== "");
}

/**
 * Lists every place discovery searches, in priority order, without duplicates:
 *
 * 1. `env`: `SHIMMY_BASE_GGUF` (a model) and `SHIMMY_LORA_GGUF` (its adapter).
 * 2. `cli`: each `--model PATH`.
 * 3. `model-dirs`: `--model-dirs`, then `SHIMMY_MODEL_PATHS` (path lists).
 * 4. `local`: `CWD/models`.
 * 5. `huggingface`: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else
 *    `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (the precedence of the
 *    `huggingface_hub` library).
 * 6. `ollama`: `OLLAMA_MODELS`, else `~/.ollama/models`.
 * 7. `lmstudio`: `~/.lmstudio/models`, `~/.cache/lm-studio/models`.
 * 8. `shimmy`: `~/models`; `%LOCALAPPDATA%\shimmy\models` on Windows, else
 *    `$XDG_DATA_HOME/shimmy/models` or `~/.local/share/shimmy/models`; the folder of
 *    `SHIMMY_BASE_GGUF`.
 *
 * Paths from the environment are built with the `platform`'s conventions (`~` is the home
 * folder, `%USERPROFILE%` on Windows); relative user paths are taken from `cwd`.
 *
 * @param options Environment, home, working folder, platform, CLI values, enabled sources.
 * @returns The roots.
 *
 * @example
 * ```ts
 * import { discoveryRoots } from "./discovery_roots.ts";
 * const roots = discoveryRoots({ env: { HOME: "/home/ann" }, cwd: "/srv", platform: "linux" });
 * console.log(roots.map((r) => `${r.source} ${r.path}`));
 * ```
 */
export function discoveryRoots(options: DiscoveryRootOptions = {}): DiscoveryRoot[] {
  const platform = options.platform ?? Deno.build.os;
  const env = envLookup(options.env, platform);
  const p = platform === "windows" ? win32 : posix;
  const cwd = options.cwd ?? Deno.cwd();
  // A Windows-style working folder (drive or UNC) follows Windows rules even off Windows, so
  // that tests can compute Windows paths on Linux; otherwise the host's rules apply.
  const cwdApi = platform === "windows" && /^([a-zA-Z]:[\\/]|\\\\)/.test(cwd)
    ? win32
    : { isAbsolute, join, resolve };
  const home = options.home ?? env(platform === "windows" ? "USERPROFILE" : "HOME");
  const on = (source: ModelSourceKind) => options.sources?.[source] ?? true;

  const userPath = (value: string): string => {
    if (home !== undefined && (value === "~" || /^~[\\/]/.test(value))) {
      return p.join(home, value.slice(1));
    }
    if (p.isAbsolute(value)) return p.normalize(value);
    return cwdApi.isAbsolute(cwd) ? cwdApi.resolve(cwd, value) : cwdApi.join(cwd, value);
  };
  const inHome = (...parts: string[]) => home === undefined ? undefined : p.join(home, ...parts);
  const homeLabel = (...parts: string[]) =>
    platform === "windows" ? ["%USERPROFILE%", ...parts].join("\\") : ["~", ...parts].join("/");

  const roots: DiscoveryRoot[] = [];
  const seen = new Set<string>();
  const add = (
    source: ModelSourceKind,
    path: string | undefined,
    label: string,
    layout: RootLayout,
    explicit: boolean,
  ) => {
    if (path === undefined || !on(source)) return;
    const key = `${layout === "path" || layout === "file" ? "file" : layout}\0${path}`;
    if (seen.has(key)) return;
    seen.add(key);
    roots.push({ source, path, label, layout, explicit });
  };

  const base = env("SHIMMY_BASE_GGUF");
  const basePath = base === undefined ? undefined : userPath(base);
  const lora = env("SHIMMY_LORA_GGUF");
  add("env", basePath, "SHIMMY_BASE_GGUF", "file", true);
  add("env", lora === undefined ? undefined : userPath(lora), "SHIMMY_LORA_GGUF", "adapter", true);

  for (const model of options.models ?? []) {
    if (model.trim() !== "") add("cli", userPath(model.trim()), "--model", "path", true);
  }

  const dirOption = typeof options.modelDirs === "string"
    ? [options.modelDirs]
    : options.modelDirs ?? [];
  for (const list of dirOption) {
    for (const dir of splitPathList(list, platform)) {
      add("model-dirs", userPath(dir), "--model-dirs", "folder", true);
    }
  }
  for (const dir of splitPathList(env("SHIMMY_MODEL_PATHS") ?? "", platform)) {
    add("model-dirs", userPath(dir), "SHIMMY_MODEL_PATHS", "folder", true);
  }

  add("local", cwdApi.join(cwd, "models"), "./models", "folder", false);

  const hfHub = env("HF_HUB_CACHE");
  const hfLegacy = env("HUGGINGFACE_HUB_CACHE");
  const hfHome = env("HF_HOME");
  const xdgCache = platform === "windows" ? undefined : env("XDG_CACHE_HOME");
  if (hfHub !== undefined) {
    add("huggingface", userPath(hfHub), "HF_HUB_CACHE", "huggingface", true);
  } else if (hfLegacy !== undefined) {
    add("huggingface", userPath(hfLegacy), "HUGGINGFACE_HUB_CACHE", "huggingface", true);
  } else if (hfHome !== undefined) {
    add("huggingface", p.join(userPath(hfHome), "hub"), "HF_HOME/hub", "huggingface", false);
  } else if (xdgCache !== undefined) {
    const path = p.join(userPath(xdgCache), "huggingface", "hub");
    add("huggingface", path, "XDG_CACHE_HOME/huggingface/hub", "huggingface", false);
  } else {
    const path = inHome(".cache", "huggingface", "hub");
    add("huggingface", path, homeLabel(".cache", "huggingface", "hub"), "huggingface", false);
  }

  const ollama = env("OLLAMA_MODELS");
  if (ollama !== undefined) {
    add("ollama", userPath(ollama), "OLLAMA_MODELS", "ollama", true);
  } else {
    add("ollama", inHome(".ollama", "models"), homeLabel(".ollama", "models"), "ollama", false);
  }

  add("lmstudio", inHome(".lmstudio", "models"), homeLabel(".lmstudio", "models"), "folder", false);
  const lmCache = inHome(".cache", "lm-studio", "models");
  add("lmstudio", lmCache, homeLabel(".cache", "lm-studio", "models"), "folder", false);

  add("shimmy", inHome("models"), homeLabel("models"), "folder", false);
  if (platform === "windows") {
    const local = env("LOCALAPPDATA");
    if (local !== undefined) {
      const path = p.join(userPath(local), "shimmy", "models");
      add("shimmy", path, "%LOCALAPPDATA%\\shimmy\\models", "folder", false);
    } else {
      const path = inHome("AppData", "Local", "shimmy", "models");
      add("shimmy", path, homeLabel("AppData", "Local", "shimmy", "models"), "folder", false);
    }
  } else {
    const data = env("XDG_DATA_HOME");
    if (data !== undefined) {
      const path = p.join(userPath(data), "shimmy", "models");
      add("shimmy", path, "$XDG_DATA_HOME/shimmy/models", "folder", false);
    } else {
      const path = inHome(".local", "share", "shimmy", "models");
      add("shimmy", path, "~/.local/share/shimmy/models", "folder", false);
    }
  }
  if (basePath !== undefined) {
    add("shimmy", p.dirname(basePath), "folder of SHIMMY_BASE_GGUF", "folder", false);
  }
  return roots;
}
