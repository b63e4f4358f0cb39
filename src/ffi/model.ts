/**
 * `Model`: an owned `llama_model` with its vocabulary (tokenize, pieces, detokenize) and
 * metadata. Loading runs off the main thread and reports progress.
 *
 * @module
 */

import { readGgufInfo } from "../gguf/reader.ts";
import { GgufError } from "../gguf/types.ts";
import { metadataProblem } from "../gguf/metadata_sanity.ts";
import { concatTokens } from "../util/arrays.ts";
import { cString, readCString, readIntoBuffer } from "./cstring.ts";
import { ModelLoadError } from "./errors.ts";
import { NativeHandle } from "./handle.ts";
import { LlamaModelParams, SplitMode } from "./layouts.ts";
import type { Llama } from "./llama.ts";
import { ModelGate } from "./model_gate.ts";
import { type SpecialToken, SpecialTokenCutter } from "./tokenize_chunks.ts";
import { BIG_TEXT_CHARS, bigTextTurns } from "./tokenize_turns.ts";
import { cutLongRuns, RUN_PIECE_CHARS, splitsWithStdRegex } from "./long_runs.ts";

/** How to load a model. Unset fields keep llama.cpp's defaults. */
export interface ModelLoadOptions {
  /** Layers to offload to GPU; -1 means all. Default: llama.cpp's (all layers). */
  nGpuLayers?: number;
  /** ggml device indices to use, in order (see `Llama.devices()`); [] means CPU only. */
  devices?: number[];
  /** Index into `devices` of the GPU used when not splitting. Default 0. */
  mainGpu?: number;
  /** How to split across GPUs. Default `"layer"`. */
  splitMode?: keyof typeof SplitMode;
  /** Proportion of the model per device. Default: by free memory. */
  tensorSplit?: number[];
  /** Memory-map the file (true) or read it (false). Default: llama.cpp's (auto). */
  useMmap?: boolean;
  /** Load only the vocabulary. Default false. */
  vocabOnly?: boolean;
  /** Called with the load progress in [0, 1]. */
  onProgress?: (fraction: number) => void;
  /** Aborts the load. */
  signal?: AbortSignal;
}

/** The parameters that were passed to `llama_model_load_from_file`, decoded back. */
export interface PassedModelParams {
  n_gpu_layers: number;
  main_gpu: number;
  split_mode: number;
  load_mode: number;
  vocab_only: boolean;
  /** Device indices in the NULL-terminated `devices` list; undefined when the list was NULL. */
  devices: number[] | undefined;
  tensor_split: number[] | undefined;
}

/** How many layers llama.cpp put on GPUs, as its loader reported. */
export interface OffloadReport {
  /** Layers on GPU devices. */
  offloaded: number;
  /** Layers in the model (llama.cpp counts the output layer too). */
  total: number;
}

/** A vocabulary's fill-in-the-middle tokens; -1 marks one it lacks. */
export interface FimTokens {
  /** Starts the code before the gap. */
  prefix: number;
  /** Starts the code after the gap. */
  suffix: number;
  /** Ends the prompt: the answer fills the gap. */
  middle: number;
  /** Starts the repository's name, before the other files. */
  repo: number;
  /** Starts each file (its name, then its text). */
  fileSeparator: number;
}

/** Options for {@link Model.tokenize}. */
export interface TokenizeOptions {
  /** Add BOS/EOS as the vocabulary asks. Default true. */
  addSpecial?: boolean;
  /** Parse special tokens written as text (e.g. `<|im_start|>`). Default true. */
  parseSpecial?: boolean;
}

/** Options for {@link Model.tokenizeAsync}. */
export interface TokenizeAsyncOptions extends TokenizeOptions {
  /** Stops between pieces of a big text; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Tokens of pieces tokenized before: with one (and `parseSpecial`), a text longer than
   * {@link CACHED_PIECE_CHARS} is cut into pieces of about that size at special tokens, and
   * only the pieces the cache lacks are tokenized (then kept in it). Default: none.
   */
  pieceCache?: TokenPieceCache;
}

/** Tokens of text pieces tokenized before, by piece (see {@link Model.tokenizeAsync}). */
export interface TokenPieceCache {
  /** The tokens of a piece seen before, or undefined. */
  get(piece: string): Int32Array | undefined;
  /** Keeps a piece's tokens. */
  set(piece: string, tokens: Int32Array): void;
}

/**
 * Piece size (UTF-16 code units) of {@link Model.tokenizeAsync} with a piece cache: a chat's
 * next turn repeats the conversation so far, whose pieces then come from the cache, and only
 * the last piece before the new messages and those messages are tokenized again.
 */
export const CACHED_PIECE_CHARS = 1024;

/**
 * Text length (UTF-16 code units) above which {@link Model.tokenizeAsync} cuts the text into
 * pieces of about this size at special tokens, one native call each: llama.cpp's special-token
 * split is quadratic in the markers per call, and a piece is a point where a request can stop.
 */
