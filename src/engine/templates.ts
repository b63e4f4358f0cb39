/**
 * Chat messages → prompt text. A model's own Jinja template (`tokenizer.chat_template`, or a
 * `--chat-template FILE`) is rendered exactly as llama.cpp's server renders it (our Jinja
 * engine in `jinja/`, the message context in `templates_llama.ts`); models without one,
 * templates that do not even parse, and `--chat-template NAME` use a built-in family instead.
 * A template that fails while rendering is an error (HTTP 400), never a silent fallback. Every
 * rendering also says which strings end the assistant's turn and whether the text already
 * starts with BOS.
 *
 * ```ts
 * const override = await loadTemplateOverride("llama3"); // from --chat-template
 * const out = renderChat({ template: ggufTemplate, ...override, messages, bosToken: "<s>" });
 * const tokens = model.tokenize(out.prompt, { addSpecial: !out.addsBos, parseSpecial: true });
 * ```
 *
 * @module
 */

import { GenerationError } from "./errors.ts";
import { plainText, type TemplateMessage } from "./template_messages.ts";
import { ContinuationError, type ContinuedPart, renderContinued } from "./template_continuation.ts";
import { THINK_TAGS } from "./tools/parse.ts";
import { detectFamily, type ModelHints, templateStopStrings } from "./templates_detect.ts";
import { FAMILY_NAMES, type FamilyName, isFamilyName, renderFamily } from "./templates_families.ts";
import { JinjaSyntaxError } from "./jinja/lexer.ts";
import { parseTemplate as parseJinja } from "./jinja/parser.ts";
import { JinjaRenderError, stepHook } from "./jinja/runtime.ts";
import {
  applyChatTemplate,
  ChatInputError,
  compileChatTemplate,
  type CompiledChatTemplate,
} from "./templates_llama.ts";

export { detectFamily, type ModelHints, templateStopStrings } from "./templates_detect.ts";
export { plainText, type TemplateMessage, type TemplatePart } from "./template_messages.ts";
export {
  FAMILY_NAMES,
  type FamilyName,
  familyStopStrings,
  isFamilyName,
  renderFamily,
} from "./templates_families.ts";

/** Input of {@link renderChat}. */
export interface RenderChatInput {
  /** The model's Jinja template (GGUF `tokenizer.chat_template`, or a `--chat-template` file). */
  template?: string;
  /** A built-in family; takes precedence over `template`. */
  family?: FamilyName;
  /** The conversation. */
  messages: readonly TemplateMessage[];
  /** Open the assistant's turn at the end. Default `true`. */
  addGenerationPrompt?: boolean;
  /**
   * Text of the vocabulary's BOS token (`bos_token` in templates). Default: `""` for
   * templates, the format's documented token for built-in families.
   */
  bosToken?: string;
  /** Text of the vocabulary's EOS token (`eos_token` in templates). Default `""` for templates, `</s>` for families. */
  eosToken?: string;
  /** Tool definitions, passed to templates as `tools` (families ignore them). Default: not defined. */
  tools?: readonly unknown[];
  /** Name and architecture of the model, to pick a family when there is no template. */
  model?: ModelHints;
  /** Extra template variables (`chat_template_kwargs`, e.g. `{enable_thinking: false}`). */
  kwargs?: Readonly<Record<string, unknown>>;
  /** OpenAI `reasoning_effort` (`none` turns thinking off). */
  reasoningEffort?: string;
  /**
   * The vocabulary adds BOS itself, so a BOS the template writes is removed from the text
   * (the tokenizer adds it back), as llama.cpp does. Default false.
   */
  addBos?: boolean;
  /** Milliseconds since the epoch to render "now" at (`strftime_now`). Default: now. */
  nowMs?: number;
  /**
   * Leave the last message, an assistant's, open for the model to continue (prefill): the prompt
   * ends right after its `content`, or after its `reasoning_content` inside a thinking block left
   * open (`template_continuation.ts`). `addGenerationPrompt` is then not used.
   */
  continueFinal?: ContinuedPart;
}

