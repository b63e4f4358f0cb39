/**
 * Building the tokens of a request: a raw prompt, or chat messages rendered with the model's
 * chat template (or a `--chat-template` override). BOS is added when the vocabulary wants it,
 * never twice, and the template's end-of-turn markers become stop tokens (they are control
 * tokens, so they never show as text) or stop strings.
 *
 * Nothing here holds up the event loop for long: templates render in a worker
 * (`template_worker.ts`, time-limited), texts longer than {@link SYNC_TOKENIZE_MAX_CHARS} are
 * tokenized on a native worker thread, and an abort signal is checked between the stages.
 *
 * @module
 */

import { I32_MAX } from "../util/limits.ts";
import type { Model, TokenizeOptions, TokenPieceCache } from "../ffi/model.ts";
import { contextOverflow, GenerationError } from "./errors.ts";
import { promptTokenCache } from "./prompt_token_cache.ts";
import type { ContinuedPart } from "./template_continuation.ts";
import { detectToolFormat } from "./tools/formats.ts";
import { withMistralToolIds } from "./tools/mistral_ids.ts";
import { renderChatOffThread, TEMPLATE_TIMEOUT_MS } from "./template_worker.ts";
import type { RenderedPrompt, TemplateMessage, TemplateOverride } from "./templates.ts";

/**
 * Most messages a conversation may have. A message costs at least ~5 tokens of template
 * framing, so 10,000 messages are 50,000+ tokens before any content: more than any real
 * conversation that fits a context. Within it, preparing the prompt stays well under a second
 * (measured for 10,000 one-letter messages: 0.1-0.2 s with the Qwen2 and Phi-3 templates),
 * and a request past it is refused before any work.
 */
export const MAX_MESSAGES = 10_000;

/**
 * Longest text (UTF-16 code units) tokenized on the event loop's thread. Measured with Qwen2's
 * vocabulary: 4 KiB takes ~1 ms either way (the thread hop costs ~0.1 ms), 16 KiB blocks 6 ms,
 * 64 KiB of chat markup 85 ms; longer texts go to `Model.tokenizeAsync`.
 */
export const SYNC_TOKENIZE_MAX_CHARS = 4 * 1024;

/** Tokens to generate from, with the stops the template implies. */
export interface PreparedPrompt {
  tokens: Int32Array;
  /** Token ids that end generation besides the vocabulary's own end tokens. */
  stopTokens: number[];
  /** Text that ends generation (never emitted). */
  stopStrings: string[];
  /** `raw`, `jinja` or the built-in family used. */
  format: string;
  /** The Jinja source that rendered a chat prompt (absent for raw prompts and built-in families). */
  template?: string;
  /**
   * The last characters of a rendered chat prompt (what the output continues, e.g. `<think>\n`);
   * before the {@link PreparedPrompt.continued} text, when there is one.
   */
  promptTail?: string;
  /**
   * The text of the last message that the prompt ends with, when the model continues it
   * (prefill, `continueFinal`): the start of the answer, as the template wrote it.
   */
  continued?: string;
}

/** How many characters of a rendered prompt {@link PreparedPrompt.promptTail} keeps. */
const PROMPT_TAIL_CHARS = 64;

/** Options of {@link rawPrompt} and {@link promptTokens}. */
export interface PromptOptions {
  /** Stops the work between stages (and between pieces of a big text); rejects with its reason. */
  signal?: AbortSignal;
  /**
   * Tokenize on a native worker thread also a text short enough for the event loop's thread: for
   * a request that arrives while others are being prepared or generated, so that a burst of them
   * tokenizes in parallel while the event loop reads the next ones (on the H200 machine, TTFT p50
   * at 32 streams 39.6 → 33.6 ms). Default false.
   */
  offThread?: boolean;
  /**
   * Most tokens the prompt may have: a text that its length alone shows to be longer
   * (`Model.fewestTokens`) is refused before it is tokenized, which for a text of megabytes
   * takes seconds of a core. Default: no limit.
   */
  tokenLimit?: number;
}

/** Options of {@link chatPrompt}. */
export interface ChatPromptOptions extends PromptOptions {
  /** Most messages accepted. Default {@link MAX_MESSAGES}. */
  maxMessages?: number;
  /** Longest the template may take to render, in ms. Default `TEMPLATE_TIMEOUT_MS` (10 s). */
  templateTimeoutMs?: number;
  /**
   * Extra template variables (`--chat-template-kwargs` merged with the request's
   * `chat_template_kwargs`), e.g. `{ enable_thinking: false }`.
   */
  kwargs?: Readonly<Record<string, unknown>>;
  /** OpenAI `reasoning_effort` (`none` turns thinking off). */
  reasoningEffort?: string;
  /** Open the assistant's turn at the end. Default true. */
  addGenerationPrompt?: boolean;
  /** Continue the last message, an assistant's, instead (prefill; see `RenderChatInput`). */
  continueFinal?: ContinuedPart;
}