export const TOKENIZE_PIECE_CHARS = 16 * 1024;

/**
 * `llama_token_attr` bits of the tokens llama.cpp splits out before tokenizing
 * (`LLAMA_TOKEN_ATTR_UNKNOWN | LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_USER_DEFINED`).
 */
const SPECIAL_ATTRS = (1 << 0) | (1 << 3) | (1 << 4);
/** `LLAMA_TOKEN_ATTR_LSTRIP`: the token eats whitespace on its left. */
const ATTR_LSTRIP = 1 << 7;

/** `LLAMA_VOCAB_TYPE_SPM` and `LLAMA_VOCAB_TYPE_BPE`: vocabularies that keep every character. */
const VOCAB_TYPE_SPM = 1;
const VOCAB_TYPE_BPE = 2;

/**
 * Runs tokenization work on `chars` characters of text: at once when they are few, else in its
 * turn among the big texts of every model and request (`tokenize_turns.ts`).
 */
function inTurn<T>(chars: number, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  return chars <= BIG_TEXT_CHARS ? work() : bigTextTurns.run(chars, work, signal);
}

/** The most characters one token covers (see `Model.fewestTokens`). */
interface TokenReach {
  /** Characters other than whitespace. */
  all: number;
  /** ASCII letters and digits. */
  alnum: number;
  /** The other characters that are not whitespace. */
  other: number;
}

/**
 * How many of a text's UTF-16 units are ASCII letters and digits, and how many are something else
 * that is not whitespace.
 */
function characterClasses(
  text: string,
  isSpace: (code: number) => boolean,
): { alnum: number; other: number } {
  let alnum = 0;
  let other = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (isSpace(code)) continue;
    if (isAsciiAlnum(code)) alnum++;
    else other++;
  }
  return { alnum, other };
}

/** Whether a UTF-16 code unit is an ASCII letter or digit. */
function isAsciiAlnum(code: number): boolean {
  return (code >= 48 && code <= 57) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122);
}

/** Whether a UTF-16 code unit is whitespace to C's `isspace()` (what special tokens may strip). */
function isCSpace(code: number): boolean {
  return code === 32 || (code >= 9 && code <= 13);
}

/**
 * Whether a character of a byte-level BPE token's text stands for whitespace: `ĉ Ċ ċ Č č` for tab
 * to carriage return and `Ġ` for a space (U+0109-U+010D, U+0120), or is whitespace itself.
 */
function isByteLevelSpace(code: number): boolean {
  return isCSpace(code) || code === 0x120 || (code >= 0x109 && code <= 0x10d);
}

/** Whether a character of a SentencePiece token's text is `▁` (a space) or whitespace itself. */
function isSentencePieceSpace(code: number): boolean {
  return isCSpace(code) || code === 0x2581;
}

const MAX_TENSOR_SPLIT = 128;

/**
 * Builds the `llama_model_params` buffer for a load, plus the buffers it points into (which
 * must stay alive until the load returns).
 *
 * @param llama The runtime.
 * @param options Load options.
 * @returns The params buffer and its keep-alive list.
 */
export function buildModelParams(
  llama: Llama,
  options: ModelLoadOptions,
): { params: Uint8Array<ArrayBuffer>; keepAlive: unknown[] } {
  const params = new Uint8Array(llama.symbols.llama_model_default_params());
  const keepAlive: unknown[] = [];
  const { set } = LlamaModelParams.on(params);
  if (options.nGpuLayers !== undefined) set("n_gpu_layers", options.nGpuLayers);
  if (options.mainGpu !== undefined) set("main_gpu", options.mainGpu);
  if (options.splitMode !== undefined) set("split_mode", SplitMode[options.splitMode]);
  if (options.useMmap !== undefined) set("load_mode", options.useMmap ? 1 : 0);
  if (options.vocabOnly !== undefined) set("vocab_only", options.vocabOnly);
  if (options.devices !== undefined) {
    const list = new BigUint64Array(options.devices.length + 1);
    options.devices.forEach((index, i) => {
      list[i] = BigInt(Deno.UnsafePointer.value(llama.deviceHandle(index)));
    });
    keepAlive.push(list);
    set("devices", Deno.UnsafePointer.of(list));
  }
  if (options.tensorSplit !== undefined) {
    const split = new Float32Array(MAX_TENSOR_SPLIT);
    split.set(options.tensorSplit.slice(0, MAX_TENSOR_SPLIT));
    keepAlive.push(split);
    set("tensor_split", Deno.UnsafePointer.of(split));
  }
  return { params, keepAlive };
}

/**
 * Decodes a `llama_model_params` buffer back into plain values (tests and `/diag` use this to
 * show what really reached llama.cpp).
 *
 * @param llama The runtime (to map device pointers back to indices).
 * @param params The buffer.
 * @returns The decoded fields.
 */