/** Output of {@link renderChat}. */
export interface RenderedPrompt {
  /** The prompt text, special tokens written as text. */
  prompt: string;
  /** `"jinja"` when the template rendered it, otherwise the built-in family's name. */
  family: "jinja" | FamilyName;
  /** Strings that end the assistant's turn (e.g. `<|im_end|>`); stop generation on them. */
  stopStrings: string[];
  /** Whether `prompt` starts with the BOS text, so the tokenizer must not add another. */
  addsBos: boolean;
  /** Why a built-in family was used instead of the model's template, when that happened. */
  warning?: string;
  /** With `continueFinal`: where in `prompt` the continued text starts (it runs to the end). */
  continuedFrom?: number;
}

/** Why a chat template could not be used. */
export type TemplateErrorReason = "syntax" | "render" | "not_found";

/**
 * A chat template that cannot be parsed, raised an error (`raise_exception(...)`) or failed
 * while rendering, or a `--chat-template` that names neither a family nor a file. It is a
 * {@link GenerationError} with code `invalid_request`, which the server answers with HTTP 400.
 */
export class TemplateError extends GenerationError {
  /** What failed. */
  readonly reason: TemplateErrorReason;
  /** The template engine's own message (for `raise_exception`, the template's text). */
  readonly detail: string;

  /**
   * @param reason What failed.
   * @param message Human message, including `detail`.
   * @param detail The template engine's message.
   * @param cause Underlying error.
   */
  constructor(reason: TemplateErrorReason, message: string, detail: string, cause?: unknown) {
    super("invalid_request", message, cause);
    this.name = "TemplateError";
    this.reason = reason;
    this.detail = detail;
  }
}

const CACHE_LIMIT = 32;
/** Compiled templates by source (a few models are loaded at a time). */
const parsed = new Map<string, CompiledChatTemplate | Error>();

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Parses a template, remembering the result (or the failure) for the next request. */
function parseTemplate(source: string): CompiledChatTemplate | Error {
  let entry = parsed.get(source);
  if (entry !== undefined) {
    parsed.delete(source); // re-inserted below as the most recent
  } else {
    try {
      entry = compileChatTemplate(source);
    } catch (error) {
      if (!(error instanceof JinjaSyntaxError)) throw error; // e.g. a stopped render
      entry = error;
    }
    if (parsed.size >= CACHE_LIMIT) parsed.delete(parsed.keys().next().value as string);
  }
  parsed.set(source, entry);
  return entry;
}

/**
 * Why a template does not parse, or undefined when it parses. It only parses: a full compile
 * also probes what the template can do by rendering it, which a hostile template can make last
 * for ever, and this runs on the event loop at load (requests' renders run in the template
 * workers, under a time limit).
 */
function syntaxErrorOf(source: string): JinjaSyntaxError | undefined {
  try {
    parseJinja(source);
    return undefined;
  } catch (error) {
    if (error instanceof JinjaSyntaxError) return error;
    throw error;
  }
}

/** One way of rendering a request's messages: a template or a built-in family. */
interface Renderer {
  /** Renders messages, with the assistant's turn opened at the end or not. */
  render(messages: readonly TemplateMessage[], addGenerationPrompt: boolean): string;
  /** Whether this way writes `<think>` blocks. */
  thinks: boolean;
  /** The rendered prompt of a rendered text. */
  result(prompt: string): RenderedPrompt;
}

function familyRenderer(family: FamilyName, input: RenderChatInput, warning?: string): Renderer {
  const options = {
    ...(input.bosToken === undefined ? {} : { bosToken: input.bosToken }),
    ...(input.eosToken === undefined ? {} : { eosToken: input.eosToken }),
  };
  let last = { bos: "", stopStrings: [] as string[] };
  return {
    render(messages, addGenerationPrompt) {
      const plain = messages.map((m) => ({ role: m.role, content: plainText(m.content) }));
      const out = renderFamily(family, plain, { ...options, addGenerationPrompt });
      last = out;
      return out.prompt;
    },
    thinks: false,
    result(prompt) {
      const result: RenderedPrompt = {
        prompt,
        family,
        stopStrings: last.stopStrings,
        addsBos: last.bos !== "" && prompt.startsWith(last.bos),
      };
      if (warning !== undefined) result.warning = warning;
      return result;
    },
  };
}

