/**
 * `shimmy run MODEL [PROMPT]`: talk to a model in the terminal through the engine (no HTTP).
 * With a prompt (or text piped to stdin) it answers once and exits; otherwise it opens a chat
 * that keeps the conversation, rendered by the model's chat template each turn. A model named
 * by a hub reference that is not on disk is pulled first. Ctrl-C stops an answer and returns
 * to the prompt; Ctrl-C twice at the prompt, Ctrl-D or `/bye` leaves.
 *
 * @module
 */

import { concatBytes } from "../util/bytes.ts";
import { LoadedModel } from "../engine/loaded_model.ts";
import { chatPrompt } from "../engine/prompt.ts";
import { GenerationError } from "../engine/errors.ts";
import { ModelNotFoundError } from "../models/model_names.ts";
import { isPullable } from "../models/hf_hub.ts";
import { pullModel } from "../models/pull.ts";
import { ChatSession } from "./chat_session.ts";
import type { GlobalFlags } from "./global_flags.ts";
import { gpuLayersFlag, numberFlag, parseFlags, threadsFlag } from "./flags.ts";
import { findModelPath } from "./model_lookup.ts";
import { loadProgressPrinter } from "./progress.ts";
import { pullProgressPrinter } from "./pull.ts";
import { UsageError } from "./usage_error.ts";
import { keepTemplateWorkersWarm } from "../engine/template_worker.ts";

/** Usage text of `shimmy run`. */
export const RUN_USAGE = `Usage: shimmy run MODEL [PROMPT] [options]

Chats with a model in the terminal. With PROMPT, or text piped to stdin, it answers once and
exits. MODEL is a name from "shimmy list", a .gguf path, or a Hugging Face reference
(hf.co/ORG/REPO[:QUANT]), pulled first when it is not on disk.

In the chat:
  """ … """            A multi-line message (or end lines with \\)
  /system TEXT         Set the system message
  /set temperature X   Sampling temperature
  /clear  /help  /bye  Forget the conversation, show the commands, leave
  Ctrl-C               Stop the answer (twice at the prompt: leave)

Options:
  --system TEXT        System message
  --temperature T      Sampling temperature (default 0.7; 0 = greedy)
  --max-tokens N       Longest answer (default 1024)
  --seed S             Random seed
  --ctx-size N         Context tokens (default: model's, at most 4096)
  --n-gpu-layers N|all Layers to offload (default: all on a GPU)
  --threads N          CPU threads

Examples:
  shimmy run Qwen/Qwen2.5-0.5B-Instruct-GGUF
  shimmy run qwen2.5-0.5b-instruct "Write a haiku about the sea"
  echo "Summarise this" | shimmy run ./model.gguf`;

/**
 * Runs `shimmy run`.
 *
 * @param args Arguments after the command name.
 * @param globals Global flags.
 * @returns The exit code.
 */
export async function runMain(args: string[], globals: GlobalFlags): Promise<number> {
  const parsed = parseFlags(args, {
    system: { type: "string" },
    temperature: { type: "string" },
    "max-tokens": { type: "string" },
    seed: { type: "string" },
    "ctx-size": { type: "string" },
    "n-gpu-layers": { type: "string" },
    threads: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  }, Infinity);
  const v = parsed.values;
  if (v.help) {
    console.log(RUN_USAGE);
    return 0;
  }
  const [model, ...words] = parsed.positionals;
  if (!model) {
    throw new UsageError("Name a model, e.g. shimmy run Qwen/Qwen2.5-0.5B-Instruct-GGUF", {
      pointToHelp: true,
    });
  }
  const temperature = atLeast("temperature", numberFlag("temperature", v.temperature), 0);
  const maxTokens = atLeast("max-tokens", numberFlag("max-tokens", v["max-tokens"], true), 1);
  const seed = numberFlag("seed", v.seed, true);
  const ctxSize = atLeast("ctx-size", numberFlag("ctx-size", v["ctx-size"], true), 1) ??
    globals.ctxSize;
  const threads = threadsFlag(v.threads);
  const nGpuLayers = gpuLayersFlag(v["n-gpu-layers"]);

  const piped = Deno.stdin.isTerminal() ? "" : await pipedText();
  const oneShot = [words.join(" "), piped.trim()].filter((t) => t !== "").join("\n\n");
  const interactive = oneShot === "";
  if (interactive && !Deno.stdin.isTerminal()) {
    throw new UsageError("Nothing to answer: stdin was empty; pass a PROMPT or pipe text in");
  }

  const path = await modelPath(model, globals);
  // A person types between turns: the template workers stay warm while the chat goes on.
  using _templates = interactive ? keepTemplateWorkersWarm() : undefined;
  const progress = loadProgressPrinter(path);
  await using loaded = await LoadedModel.open({
    path,
    gpuBackend: globals.gpuBackend ?? "auto",
    verbose: globals.verbose,
    onProgress: progress.update,
    ...(nGpuLayers !== undefined ? { nGpuLayers } : {}),
    ...(ctxSize !== undefined ? { ctxSize } : {}),
    ...(threads !== undefined ? { threads } : {}),
  });
  progress.done();
  const session = new ChatSession({
    ...(v.system !== undefined ? { system: v.system } : {}),
    ...(temperature !== undefined ? { temperature } : {}),
    ...(maxTokens !== undefined ? { maxTokens } : {}),
  });
  const chat = new TerminalChat(loaded, session, seed);
  try {
    if (!interactive) {
      session.ask(oneShot);
      const finish = await chat.answer();
      return finish === "cancelled" ? 130 : finish === "error" ? 1 : 0;
    }
    return await chat.loop();
  } finally {
    chat.close();
  }
}