export function decodeModelParams(llama: Llama, params: Uint8Array): PassedModelParams {
  const { get } = LlamaModelParams.on(params);
  const devicesPtr = get("devices");
  let devices: number[] | undefined;
  if (devicesPtr !== null) {
    const known = new Map(
      llama.devices().map((d) => [Deno.UnsafePointer.value(llama.deviceHandle(d.index)), d.index]),
    );
    devices = [];
    const view = new Deno.UnsafePointerView(devicesPtr);
    for (let i = 0;; i++) {
      const dev = view.getBigUint64(i * 8);
      if (dev === 0n) break;
      devices.push(known.get(dev) ?? -1);
    }
  }
  const splitPtr = get("tensor_split");
  return {
    n_gpu_layers: get("n_gpu_layers"),
    main_gpu: get("main_gpu"),
    split_mode: get("split_mode"),
    load_mode: get("load_mode"),
    vocab_only: get("vocab_only"),
    devices,
    tensor_split: splitPtr === null ? undefined : [
      ...new Float32Array(Deno.UnsafePointerView.getArrayBuffer(splitPtr, MAX_TENSOR_SPLIT * 4)),
    ],
  };
}

/** Files that passed {@link checkModelFile}, by path, as they were then. */
const checkedFiles = new Map<string, string>();
/** Most files {@link checkedFiles} remembers (the oldest is forgotten first). */
const CHECKED_FILES_KEPT = 256;

/**
 * Refuses a file llama.cpp would refuse, before it reads it: missing, not a file, not GGUF,
 * cut short (tensor data past its end, as a truncated download leaves it), or with metadata
 * llama.cpp would abort on. Cheap (the header only), so a caller can run it before it unloads
 * another model to make room for this one. A file that passed and has the same size, inode and
 * modification time (to the millisecond) is not read again: the registry checks before it makes
 * room and the load checks again (each copy, with `--replicas`), and a 150k-token vocabulary's
 * header takes 200-300 ms to read.
 *
 * @param path The GGUF file (the first shard of a split model).
 * @throws {ModelLoadError} naming what is wrong.
 * @example
 * ```ts
 * await checkModelFile("/models/phi3.gguf");
 * ```
 */
export async function checkModelFile(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new ModelLoadError("not_found", path, `Cannot load model ${path}: file not found`);
    }
    throw new ModelLoadError(
      "not_readable",
      path,
      `Cannot load model ${path}: ${(error as Error).message}`,
      error,
    );
  }
  if (!info.isFile) {
    throw new ModelLoadError("invalid_file", path, `Cannot load model ${path}: not a file`);
  }
  const seen = fileIdentity(info);
  if (seen !== undefined && checkedFiles.get(path) === seen) return;
  checkedFiles.delete(path);
  const magic = new Uint8Array(4);
  try {
    using file = await Deno.open(path, { read: true });
    const n = await file.read(magic);
    if (n !== 4 || new TextDecoder().decode(magic) !== "GGUF") {
      throw new ModelLoadError(
        "invalid_file",
        path,
        `Cannot load model ${path}: not a GGUF file (it does not start with the GGUF magic)`,
      );
    }
  } catch (error) {
    if (error instanceof ModelLoadError) throw error;
    throw new ModelLoadError(
      "not_readable",
      path,
      `Cannot load model ${path}: ${(error as Error).message}`,
      error,
    );
  }
  // What llama.cpp would abort on, and a file cut short; a header Shimmy's reader cannot read
  // otherwise is llama.cpp's to judge.
  const problem = await readGgufInfo(path, { skipArrays: true }).then(
    (info) => metadataProblem(info.metadata),
    (error) => error instanceof GgufError && error.code === "truncated" ? error.message : undefined,
  );
  if (problem) {
    throw new ModelLoadError("invalid_file", path, `Cannot load model ${path}: ${problem}`);
  }
  if (seen !== undefined) checkedFiles.set(path, seen);
  if (checkedFiles.size > CHECKED_FILES_KEPT) {
    checkedFiles.delete(checkedFiles.keys().next().value as string);
  }
}

/** What tells a file's versions apart: size, inode and modification time; undefined if unknown. */
function fileIdentity(info: Deno.FileInfo): string | undefined {
  if (!info.mtime || info.ino === null) return undefined;
  return `${info.size}:${info.ino}:${info.mtime.getTime()}`;
}