/**
 * Checks a model's chat template once, at load: a template that does not even parse makes
 * every chat request use a built-in format instead, which the user should hear about.
 *
 * @param template The GGUF `tokenizer.chat_template`, if any.
 * @returns A warning to log, or undefined when the template parses (or there is none).
 * @example
 * ```ts
 * const warning = templateLoadWarning(model.chatTemplate());
 * if (warning) console.error(`Warning: ${warning}`);
 * ```
 */
export function templateLoadWarning(template: string | undefined): string | undefined {
  if (template === undefined || template.trim() === "") return undefined;
  const syntaxError = syntaxErrorOf(template);
  if (syntaxError === undefined) return undefined;
  const family = detectFamily(template) ?? "chatml";
  return `The model's chat template does not parse (${syntaxError.message}); chat requests ` +
    `use the built-in ${family} format instead`;
}

/**
 * Formats a conversation as prompt text. Precedence: `family`, then `template` (rendered with
 * Jinja; a template that does not parse falls back to the family its markers suggest, or
 * chatml, with a `warning`), then the family detected from `model`, then chatml.
 *
 * Templates see what llama-server gives them: `messages` (shaped as llama.cpp shapes them),
 * `add_generation_prompt`, `bos_token`, `eos_token`, `tools` (only when given),
 * `enable_thinking`, `datetime`, `date_string`, the `chat_template_kwargs`, and the functions
 * `raise_exception(msg)`, `strftime_now(fmt)`, `namespace(…)`, `range(…)`.
 *
 * @param input Messages, template or family, and the vocabulary's special-token texts.
 * @returns The prompt, the family used, stop strings and whether it starts with BOS.
 * @throws {TemplateError} `render` when the template raises an error or fails while rendering,
 *   or a message is malformed (e.g. tool-call arguments that are not JSON).
 * @example
 * ```ts
 * const out = renderChat({ family: "chatml", messages: [{ role: "user", content: "Hi" }] });
 * out.prompt; // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
 * out.stopStrings; // ["<|im_end|>"]
 * ```
 */
export function renderChat(input: RenderChatInput): RenderedPrompt {
  const way = rendererOf(input);
  if (input.continueFinal === undefined) {
    return way.result(way.render(input.messages, input.addGenerationPrompt ?? true));
  }
  let continued;
  try {
    continued = renderContinued(input.messages, input.continueFinal, way.render, way.thinks);
  } catch (error) {
    if (!(error instanceof ContinuationError)) throw error;
    throw new TemplateError("render", error.message, error.message, error);
  }
  return { ...way.result(continued.prompt), continuedFrom: continued.continuedFrom };
}

/** The request's way of rendering: its family, its template, or the family standing in for it. */
function rendererOf(input: RenderChatInput): Renderer {
  if (input.family !== undefined) return familyRenderer(input.family, input);
  const source = input.template;
  if (source === undefined || source.trim() === "") {
    return familyRenderer(detectFamily(undefined, input.model) ?? "chatml", input);
  }
  const template = parseTemplate(source);
  if (template instanceof Error) {
    const family = detectFamily(source, input.model) ?? "chatml";
    return familyRenderer(
      family,
      input,
      `The model's chat template does not parse (${template.message}); using the built-in ${family} format instead`,
    );
  }
  const bos = input.bosToken ?? "";
  const eos = input.eosToken ?? "";
  return {
    render: (messages, addGenerationPrompt) =>
      renderTemplate(template, {
        messages,
        tools: input.tools,
        addGenerationPrompt,
        bosToken: bos,
        eosToken: eos,
        addBos: input.addBos ?? false,
        kwargs: input.kwargs,
        reasoningEffort: input.reasoningEffort,
        ...(input.nowMs !== undefined ? { now: new Date(input.nowMs) } : {}),
      }),
    thinks: source.includes(THINK_TAGS.open),
    result: (prompt) => ({
      prompt,
      family: "jinja",
      stopStrings: templateStopStrings(source, eos),
      addsBos: bos !== "" && prompt.startsWith(bos),
    }),
  };
}