/**
 * Tokenizes text on this thread when it is short (a thread hop costs more than the work), on
 * native worker threads otherwise, or always there with `offThread`.
 *
 * @param model The model.
 * @param text The text.
 * @param tokenizeOptions Special tokens added and parsed or not.
 * @param options Abort signal, `offThread`, and a piece cache for long texts.
 * @returns The tokens.
 * @throws The signal's reason when it aborts.
 * @example
 * ```ts
 * const tokens = await tokenizeText(model, "def f(", { addSpecial: false, parseSpecial: false });
 * ```
 */
export async function tokenizeText(
  model: Model,
  text: string,
  tokenizeOptions: TokenizeOptions,
  options: PromptOptions & { pieceCache?: TokenPieceCache } = {},
): Promise<Int32Array> {
  if (text.length <= SYNC_TOKENIZE_MAX_CHARS && !options.offThread) {
    return model.tokenize(text, tokenizeOptions);
  }
  return await model.tokenizeAsync(text, {
    ...tokenizeOptions,
    signal: options.signal,
    ...(options.pieceCache ? { pieceCache: options.pieceCache } : {}),
  });
}

/**
 * Tokenizes prompt text: on this thread when it is short, on native worker threads otherwise,
 * where the pieces of it the model tokenized lately (a chat's earlier turns) come from its prompt
 * token cache (`prompt_token_cache.ts`).
 *
 * @param model The model.
 * @param text Prompt text (raw, or rendered by a chat template).
 * @param addBos Whether BOS may be added (false when the text already starts with it).
 * @param options Abort signal.
 * @returns The tokens, with at most one leading BOS.
 * @throws The signal's reason when it aborts.
 * @example
 * ```ts
 * const tokens = await promptTokens(model, "Once upon a time");
 * ```
 */
export async function promptTokens(
  model: Model,
  text: string,
  addBos = true,
  options: PromptOptions = {},
): Promise<Int32Array> {
  const limit = options.tokenLimit;
  const fewest = limit === undefined ? 0 : model.fewestTokens(text, limit);
  if (limit !== undefined && fewest > limit) {
    throw contextOverflow(`at least ${fewest}`, limit);
  }
  const tokens = await tokenizeText(model, text, { addSpecial: addBos, parseSpecial: true }, {
    ...options,
    pieceCache: promptTokenCache(model),
  });
  const bos = model.bos;
  return tokens.length > 1 && bos >= 0 && tokens[0] === bos && tokens[1] === bos
    ? tokens.subarray(1)
    : tokens;
}

/**
 * A raw prompt, sent as typed.
 *
 * @param model The model.
 * @param text The prompt.
 * @param options Abort signal.
 * @returns The prepared prompt.
 * @throws The signal's reason when it aborts.
 * @example
 * ```ts
 * const prepared = await rawPrompt(model, "Once upon a time", { signal });
 * ```
 */
export async function rawPrompt(
  model: Model,
  text: string,
  options: PromptOptions = {},
): Promise<PreparedPrompt> {
  options.signal?.throwIfAborted();
  const tokens = await promptTokens(model, text, true, options);
  return { tokens, stopTokens: [], stopStrings: [], format: "raw" };
}

/**
 * A prompt given as token ids, used as given (no BOS added). The scheduler checks that every
 * id is in the vocabulary.
 *
 * @param ids The token ids.
 * @returns The prepared prompt.
 * @throws {GenerationError} `invalid_request` for an id beyond any vocabulary (negative, or over
 *   2^31 - 1).
 * @example
 * ```ts
 * tokenPrompt([1, 15043, 3186]).tokens; // Int32Array [1, 15043, 3186]
 * ```
 */
export function tokenPrompt(ids: readonly number[]): PreparedPrompt {
  // Int32Array would wrap a larger id (2^32 + 1 becomes 1) before the vocabulary check sees it.
  const outside = ids.find((id) => !(id >= 0 && id <= I32_MAX));
  if (outside !== undefined) {
    throw new GenerationError(
      "invalid_request",
      `Prompt token ${outside} is not in the vocabulary`,
    );
  }
  return { tokens: Int32Array.from(ids), stopTokens: [], stopStrings: [], format: "tokens" };
}

/**
 * Chat messages rendered with the model's template (or the override), then tokenized.
 *
 * @param model The model.
 * @param messages The conversation.
 * @param override `--chat-template` choice.
 * @param tools Tool definitions for templates that take them.
 * @param options Abort signal, message limit and render time limit.
 * @returns The prepared prompt.
 * @throws {GenerationError} `invalid_request` when there are more than `maxMessages` messages
 *   (checked before any work) or the template takes longer than its time limit.
 * @throws {TemplateError} (an `invalid_request` GenerationError) when the template fails.
 * @throws The signal's reason when it aborts.
 * @example
 * ```ts
 * const prepared = await chatPrompt(model, [{ role: "user", content: "Hi" }], undefined, undefined, {
 *   signal: request.signal,
 * });
 * ```
 */