/** An owned `llama_model`. */
export class Model extends NativeHandle {
  /** The runtime this model belongs to. */
  readonly llama: Llama;
  /** Path it was loaded from. */
  readonly path: string;
  /** The params that were passed to `llama_model_load_from_file`. */
  readonly loadParams: PassedModelParams;
  /** Wall-clock load time in milliseconds. */
  readonly loadMs: number;
  /** Layers offloaded to GPUs; `{offloaded: 0}` on a CPU-only load. */
  readonly offload: OffloadReport;
  /** Decodes of the model's contexts enter it shared, adapter loads alone (see model_gate.ts). */
  readonly gate = new ModelGate();
  readonly #vocab: Deno.PointerObject;
  readonly #pieces = new Map<number, Uint8Array>();
  /** Finds safe cuts in big texts; `null` when a special token's text is not UTF-8. */
  #cutter: SpecialTokenCutter | null | undefined;
  #eogTokens: readonly number[] | undefined;
  #tokenReach: TokenReach | undefined;
  /** Whether long runs are cut before tokenizing (see `long_runs.ts`). */
  #cutsRuns: boolean | undefined;

  private constructor(
    llama: Llama,
    pointer: Deno.PointerObject,
    path: string,
    loadParams: PassedModelParams,
    loadMs: number,
    offload: OffloadReport,
  ) {
    const free = llama.symbols.llama_model_free;
    super("Model", pointer, () => free(pointer));
    this.llama = llama;
    this.path = path;
    this.loadParams = loadParams;
    this.loadMs = loadMs;
    this.offload = offload;
    const vocab = llama.symbols.llama_model_get_vocab(pointer);
    if (vocab === null) throw new ModelLoadError("load_failed", path, "Model has no vocabulary");
    this.#vocab = vocab;
  }

  /**
   * Loads a GGUF model. Checks the file first, so a missing or non-GGUF file never reaches
   * llama.cpp; a file llama.cpp rejects gives its own reason.
   *
   * @param llama The runtime.
   * @param path Path of the `.gguf` file (the first shard of a split model).
   * @param options GPU layers, devices, mmap, progress, abort.
   * @returns The loaded model; the caller owns it.
   * @throws {ModelLoadError}
   * @example
   * ```ts
   * using model = await Model.load(Llama.open(), "model.gguf", { nGpuLayers: 0 });
   * ```
   */
  static async load(llama: Llama, path: string, options: ModelLoadOptions = {}): Promise<Model> {
    await checkModelFile(path);
    const { params, keepAlive } = buildModelParams(llama, options);
    const passed = decodeModelParams(llama, params);
    const progress = Deno.UnsafeCallback.threadSafe(
      { parameters: ["f32", "pointer"], result: "bool" } as const,
      (fraction) => {
        options.onProgress?.(fraction);
        return !options.signal?.aborted;
      },
    );
    LlamaModelParams.set(params, "progress_callback", progress.pointer);
    const mark = llama.logMark();
    const started = performance.now();
    let offload: OffloadReport | undefined;
    const stopListening = llama.listen((text) => {
      const match = /offloaded (\d+)\/(\d+) layers to GPU/.exec(text);
      if (match) offload = { offloaded: Number(match[1]), total: Number(match[2]) };
    });
    let pointer: Deno.PointerValue;
    try {
      pointer = await llama.whileNative(() =>
        llama.symbols.llama_model_load_from_file(cString(path), params)
      );
    } finally {
      stopListening();
      progress.close();
      keepAlive.length = 0;
    }
    if (pointer === null) {
      if (options.signal?.aborted) {
        throw new ModelLoadError("load_failed", path, `Loading ${path} was cancelled`);
      }
      const reasons = llama.recentProblems(mark);
      throw new ModelLoadError(
        "load_failed",
        path,
        `Cannot load model ${path}: llama.cpp rejected it` +
          (reasons.length ? ` (${reasons.join("; ")})` : ""),
      );
    }
    const elapsed = performance.now() - started;
    const layers = llama.symbols.llama_model_n_layer(pointer) + 1;
    return new Model(
      llama,
      pointer,
      path,
      passed,
      elapsed,
      offload ?? { offloaded: 0, total: layers },
    );
  }

  /** The `llama_vocab` pointer (for samplers that need it). */
  get vocab(): Deno.PointerObject {
    void this.pointer;
    return this.#vocab;
  }

  /** Context length the model was trained with. */
  get nCtxTrain(): number {
    return this.llama.symbols.llama_model_n_ctx_train(this.pointer);
  }

  /** Embedding width. */
  get nEmbd(): number {
    return this.llama.symbols.llama_model_n_embd(this.pointer);
  }

  /** Width of the model's output embeddings (differs from {@link nEmbd} in a few models). */
  get nEmbdOut(): number {
    return this.llama.symbols.llama_model_n_embd_out(this.pointer);
  }

  /** Attention heads (of the first layer). */
  get nHead(): number {
    return this.llama.symbols.llama_model_n_head(this.pointer);
  }

  /** Key/value heads (of the first layer; fewer than {@link nHead} with grouped-query attention). */
  get nHeadKv(): number {
    return this.llama.symbols.llama_model_n_head_kv(this.pointer);
  }

