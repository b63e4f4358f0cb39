/**
 * Chat messages → prompt text. A model's own Jinja template (`tokenizer.chat_template`) is
 * rendered with `@huggingface/jinja`; models without one, templates that do not parse, and
 * `--chat-template NAME` use a built-in family instead. Every rendering also says which
 * strings end the assistant's turn and whether the text already starts with BOS.
 *
 * ```ts
 * const override = await loadTemplateOverride("llama3"); // from --chat-template
 * const out = renderChat({ template: ggufTemplate, ...override, messages, bosToken: "<s>" });
 * const tokens = model.tokenize(out.prompt, { addSpecial: !out.addsBos, parseSpecial: true });
 * ```
 *
 * @module
 */

import { Template } from "@huggingface/jinja";
import { GenerationError } from "./errors.ts";
import { detectFamily, type ModelHints, templateStopStrings } from "./templates_detect.ts";
import { FAMILY_NAMES, type FamilyName, isFamilyName, renderFamily } from "./templates_families.ts";

export { detectFamily, type ModelHints, templateStopStrings } from "./templates_detect.ts";
export {
  FAMILY_NAMES,
  type FamilyName,
  familyStopStrings,
  isFamilyName,
  renderFamily,
} from "./templates_families.ts";

/**
 * One chat message. Jinja templates see the whole object, so OpenAI-style fields
 * (`tool_calls`, `tool_call_id`, `name`) reach templates that use them.
 */
export interface TemplateMessage {
  /** `system`, `user`, `assistant`, `tool`… */
  readonly role: string;
  /** The message text; `null` (an assistant turn with only tool calls) counts as empty. */
  readonly content: string | null;
  /** Tool calls of an assistant message. */
  readonly tool_calls?: readonly unknown[];
  /** The call a `tool` message answers. */
  readonly tool_call_id?: string;
  /** Name of the tool or participant. */
  readonly name?: string;
}

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
/** Parsed templates by source (a few models are loaded at a time). */
const parsed = new Map<string, Template | Error>();

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Parses a template, remembering the result (or the failure) for the next request. */
function parseTemplate(source: string): Template | Error {
  let entry = parsed.get(source);
  if (entry !== undefined) {
    parsed.delete(source); // re-inserted below as the most recent
  } else {
    try {
      entry = new Template(source);
    } catch (error) {
      entry = error instanceof Error ? error : new Error(String(error));
    }
    if (parsed.size >= CACHE_LIMIT) parsed.delete(parsed.keys().next().value as string);
  }
  parsed.set(source, entry);
  return entry;
}

function fromFamily(
  family: FamilyName,
  input: RenderChatInput,
  warning?: string,
): RenderedPrompt {
  const options = {
    addGenerationPrompt: input.addGenerationPrompt ?? true,
    ...(input.bosToken === undefined ? {} : { bosToken: input.bosToken }),
    ...(input.eosToken === undefined ? {} : { eosToken: input.eosToken }),
  };
  const out = renderFamily(family, input.messages, options);
  const addsBos = out.bos !== "" && out.prompt.startsWith(out.bos);
  const result: RenderedPrompt = {
    prompt: out.prompt,
    family,
    stopStrings: out.stopStrings,
    addsBos,
  };
  if (warning !== undefined) result.warning = warning;
  return result;
}

/**
 * Formats a conversation as prompt text. Precedence: `family`, then `template` (rendered with
 * Jinja; a template that does not parse falls back to the family its markers suggest, or
 * chatml, with a `warning`), then the family detected from `model`, then chatml.
 *
 * Templates see `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `tools` (only
 * when given) and `raise_exception(msg)`.
 *
 * @param input Messages, template or family, and the vocabulary's special-token texts.
 * @returns The prompt, the family used, stop strings and whether it starts with BOS.
 * @throws {TemplateError} `render` when the template raises an error or fails while rendering.
 * @example
 * ```ts
 * const out = renderChat({ family: "chatml", messages: [{ role: "user", content: "Hi" }] });
 * out.prompt; // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
 * out.stopStrings; // ["<|im_end|>"]
 * ```
 */
export function renderChat(input: RenderChatInput): RenderedPrompt {
  if (input.family !== undefined) return fromFamily(input.family, input);
  const source = input.template;
  if (source === undefined || source.trim() === "") {
    return fromFamily(detectFamily(undefined, input.model) ?? "chatml", input);
  }
  const template = parseTemplate(source);
  if (template instanceof Error) {
    const family = detectFamily(source, input.model) ?? "chatml";
    return fromFamily(
      family,
      input,
      `The model's chat template does not parse (${template.message}); using the built-in ${family} format instead`,
    );
  }
  const bos = input.bosToken ?? "";
  const eos = input.eosToken ?? "";
  const context: Record<string, unknown> = {
    messages: input.messages,
    add_generation_prompt: input.addGenerationPrompt ?? true,
    bos_token: bos,
    eos_token: eos,
  };
  if (input.tools !== undefined) context.tools = input.tools;
  let prompt: string;
  try {
    prompt = template.render(context);
  } catch (error) {
    const detail = messageOf(error);
    throw new TemplateError(
      "render",
      `Cannot format the messages with the model's chat template: ${detail}`,
      detail,
      error,
    );
  }
  return {
    prompt,
    family: "jinja",
    stopStrings: templateStopStrings(source, eos),
    addsBos: bos !== "" && prompt.startsWith(bos),
  };
}

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
  const parsedTemplate = parseTemplate(template);
  if (parsedTemplate instanceof Error) {
    throw new TemplateError(
      "syntax",
      `Cannot parse chat template ${nameOrFile}: ${parsedTemplate.message}; fix the file or give a family (${
        FAMILY_NAMES.join(", ")
      })`,
      parsedTemplate.message,
      parsedTemplate,
    );
  }
  return { template, path: nameOrFile };
}