export async function chatPrompt(
  model: Model,
  messages: readonly TemplateMessage[],
  override?: TemplateOverride,
  tools?: readonly unknown[],
  options: ChatPromptOptions = {},
): Promise<PreparedPrompt> {
  const rendered = await renderChatPrompt(model, messages, override, tools, options);
  const template = rendered.family === "jinja"
    ? override && "template" in override ? override.template : model.chatTemplate()
    : undefined;
  const continuedFrom = rendered.continuedFrom ?? rendered.prompt.length;
  const stopTokens: number[] = [];
  const stopStrings: string[] = [];
  for (const stop of rendered.stopStrings) {
    // GPT-OSS (harmony) ends each channel's message with <|end|> and goes on with the next
    // (the final answer, a tool call): as in llama.cpp, only <|return|> and <|call|> end it.
    if (stop === "<|end|>" && template?.includes("<|channel|>")) continue;
    const ids = model.tokenize(stop, { addSpecial: false, parseSpecial: true });
    if (ids.length === 1 && model.isControl(ids[0] as number)) stopTokens.push(ids[0] as number);
    else stopStrings.push(stop);
  }
  return {
    tokens: await promptTokens(model, rendered.prompt, !rendered.addsBos, options),
    stopTokens,
    stopStrings,
    format: rendered.family,
    ...(template !== undefined ? { template } : {}),
    promptTail: rendered.prompt.slice(0, continuedFrom).slice(-PROMPT_TAIL_CHARS),
    ...(continuedFrom < rendered.prompt.length
      ? { continued: rendered.prompt.slice(continuedFrom) }
      : {}),
  };
}

/**
 * Chat messages rendered with the model's template (or the override) as prompt text, exactly
 * as llama-server's `/apply-template` renders them, without tokenizing: for `POST
 * /apply-template` and `shimmy generate --show-prompt`.
 *
 * @param model The model (its template, special tokens and BOS rule).
 * @param messages The conversation.
 * @param override `--chat-template` choice.
 * @param tools Tool definitions for templates that take them.
 * @param options Abort signal, message limit, render time limit, kwargs.
 * @returns The rendered prompt (`prompt` text, family, stop strings).
 * @throws {GenerationError} `invalid_request` when there are more than `maxMessages` messages
 *   or the template takes longer than its time limit.
 * @throws {TemplateError} (an `invalid_request` GenerationError) when the template fails.
 * @example
 * ```ts
 * const { prompt } = await renderChatPrompt(model, [{ role: "user", content: "Hi" }]);
 * ```
 */
export async function renderChatPrompt(
  model: Model,
  messages: readonly TemplateMessage[],
  override?: TemplateOverride,
  tools?: readonly unknown[],
  options: ChatPromptOptions = {},
): Promise<RenderedPrompt> {
  const { signal } = options;
  const limit = options.maxMessages ?? MAX_MESSAGES;
  if (messages.length > limit) {
    throw new GenerationError(
      "invalid_request",
      `The conversation has ${messages.length} messages, more than the limit of ${limit}; ` +
        "send fewer messages (drop or summarise older turns)",
    );
  }
  signal?.throwIfAborted();
  const template = model.chatTemplate();
  const source = override ? ("template" in override ? override.template : undefined) : template;
  // Mistral's templates accept only their own shape of tool-call ids.
  const mistralIds = source !== undefined && detectToolFormat(source).idStyle === "mistral";
  const rendered = await renderChatOffThread({
    ...(template ? { template } : {}),
    ...override,
    messages: mistralIds ? withMistralToolIds(messages) : messages,
    bosToken: model.bos >= 0 ? model.tokenText(model.bos) : "",
    eosToken: model.eos >= 0 ? model.tokenText(model.eos) : "",
    addBos: model.addsBos,
    model: {
      ...optional("name", model.metadataValue("general.name")),
      ...optional("architecture", model.metadataValue("general.architecture")),
    },
    ...(tools ? { tools } : {}),
    ...(options.kwargs ? { kwargs: options.kwargs } : {}),
    ...(options.reasoningEffort !== undefined ? { reasoningEffort: options.reasoningEffort } : {}),
    ...(options.addGenerationPrompt !== undefined
      ? { addGenerationPrompt: options.addGenerationPrompt }
      : {}),
    ...(options.continueFinal !== undefined ? { continueFinal: options.continueFinal } : {}),
  }, {
    ...(signal ? { signal } : {}),
    timeoutMs: options.templateTimeoutMs ?? TEMPLATE_TIMEOUT_MS,
  });
  signal?.throwIfAborted();
  return rendered;
}

function optional<K extends string>(key: K, value: string | undefined) {
  return value === undefined ? {} : { [key]: value } as Record<K, string>;
}