  /** Layer count. */
  get nLayer(): number {
    return this.llama.symbols.llama_model_n_layer(this.pointer);
  }

  /** Vocabulary size. */
  get nVocab(): number {
    return this.llama.symbols.llama_vocab_n_tokens(this.vocab);
  }

  /** Total tensor bytes. */
  get sizeBytes(): number {
    return Number(this.llama.symbols.llama_model_size(this.pointer));
  }

  /** Parameter count. */
  get nParams(): number {
    return Number(this.llama.symbols.llama_model_n_params(this.pointer));
  }

  /** llama.cpp's one-line description, e.g. `llama 7B Q4_0`. */
  get description(): string {
    return readIntoBuffer((buf, size) =>
      this.llama.symbols.llama_model_desc(this.pointer, buf, BigInt(size))
    ) ?? "";
  }

  /** Beginning-of-sequence token, or -1. */
  get bos(): number {
    return this.llama.symbols.llama_vocab_bos(this.vocab);
  }

  /** End-of-sequence token, or -1. */
  get eos(): number {
    return this.llama.symbols.llama_vocab_eos(this.vocab);
  }

  /** Whether the vocabulary adds BOS when tokenizing with special tokens. */
  get addsBos(): boolean {
    return this.llama.symbols.llama_vocab_get_add_bos(this.vocab);
  }

  /** Whether the vocabulary adds EOS when tokenizing with special tokens. */
  get addsEos(): boolean {
    return this.llama.symbols.llama_vocab_get_add_eos(this.vocab);
  }

  /** Sentence separator token (BERT's `[SEP]`), or -1. */
  get sep(): number {
    return this.llama.symbols.llama_vocab_sep(this.vocab);
  }

  /**
   * The fill-in-the-middle tokens (-1 where the vocabulary has none): `prefix`, `suffix` and
   * `middle` mark the code before and after the gap and where the answer goes; `repo` and
   * `fileSeparator` introduce the repository's name and each further file (Qwen2.5-Coder,
   * StarCoder).
   */
  get fimTokens(): FimTokens {
    const s = this.llama.symbols;
    return {
      prefix: s.llama_vocab_fim_pre(this.vocab),
      suffix: s.llama_vocab_fim_suf(this.vocab),
      middle: s.llama_vocab_fim_mid(this.vocab),
      repo: s.llama_vocab_fim_rep(this.vocab),
      fileSeparator: s.llama_vocab_fim_sep(this.vocab),
    };
  }

  /** Whether the vocabulary adds SEP when tokenizing with special tokens. */
  get addsSep(): boolean {
    return this.llama.symbols.llama_vocab_get_add_sep(this.vocab);
  }

  /** The GGUF chat template (`tokenizer.chat_template`), if any. */
  chatTemplate(name?: string): string | undefined {
    const keyBytes = name === undefined ? undefined : cString(name);
    const key = keyBytes === undefined ? null : Deno.UnsafePointer.of(keyBytes);
    return readCString(this.llama.symbols.llama_model_chat_template(this.pointer, key));
  }

  /** Every GGUF metadata key with its value as llama.cpp prints it (arrays summarised). */
  metadata(): Record<string, string> {
    const s = this.llama.symbols;
    const out: Record<string, string> = {};
    const count = s.llama_model_meta_count(this.pointer);
    for (let i = 0; i < count; i++) {
      const key = readIntoBuffer((buf, size) =>
        s.llama_model_meta_key_by_index(this.pointer, i, buf, BigInt(size))
      );
      const value = readIntoBuffer((buf, size) =>
        s.llama_model_meta_val_str_by_index(this.pointer, i, buf, BigInt(size))
      );
      if (key !== undefined) out[key] = value ?? "";
    }
    return out;
  }

  /** One metadata value as llama.cpp prints it, or undefined when the key is absent. */
  metadataValue(key: string): string | undefined {
    const keyBytes = cString(key);
    return readIntoBuffer((buf, size) =>
      this.llama.symbols.llama_model_meta_val_str(this.pointer, keyBytes, buf, BigInt(size))
    );
  }

  /** A token's text as stored in the vocabulary (special tokens included, e.g. `<s>`). */
  tokenText(token: number): string {
    return readCString(this.llama.symbols.llama_vocab_get_text(this.vocab, token)) ?? "";
  }

  /** Whether a token ends generation (EOS, EOT and the vocabulary's other end tokens). */
  isEog(token: number): boolean {
    return this.llama.symbols.llama_vocab_is_eog(this.vocab, token);
  }

  /**
   * Every token that ends generation ({@link isEog}), found once by asking about each token of
   * the vocabulary (a few milliseconds for 150,000 tokens).
   */
  get eogTokens(): readonly number[] {
    if (this.#eogTokens === undefined) {
      const found: number[] = [];
      for (let token = 0; token < this.nVocab; token++) if (this.isEog(token)) found.push(token);
      this.#eogTokens = found;
    }
    return this.#eogTokens;
  }

