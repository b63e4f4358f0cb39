/**
 * Chat messages → prompt text, with llama.cpp's built-in template engine
 * (`llama_chat_apply_template`), which recognises the common families (ChatML, Llama 2/3,
 * Mistral, Gemma, Phi-3, Zephyr…) from the model's GGUF template. A model without a template
 * uses ChatML.
 *
 * @module
 */

import { cString } from "../ffi/cstring.ts";
import { LlamaChatMessage } from "../ffi/layouts.ts";
import type { Model } from "../ffi/model.ts";
import { GenerationError } from "./errors.ts";

/** One chat message with plain-text content. */
export interface ChatMessage {
  role: string;
  content: string;
}

/**
 * Formats chat messages with the model's template and opens the assistant's turn.
 *
 * @param model The model (its `tokenizer.chat_template` picks the format).
 * @param messages The conversation.
 * @returns The prompt text.
 * @throws {GenerationError} `invalid_request` when llama.cpp does not know the template.
 * @example
 * ```ts
 * formatChat(model, [{ role: "user", content: "Hi" }]); // "<|im_start|>user\nHi<|im_end|>\n…"
 * ```
 */
export function formatChat(model: Model, messages: readonly ChatMessage[]): string {
  const template = model.chatTemplate() ?? "chatml";
  const strings = messages.flatMap((m) => [cString(m.role), cString(m.content)]);
  const array = new Uint8Array(Math.max(1, messages.length) * LlamaChatMessage.size);
  messages.forEach((_, i) => {
    const row = array.subarray(i * LlamaChatMessage.size, (i + 1) * LlamaChatMessage.size);
    LlamaChatMessage.set(row, "role", Deno.UnsafePointer.of(strings[2 * i] as Uint8Array));
    LlamaChatMessage.set(row, "content", Deno.UnsafePointer.of(strings[2 * i + 1] as Uint8Array));
  });
  const templateBytes = cString(template);
  const run = (buf: Uint8Array<ArrayBuffer>) =>
    model.llama.symbols.llama_chat_apply_template(
      templateBytes,
      array,
      BigInt(messages.length),
      true,
      buf,
      buf.length,
    );
  const total = messages.reduce((n, m) => n + m.role.length + m.content.length, 0);
  let buf = new Uint8Array(total * 2 + 256);
  let n = run(buf);
  if (n > buf.length) {
    buf = new Uint8Array(n);
    n = run(buf);
  }
  strings.length = 0; // keeps the strings alive until llama.cpp has read them
  if (n < 0) {
    throw new GenerationError(
      "invalid_request",
      "This model's chat template is not supported yet; send a plain prompt instead",
    );
  }
  return new TextDecoder().decode(buf.subarray(0, n));
}