/** Where the model is: on disk already, or pulled now. */
async function modelPath(model: string, globals: GlobalFlags): Promise<string> {
  try {
    return await findModelPath(model, globals);
  } catch (error) {
    if (!(error instanceof ModelNotFoundError) || !isPullable(model)) throw error;
  }
  console.error(`${model} is not on this machine: pulling it`);
  const printer = pullProgressPrinter();
  const pulled = await pullModel(model, { onProgress: printer.update });
  printer.done();
  return pulled.path;
}

/** Most bytes of text piped to stdin. */
const MAX_PIPED_BYTES = 8 * 1024 * 1024;

/**
 * The text piped to stdin, read up to {@link MAX_PIPED_BYTES} (`< /dev/zero` had read forever).
 *
 * @throws {UsageError} when more comes.
 */
async function pipedText(): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of Deno.stdin.readable) {
    size += chunk.length;
    if (size > MAX_PIPED_BYTES) {
      throw new UsageError(`The text piped to stdin is longer than ${MAX_PIPED_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  return new TextDecoder().decode(concatBytes(chunks));
}

function atLeast(name: string, value: number | undefined, min: number): number | undefined {
  if (value !== undefined && value < min) {
    throw new UsageError(`--${name} must be at least ${min}, got ${value}`, { pointToHelp: true });
  }
  return value;
}

/** The terminal side of a chat: prompt, line input, streaming, Ctrl-C. */
class TerminalChat {
  readonly #loaded: LoadedModel;
  readonly #session: ChatSession;
  readonly #seed: number | undefined;
  readonly #encoder = new TextEncoder();
  #answering: AbortController | undefined;
  #interruptedAtPrompt = false;
  #leave: (() => void) | undefined;
  readonly #onSigint = () => this.#interrupt();

  constructor(loaded: LoadedModel, session: ChatSession, seed: number | undefined) {
    this.#loaded = loaded;
    this.#session = session;
    this.#seed = seed;
    Deno.addSignalListener("SIGINT", this.#onSigint);
  }

  close(): void {
    Deno.removeSignalListener("SIGINT", this.#onSigint);
  }

  /** Reads, answers, repeats, until `/bye`, Ctrl-D or a second Ctrl-C. */
  async loop(): Promise<number> {
    this.#write(
      `Chatting with ${
        this.#loaded.model.path.split(/[\\/]/).at(-1)
      }. /help for help, /bye to leave.\n`,
    );
    const lines = readLines(Deno.stdin.readable);
    const left = new Promise<"left">((resolve) => this.#leave = () => resolve("left"));
    while (true) {
      this.#write(this.#session.continuing ? "... " : ">>> ");
      const next = await Promise.race([lines.next(), left]);
      if (next === "left") break;
      if (next.done) {
        this.#write("\n");
        break;
      }
      this.#interruptedAtPrompt = false;
      const action = this.#session.input(next.value);
      if (action.kind === "bye") break;
      if (action.kind === "say") this.#write(`${action.text}\n`);
      if (action.kind === "ask") await this.answer();
    }
    return 0;
  }

  /**
   * Streams the model's answer to the conversation.
   *
   * @returns How it ended.
   */
  async answer(): Promise<string> {
    const abort = new AbortController();
    this.#answering = abort;
    let text = "";
    try {
      const { model, scheduler } = this.#loaded;
      const prompt = await chatPrompt(model, this.#session.messages(), undefined, undefined, {
        signal: abort.signal,
      });
      const generation = scheduler.submit({
        prompt: prompt.tokens,
        maxTokens: this.#session.maxTokens,
        stop: prompt.stopStrings,
        stopTokens: prompt.stopTokens,
        signal: abort.signal,
        sampling: {
          ...(this.#session.temperature !== undefined
            ? { temperature: this.#session.temperature }
            : {}),
          ...(this.#seed !== undefined ? { seed: this.#seed } : {}),
        },
      });
      for await (const chunk of generation) {
        text += chunk.text;
        this.#write(chunk.text);
      }
      const result = await generation.result;
      this.#session.answered(text);
      if (result.finishReason === "cancelled") this.#write("\n[stopped]");
      this.#write("\n");
      return result.finishReason;
    } catch (error) {
      if (abort.signal.aborted) {
        this.#session.answered(text);
        this.#write("\n[stopped]\n");
        return "cancelled";
      }
      if (!(error instanceof GenerationError)) throw error;
      this.#session.unask();
      this.#write(`\nshimmy: ${error.message}${text ? "" : " (try /clear)"}\n`);
      return "error";
    } finally {
      this.#answering = undefined;
    }
  }

  #interrupt(): void {
    if (this.#answering) {
      this.#answering.abort();
      return;
    }
    if (this.#interruptedAtPrompt) {
      this.#write("\n");
      this.#leave?.();
      return;
    }
    this.#interruptedAtPrompt = true;
    this.#write("\n(Ctrl-C again, Ctrl-D or /bye to leave)\n>>> ");
  }

  #write(text: string): void {
    const bytes = this.#encoder.encode(text);
    let offset = 0;
    while (offset < bytes.length) offset += Deno.stdout.writeSync(bytes.subarray(offset));
  }
}

/**
 * The lines of a byte stream, without their line endings.
 *
 * @param stream UTF-8 bytes.
 * @returns The lines; a last line without a newline counts.
 */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    buffered += text;
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, newline).replace(/\r$/, "");
      buffered = buffered.slice(newline + 1);
    }
  }
  if (buffered !== "") yield buffered;
}