  /**
   * A lower bound on the tokens of a text, found without tokenizing it. No token covers more of a
   * text's characters than its stored text holds UTF-16 units, less those standing for whitespace
   * (a byte-level BPE character or SentencePiece's `▁` stands for one byte, and only whitespace
   * can vanish, stripped beside a special token); nor more ASCII letters and digits than it holds
   * (every stored form keeps them as they are), nor more of the other characters than it holds
   * others. So the text's characters other than whitespace, and each of those two classes, over
   * the vocabulary's most, bound its tokens. Only SentencePiece and BPE vocabularies keep every
   * other character; for the others (WordPiece drops spaces and accents, Unigram folds runs of
   * spaces) the bound is 0. Measuring the vocabulary costs a walk over its tokens, done once, and
   * only for a text longer than `atLeast`.
   *
   * @param text The text.
   * @param atLeast The count the caller compares with: a text that cannot pass it returns 0
   *   without counting.
   * @returns A count that the text's tokens are never fewer than.
   * @example
   * ```ts
   * if (model.fewestTokens(prompt, nCtx) > nCtx) throw new Error("too long");
   * ```
   */
  fewestTokens(text: string, atLeast = 0): number {
    if (text.length <= atLeast) return 0;
    const reach = this.#tokenReach ??= this.#measureTokenReach();
    if (reach.all === 0) return 0;
    const least = Math.min(reach.all, reach.alnum || reach.all, reach.other || reach.all);
    if (text.length <= atLeast * least) return 0;
    const { alnum, other } = characterClasses(text, isCSpace);
    const over = (count: number, most: number) => most > 0 ? Math.ceil(count / most) : 0;
    return Math.max(
      over(alnum + other, reach.all),
      over(alnum, reach.alnum),
      over(other, reach.other),
    );
  }

