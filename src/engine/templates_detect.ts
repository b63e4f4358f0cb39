/**
 * Recognises a built-in chat family from a Jinja template's text or, for models without a
 * template, from the model's name and architecture; and finds the end-of-turn markers a
 * template writes, so generation stops on them.
 *
 * @module
 */

import type { FamilyName } from "./templates_families.ts";

/** What is known about a model besides its template (GGUF `general.*` metadata). */
export interface ModelHints {
  /** `general.name`, or the model's file or registry name. */
  name?: string;
  /** `general.architecture`, e.g. `llama`, `qwen2`, `gemma2`. */
  architecture?: string;
}

/** Template markers, most specific first. */
const TEMPLATE_RULES: readonly { family: FamilyName; test: (t: string) => boolean }[] = [
  { family: "chatml", test: (t) => t.includes("<|im_start|>") },
  { family: "llama3", test: (t) => t.includes("<|start_header_id|>") },
  { family: "gemma", test: (t) => t.includes("<start_of_turn>") },
  { family: "openchat", test: (t) => t.includes("GPT4 Correct") },
  { family: "phi3", test: (t) => t.includes("<|assistant|>") && t.includes("<|end|>") },
  {
    family: "zephyr",
    test: (t) => t.includes("<|user|>") && (t.includes("</s>") || t.includes("eos_token")),
  },
  { family: "llama2", test: (t) => t.includes("[INST]") && t.includes("<<SYS>>") },
  { family: "mistral", test: (t) => t.includes("[INST]") },
];

/** Name patterns (lowercase), most specific first. */
const NAME_RULES: readonly { family: FamilyName; pattern: RegExp }[] = [
  { family: "llama3", pattern: /llama[-_ .]?3/ },
  { family: "llama2", pattern: /llama[-_ .]?2/ },
  { family: "openchat", pattern: /openchat/ },
  { family: "zephyr", pattern: /zephyr/ },
  { family: "mistral", pattern: /mi[sx]tral/ },
  { family: "phi3", pattern: /phi[-_ .]?3/ },
  // Gemma 4 uses another format (`<|turn>`), which no built-in family writes.
  { family: "gemma", pattern: /gemma(?![-_ .]?[4-9])/ },
  { family: "chatml", pattern: /qwen|hermes|dolphin|chatml|\byi\b|smollm/ },
];

/** Architectures (`general.architecture`) that imply one family. */
const ARCHITECTURES: Readonly<Record<string, FamilyName>> = {
  qwen: "chatml",
  qwen2: "chatml",
  qwen2moe: "chatml",
  qwen3: "chatml",
  qwen3moe: "chatml",
  gemma: "gemma",
  gemma2: "gemma",
  gemma3: "gemma",
  phi3: "phi3",
};

/**
 * Picks the built-in family a template or model corresponds to. Markers in the template
 * come first (`<|im_start|>` → chatml, `<|start_header_id|>` → llama3, `<start_of_turn>` →
 * gemma, `GPT4 Correct` → openchat, `<|assistant|>` + `<|end|>` → phi3, `<|user|>` + `</s>`
 * or `eos_token` → zephyr, `[INST]` + `<<SYS>>` → llama2, `[INST]` → mistral); when there is
 * no template, or it has none of them, the model's name and then its architecture decide.
 *
 * @param template The GGUF `tokenizer.chat_template`, if any.
 * @param metadata The model's name and architecture, if known.
 * @returns The family, or `undefined` when nothing matches (callers then use chatml, or the
 *   template itself when it renders).
 * @example
 * ```ts
 * detectFamily("{{ '<|im_start|>' + message['role'] }}"); // "chatml"
 * detectFamily(undefined, { name: "Meta-Llama-3-8B-Instruct" }); // "llama3"
 * detectFamily(undefined, { architecture: "gemma2" }); // "gemma"
 * ```
 */
export function detectFamily(template?: string, metadata?: ModelHints): FamilyName | undefined {
  if (template) {
    const rule = TEMPLATE_RULES.find((r) => r.test(template));
    if (rule) return rule.family;
  }
  const name = metadata?.name?.toLowerCase();
  if (name) {
    const rule = NAME_RULES.find((r) => r.pattern.test(name));
    if (rule) return rule.family;
  }
  const arch = metadata?.architecture?.toLowerCase();
  return arch && Object.hasOwn(ARCHITECTURES, arch) ? ARCHITECTURES[arch] : undefined;
}

/** End-of-turn markers that templates write as literal text. */
const END_OF_TURN_MARKERS: readonly string[] = [
  "<|im_end|>",
  "<|eot_id|>",
  "<|eom_id|>",
  "<end_of_turn>",
  "<turn|>",
  "<|end|>",
  "<|end_of_turn|>",
  "<|END_OF_TURN_TOKEN|>",
  "<|endoftext|>",
  "<|return|>",
  "<｜end▁of▁sentence｜>",
  "</s>",
];

/**
 * Finds the end-of-turn markers a Jinja template writes, so generation stops on them even
 * when the vocabulary does not flag them as end-of-generation. A template that ends turns
 * with `eos_token` adds the EOS text.
 *
 * @param template The template source.
 * @param eosToken Text of the vocabulary's EOS token.
 * @returns The markers, in a fixed order, without duplicates.
 * @example
 * ```ts
 * templateStopStrings("{{ '<|im_start|>' + m + '<|im_end|>' }}"); // ["<|im_end|>"]
 * ```
 */
export function templateStopStrings(template: string, eosToken?: string): string[] {
  const stops = END_OF_TURN_MARKERS.filter((m) => template.includes(m));
  if (eosToken && template.includes("eos_token") && !stops.includes(eosToken)) {
    stops.push(eosToken);
  }
  return stops;
}

/**
 * Whether a chat template thinks, or can be asked to: it writes a `<think>` block, reads a
 * thinking switch (`enable_thinking`, `reasoning_effort`), or speaks GPT-OSS's channels.
 *
 * @param template The template source (or a built-in format's name, which does not think).
 * @returns True where asking for thinking can change the answer.
 * @example
 * ```ts
 * templateThinks("{{ '<think>\\n' if enable_thinking }}"); // true
 * ```
 */
export function templateThinks(template: string): boolean {
  return ["<think>", "enable_thinking", "reasoning_effort", "<|channel|>"].some((marker) =>
    template.includes(marker)
  );
}