/** Renders a compiled template; its failures are {@link TemplateError}s. */
function renderTemplate(
  template: CompiledChatTemplate,
  context: Parameters<typeof applyChatTemplate>[1],
): string {
  try {
    return applyChatTemplate(template, context);
  } catch (error) {
    if (!(error instanceof JinjaRenderError) && !(error instanceof ChatInputError)) throw error;
    // For raise_exception, the detail is the template's own message.
    const detail = error instanceof JinjaRenderError && error.raised
      ? error.detail.replace(/^Jinja Exception: /, "")
      : error.message;
    throw new TemplateError(
      "render",
      `Cannot format the messages with the model's chat template: ${error.message}`,
      detail,
      error,
    );
  }
}

/**
 * Hooks into every template render of this thread, capability probes included (the template
 * worker watches its stop flag through `onStep`, which throws `StopRender`).
 */
export const renderHooks: { onStep?: () => void } = stepHook;

/** A `--chat-template` choice, ready to spread into a {@link RenderChatInput}. */
export type TemplateOverride =
  | { readonly family: FamilyName }
  | { readonly template: string; readonly path: string };

/** Other spellings accepted for family names. */
const FAMILY_ALIASES: Readonly<Record<string, FamilyName>> = {
  "llama-3": "llama3",
  "llama-2": "llama2",
  "phi-3": "phi3",
  "gemma2": "gemma",
  "gemma3": "gemma",
  "none": "raw",
};

/** Most bytes of a chat template file (real ones take a few KiB). */
const MAX_TEMPLATE_FILE_BYTES = 1024 * 1024;

/**
 * Resolves `--chat-template NAME|FILE`: a built-in family name (case-insensitive; `llama-3`,
 * `phi-3`, `gemma2`… also work), or the path of a Jinja template file, which is read and
 * checked to parse.
 *
 * @param nameOrFile A family name or a file path.
 * @returns `{ family }` or `{ template, path }`.
 * @throws {TemplateError} `not_found` when it is neither a family nor a readable file,
 *   `syntax` when the file is empty or does not parse.
 * @throws {Deno.errors.PermissionDenied} If read access is not granted.
 * @example
 * ```ts
 * await loadTemplateOverride("chatml"); // { family: "chatml" }
 * await loadTemplateOverride("./my.jinja"); // { template: "{% for m in messages %}…", path: "./my.jinja" }
 * ```
 */
export async function loadTemplateOverride(nameOrFile: string): Promise<TemplateOverride> {
  const key = nameOrFile.trim().toLowerCase();
  if (isFamilyName(key)) return { family: key };
  if (Object.hasOwn(FAMILY_ALIASES, key)) return { family: FAMILY_ALIASES[key] as FamilyName };
  let template: string;
  try {
    // A FIFO or a device (a link to /dev/zero) would block or never end the read.
    const info = await Deno.stat(nameOrFile);
    if (!info.isFile) throw new Error("not a regular file");
    if (info.size > MAX_TEMPLATE_FILE_BYTES) {
      throw new Error(`larger than ${MAX_TEMPLATE_FILE_BYTES} bytes`);
    }
    template = await Deno.readTextFile(nameOrFile);
  } catch (error) {
    if (error instanceof Deno.errors.PermissionDenied) throw error;
    const detail = error instanceof Deno.errors.NotFound ? "file not found" : messageOf(error);
    throw new TemplateError(
      "not_found",
      `Cannot use chat template ${nameOrFile}: ${detail}; give a family (${
        FAMILY_NAMES.join(", ")
      }) or the path of a .jinja file`,
      detail,
      error,
    );
  }
  if (template.trim() === "") {
    throw new TemplateError(
      "syntax",
      `Cannot use chat template ${nameOrFile}: the file is empty; write a Jinja template in it`,
      "empty template",
    );
  }
  const syntaxError = syntaxErrorOf(template);
  if (syntaxError !== undefined) {
    throw new TemplateError(
      "syntax",
      `Cannot parse chat template ${nameOrFile}: ${syntaxError.message}; fix the file or give a family (${
        FAMILY_NAMES.join(", ")
      })`,
      syntaxError.message,
      syntaxError,
    );
  }
  return { template, path: nameOrFile };
}