  /**
   * The most characters other than whitespace that one token covers, in all and of each class
   * (see {@link fewestTokens}), over the vocabulary (30-60 ms for 128k tokens); 0 in all where no
   * bound holds.
   */
  #measureTokenReach(): TokenReach {
    const s = this.llama.symbols;
    const type = s.llama_vocab_type(this.vocab);
    const reach = { all: 0, alnum: 0, other: 0 };
    if (type !== VOCAB_TYPE_SPM && type !== VOCAB_TYPE_BPE) return reach;
    const standsForSpace = type === VOCAB_TYPE_BPE ? isByteLevelSpace : isSentencePieceSpace;
    for (let id = 0; id < this.nVocab; id++) {
      const pointer = s.llama_vocab_get_text(this.vocab, id);
      if (pointer === null) continue;
      const { alnum, other } = characterClasses(
        Deno.UnsafePointerView.getCString(pointer),
        standsForSpace,
      );
      reach.all = Math.max(reach.all, alnum + other);
      reach.alnum = Math.max(reach.alnum, alnum);
      reach.other = Math.max(reach.other, other);
    }
    return reach;
  }

  /** Whether a token is a control token. */
  isControl(token: number): boolean {
    return this.llama.symbols.llama_vocab_is_control(this.vocab, token);
  }

  /**
   * Tokenizes text.
   *
   * @param text The text.
   * @param options Special-token handling.
   * @returns The token ids.
   */
  tokenize(text: string, options: TokenizeOptions = {}): Int32Array {
    const addSpecial = options.addSpecial ?? true;
    const parseSpecial = options.parseSpecial ?? true;
    const pieces = this.#runPieces(text);
    if (pieces.length > 1) {
      const tokens = pieces.map((piece) => this.#tokenizeNow(piece, false, parseSpecial));
      return this.#wrapped(tokens, addSpecial);
    }
    return this.#tokenizeNow(text, addSpecial, parseSpecial);
  }

  /**
   * The text in pieces cut inside its long runs, where llama.cpp's `std::regex` split would
   * overflow the stack (`long_runs.ts`); the text alone for other vocabularies and texts.
   */
  #runPieces(text: string): string[] {
    if (text.length <= RUN_PIECE_CHARS) return [text];
    this.#cutsRuns ??= this.llama.symbols.llama_vocab_type(this.vocab) === VOCAB_TYPE_BPE &&
      splitsWithStdRegex(this.metadataValue("tokenizer.ggml.pre"));
    return this.#cutsRuns ? cutLongRuns(text) : [text];
  }

  /** Token lists one after another, with BOS/EOS (or CLS/SEP) around them as one call adds them. */
  #wrapped(parts: readonly Int32Array[], addSpecial: boolean): Int32Array {
    const wrap = addSpecial ? this.#tokenizeNow("", true, false) : new Int32Array(0);
    const head = wrap.length === 2 || (wrap.length === 1 && this.addsBos) ? 1 : 0;
    return concatTokens([wrap.subarray(0, head), ...parts, wrap.subarray(head)]);
  }

  /** One `llama_tokenize` on this thread, with the retry for a too-small output buffer. */
  #tokenizeNow(text: string, addSpecial: boolean, parseSpecial: boolean): Int32Array {
    const bytes = new TextEncoder().encode(text);
    const run = (out: Int32Array<ArrayBuffer>) =>
      this.llama.symbols.llama_tokenize(
        this.vocab,
        bytes,
        bytes.length,
        out,
        out.length,
        addSpecial,
        parseSpecial,
      );
    let out = new Int32Array(bytes.length + 8);
    let n = run(out);
    if (n < 0) {
      out = new Int32Array(-n);
      n = run(out);
    }
    if (n < 0) throw new Error(`Tokenization failed (${n})`);
    return out.slice(0, n);
  }

  /**
   * Tokenizes text on a worker thread, so a big prompt does not hold up the event loop; the
   * tokens are the same as {@link tokenize}'s. Texts longer than {@link TOKENIZE_PIECE_CHARS}
   * (with `parseSpecial`; {@link CACHED_PIECE_CHARS} with a piece cache) are tokenized in pieces
   * cut at special tokens, which keeps the time linear in the text and lets `signal` stop the
   * work between pieces; pieces the cache holds are not tokenized again. For short texts the
   * synchronous {@link tokenize} is faster (no thread hop). Work on more than `BIG_TEXT_CHARS`
   * characters (those the cache lacks) takes turns with other models' and requests' big texts
   * (`tokenize_turns.ts`).
   *
   * @param text The text.
   * @param options Special-token handling and an abort signal.
   * @returns The token ids.
   * @throws The signal's reason when it aborts.
   * @example
   * ```ts
   * const tokens = await model.tokenizeAsync(bigPrompt, { signal: request.signal });
   * ```
   */
  async tokenizeAsync(text: string, options: TokenizeAsyncOptions = {}): Promise<Int32Array> {
    const { signal, pieceCache } = options;
    const addSpecial = options.addSpecial ?? true;
    const parseSpecial = options.parseSpecial ?? true;
    signal?.throwIfAborted();
    const pieceChars = pieceCache ? CACHED_PIECE_CHARS : TOKENIZE_PIECE_CHARS;
    const cutter = parseSpecial && text.length > pieceChars ? this.#specialCutter() : null;
    if (!cutter) {
      const whole = () => this.#tokenizeOffThread(text, addSpecial, parseSpecial);
      return await inTurn(text.length, whole, signal);
    }
    const pieces: string[] = [];
    for (const piece of cutter.pieces(text, pieceChars)) {
      signal?.throwIfAborted();
      // An empty piece: a long stretch scanned without a place to cut; let I/O run.
      if (piece === "") await this.llama.yieldToIo();
      else pieces.push(piece);
    }
    const tokens = pieces.map((piece) => pieceCache?.get(piece));
    const missing = pieces.flatMap((_, i) => tokens[i] === undefined ? [i] : []);
    // The pieces a cache lacks go to Deno's thread pool a few at a time (llama.cpp tokenizes
    // concurrently, as llama-server's HTTP threads do), checking the signal between rounds; a
    // turn is taken for them alone (a chat's earlier turns come from the cache).
    const atOnce = Math.max(1, navigator.hardwareConcurrency);
    const tokenizeMissing = async () => {
      for (let from = 0; from < missing.length; from += atOnce) {
        signal?.throwIfAborted();
        await Promise.all(
          missing.slice(from, from + atOnce).map(async (i) => {
            const piece = pieces[i] as string;
            tokens[i] = await this.#tokenizeOffThread(piece, false, true);
            pieceCache?.set(piece, tokens[i]);
          }),
        );
      }
    };
    const missingChars = missing.reduce((sum, i) => sum + (pieces[i] as string).length, 0);
    await inTurn(missingChars, tokenizeMissing, signal);
    signal?.throwIfAborted();
    return this.#wrapped(tokens as Int32Array[], addSpecial);
  }

  /** Tokenizes on a worker thread, a long run's pieces one call each (see {@link #runPieces}). */
  async #tokenizeOffThread(
    text: string,
    addSpecial: boolean,
    parseSpecial: boolean,
  ): Promise<Int32Array> {
    const pieces = this.#runPieces(text);
    if (pieces.length === 1) {
      return await this.#tokenizeOneOffThread(text, addSpecial, parseSpecial);
    }
    const tokens: Int32Array[] = [];
    for (const piece of pieces) {
      tokens.push(await this.#tokenizeOneOffThread(piece, false, parseSpecial));
    }
    return this.#wrapped(tokens, addSpecial);
  }

  /** One `llama_tokenize` on a worker thread, with the retry for a too-small output buffer. */
  async #tokenizeOneOffThread(
    text: string,
    addSpecial: boolean,
    parseSpecial: boolean,
  ): Promise<Int32Array> {
    const bytes = new TextEncoder().encode(text);
    const vocab = this.vocab;
    const run = async (out: Int32Array<ArrayBuffer>) => {
      try {
        return await this.llama.whileNative(() =>
          this.llama.symbols.llama_tokenize_nonblocking(
            vocab,
            bytes,
            bytes.length,
            out,
            out.length,
            addSpecial,
            parseSpecial,
          )
        );
      } finally {
        // C reads `bytes` and writes `out` until the call returns: keep both reachable.
        void [bytes, out];
      }
    };
    let out = new Int32Array(bytes.length + 8);
    let n = await run(out);
    if (n < 0) {
      out = new Int32Array(-n);
      n = await run(out);
    }
    if (n < 0) throw new Error(`Tokenization failed (${n})`);
    return out.slice(0, n);
  }

  /** The special tokens, indexed for cutting big texts (built once per model). */
  #specialCutter(): SpecialTokenCutter | null {
    if (this.#cutter !== undefined) return this.#cutter;
    this.#cutter = null;
    const tokens = this.specialTokens();
    try {
      if (tokens) this.#cutter = new SpecialTokenCutter(tokens);
    } catch {
      // Too many special tokens for one RegExp: tokenize in one piece.
    }
    return this.#cutter;
  }

  /**
   * The tokens llama.cpp splits out of a text before tokenizing it (control, user-defined and
   * unknown tokens), with their text as the vocabulary stores it.
   *
   * @returns The tokens, or `undefined` when a text is not UTF-8 (no JavaScript string can
   *   hold it, so it cannot be searched for).
   * @example
   * ```ts
   * model.specialTokens()?.map((t) => t.text); // ["<|endoftext|>", "<|im_start|>", …]
   * ```
   */
  specialTokens(): SpecialToken[] | undefined {
    const s = this.llama.symbols;
    const vocab = this.vocab;
    const decoder = new TextDecoder("utf-8", { fatal: true });
    const tokens: SpecialToken[] = [];
    const count = s.llama_vocab_n_tokens(vocab);
    for (let id = 0; id < count; id++) {
      const attr = s.llama_vocab_get_attr(vocab, id);
      if ((attr & SPECIAL_ATTRS) === 0) continue;
      const pointer = s.llama_vocab_get_text(vocab, id);
      if (pointer === null) continue;
      const view = new Deno.UnsafePointerView(pointer);
      let length = 0;
      while (view.getUint8(length) !== 0) length++;
      if (length === 0) continue;
      try {
        const text = decoder.decode(new Uint8Array(view.getArrayBuffer(length)));
        tokens.push({ text, lstrip: (attr & ATTR_LSTRIP) !== 0 });
      } catch {
        return undefined;
      }
    }
    return tokens;
  }

  /**
   * The raw bytes of one token's text (a piece may be part of a UTF-8 character).
   *
   * @param token Token id.
   * @param special Write special (control) tokens out as their text, e.g. `<|im_start|>`;
   *   without, they have none. Default false.
   * @returns UTF-8 bytes; cached per token (without `special`).
   */
  tokenBytes(token: number, special = false): Uint8Array {
    const cached = special ? undefined : this.#pieces.get(token);
    if (cached) return cached;
    const run = (buf: Uint8Array<ArrayBuffer>) =>
      this.llama.symbols.llama_token_to_piece(this.vocab, token, buf, buf.length, 0, special);
    let buf = new Uint8Array(32);
    let n = run(buf);
    if (n < 0) {
      buf = new Uint8Array(-n);
      n = run(buf);
    }
    const piece = buf.slice(0, Math.max(0, n));
    if (!special) this.#pieces.set(token, piece);
    return piece;
  }

  /**
   * Turns tokens back into text.
   *
   * @param tokens Token ids.
   * @param removeSpecial Drop BOS/EOS. Default false.
   * @param renderSpecial Write control tokens as their text (`<|im_start|>`); default false:
   *   they give no text.
   * @returns The text.
   */
  detokenize(tokens: ArrayLike<number>, removeSpecial = false, renderSpecial = false): string {
    const ids = Int32Array.from(tokens);
    const run = (buf: Uint8Array<ArrayBuffer>) =>
      this.llama.symbols.llama_detokenize(
        this.vocab,
        ids,
        ids.length,
        buf,
        buf.length,
        removeSpecial,
        renderSpecial,
      );
    let buf = new Uint8Array(ids.length * 8 + 16);
    let n = run(buf);
    if (n < 0) {
      buf = new Uint8Array(-n);
      n = run(buf);
    }
    return new TextDecoder().decode(buf.subarray(0, Math.max(0, n)));
  }
}
