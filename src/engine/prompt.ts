/**
 * Building the tokens of a request: a raw prompt, or chat messages rendered with the model's
 * chat template (or a `--chat-template` override). BOS is added when the vocabulary wants it,
 * never twice, and the template's end-of-turn markers become stop tokens (they are control
 * tokens, so they never show as text) or stop strings.
 *
 * @module
 */

import type { Model } from "../ffi/model.ts";
import { renderChat, type TemplateMessage, type TemplateOverride } from "./templates.ts";

/** Tokens to generate from, with the stops the template implies. */
export interface PreparedPrompt {
  tokens: Int32Array;
  /** Token ids that end generation besides the vocabulary's own end tokens. */
  stopTokens: number[];
  /** Text that ends generation (never emitted). */
  stopStrings: string[];
  /** `raw`, `jinja` or the built-in family used. */
  format: string;
}

/**
 * Tokenizes prompt text.
 *
 * @param model The model.
 * @param text Prompt text (raw, or rendered by a chat template).
 * @param addBos Whether BOS may be added (false when the text already starts with it).
 * @returns The tokens, with at most one leading BOS.
 */
export function promptTokens(model: Model, text: string, addBos = true): Int32Array {
  const tokens = model.tokenize(text, { addSpecial: addBos, parseSpecial: true });
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
 * @returns The prepared prompt.
 */
export function rawPrompt(model: Model, text: string): PreparedPrompt {
  return { tokens: promptTokens(model, text), stopTokens: [], stopStrings: [], format: "raw" };
}

/**
 * Chat messages rendered with the model's template (or the override).
 *
 * @param model The model.
 * @param messages The conversation.
 * @param override `--chat-template` choice.
 * @param tools Tool definitions for templates that take them.
 * @returns The prepared prompt.
 * @throws {TemplateError} (an `invalid_request` GenerationError) when the template fails.
 */
export function chatPrompt(
  model: Model,
  messages: readonly TemplateMessage[],
  override?: TemplateOverride,
  tools?: readonly unknown[],
): PreparedPrompt {
  const template = model.chatTemplate();
  const rendered = renderChat({
    ...(template ? { template } : {}),
    ...override,
    messages,
    bosToken: model.bos >= 0 ? model.tokenText(model.bos) : "",
    eosToken: model.eos >= 0 ? model.tokenText(model.eos) : "",
    model: {
      ...optional("name", model.metadataValue("general.name")),
      ...optional("architecture", model.metadataValue("general.architecture")),
    },
    ...(tools ? { tools } : {}),
  });
  const stopTokens: number[] = [];
  const stopStrings: string[] = [];
  for (const stop of rendered.stopStrings) {
    const ids = model.tokenize(stop, { addSpecial: false, parseSpecial: true });
    if (ids.length === 1 && model.isControl(ids[0] as number)) stopTokens.push(ids[0] as number);
    else stopStrings.push(stop);
  }
  return {
    tokens: promptTokens(model, rendered.prompt, !rendered.addsBos),
    stopTokens,
    stopStrings,
    format: rendered.family,
  };
}

function optional<K extends string>(key: K, value: string | undefined) {
  return value === undefined ? {} : { [key]: value } as Record<K, string>;
}
