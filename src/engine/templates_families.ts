/**
 * Built-in chat formats ("families") for models without a usable Jinja template, or when the
 * user picks one with `--chat-template NAME`. Each is written from the model makers' documented
 * prompt format, with its own handling of the system message and its end-of-turn markers.
 *
 * @module
 */

/** Names of the built-in chat formats. */
export type FamilyName =
  | "chatml"
  | "llama3"
  | "llama2"
  | "mistral"
  | "gemma"
  | "phi3"
  | "openchat"
  | "zephyr"
  | "raw";

/**
 * Every built-in family name, in the order `--help` lists them.
 *
 * @example
 * ```ts
 * FAMILY_NAMES.includes("chatml"); // true
 * ```
 */
export const FAMILY_NAMES: readonly FamilyName[] = [
  "chatml",
  "llama3",
  "llama2",
  "mistral",
  "gemma",
  "phi3",
  "openchat",
  "zephyr",
  "raw",
];

/**
 * Tells whether a string names a built-in family.
 *
 * @param name Candidate name (case-sensitive; see {@link FAMILY_NAMES}).
 * @returns `true` for a built-in family name.
 * @example
 * ```ts
 * isFamilyName("gemma"); // true
 * isFamilyName("vicuna"); // false
 * ```
 */
export function isFamilyName(name: string): name is FamilyName {
  return (FAMILY_NAMES as readonly string[]).includes(name);
}

/** One message as the built-in families read it. */
export interface FamilyMessage {
  /** `system`, `user`, `assistant`, or another role (treated as `user` where a format has none). */
  readonly role: string;
  /** Plain text; `null`/missing counts as empty. */
  readonly content: string | null | undefined;
}

/** Options of {@link renderFamily}. */
export interface FamilyRenderOptions {
  /** Open the assistant's turn at the end. Default `true`. */
  addGenerationPrompt?: boolean;
  /**
   * Text of the vocabulary's BOS token, written where the format starts with one (llama3,
   * llama2, mistral, gemma, openchat). Default: the format's documented token (`<s>`,
   * `<|begin_of_text|>`, `<bos>`); `""` writes none.
   */
  bosToken?: string;
  /**
   * Text of the vocabulary's EOS token, which ends turns in llama2, mistral and zephyr.
   * Default `</s>`.
   */
  eosToken?: string;
}

/** Result of {@link renderFamily}. */
export interface FamilyRendering {
  /** The prompt text. */
  prompt: string;
  /** The BOS text the format wrote at the start (`""` when none). */
  bos: string;
  /** Strings that end the assistant's turn. */
  stopStrings: string[];
}

interface Tokens {
  bos: string;
  eos: string;
}

interface Turn {
  /** The role as the formats without free-form roles read it (others count as `user`). */
  role: "system" | "user" | "assistant";
  /** The role as given, for formats that write any role name (chatml, llama3). */
  name: string;
  text: string;
}

interface FamilySpec {
  /** BOS written at the start, or `undefined` when the format has none. */
  defaultBos?: string;
  stops(tokens: Tokens): string[];
  render(turns: readonly Turn[], addGenerationPrompt: boolean, tokens: Tokens): string;
}

function toTurns(messages: readonly FamilyMessage[]): Turn[] {
  return messages.map((m) => ({
    role: m.role === "system" || m.role === "assistant" ? m.role : "user",
    name: m.role,
    text: typeof m.content === "string" ? m.content : "",
  }));
}

/**
 * For formats without a system role: each system message is put in front of the next user
 * message (joined by a blank line); a system message with no user message after it becomes
 * a user message of its own.
 */
function foldSystem(
  turns: readonly Turn[],
  join: (system: string, user: string) => string,
): Turn[] {
  const out: Turn[] = [];
  let system: string | undefined;
  for (const turn of turns) {
    if (turn.role === "system") {
      system = system === undefined ? turn.text : `${system}\n\n${turn.text}`;
    } else if (turn.role === "user" && system !== undefined) {
      out.push({ role: "user", name: "user", text: join(system, turn.text) });
      system = undefined;
    } else {
      out.push(turn);
    }
  }
  if (system !== undefined) out.push({ role: "user", name: "user", text: join(system, "") });
  return out;
}

const blankLineJoin = (system: string, user: string) => (user ? `${system}\n\n${user}` : system);

const SPECS: Readonly<Record<FamilyName, FamilySpec>> = {
  // OpenAI ChatML: every turn is `<|im_start|>ROLE\n…<|im_end|>\n`; roles are written as given.
  chatml: {
    stops: () => ["<|im_end|>"],
    render(turns, gen) {
      let out = turns.map((t) => `<|im_start|>${t.name}\n${t.text}<|im_end|>\n`).join("");
      if (gen) out += "<|im_start|>assistant\n";
      return out;
    },
  },
  // Meta Llama 3: header-delimited turns ended by <|eot_id|>, content trimmed, roles as given.
  llama3: {
    defaultBos: "<|begin_of_text|>",
    stops: () => ["<|eot_id|>", "<|eom_id|>"],
    render(turns, gen, { bos }) {
      const header = (role: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n`;
      let out = bos + turns.map((t) => `${header(t.name)}${t.text.trim()}<|eot_id|>`).join("");
      if (gen) out += header("assistant");
      return out;
    },
  },
  // Meta Llama 2 chat: `<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nUSER [/INST] ANSWER </s>` per
  // exchange; the system prompt lives inside the first instruction.
  llama2: {
    defaultBos: "<s>",
    stops: ({ eos }) => [eos],
    render(turns, _gen, { bos, eos }) {
      const folded = foldSystem(
        turns.map((t) => ({ ...t, text: t.text.trim() })),
        (system, user) => `<<SYS>>\n${system}\n<</SYS>>\n\n${user}`,
      );
      let out = "";
      for (const t of folded) {
        out += t.role === "assistant" ? ` ${t.text} ${eos}` : `${bos}[INST] ${t.text} [/INST]`;
      }
      return out;
    },
  },
  // Mistral Instruct: `<s>[INST] USER [/INST] ANSWER</s>[INST] …`; BOS only once, the system
  // prompt prefixed to the next instruction.
  mistral: {
    defaultBos: "<s>",
    stops: ({ eos }) => [eos],
    render(turns, _gen, { bos, eos }) {
      const folded = foldSystem(turns.map((t) => ({ ...t, text: t.text.trim() })), blankLineJoin);
      let out = bos;
      for (const t of folded) {
        out += t.role === "assistant" ? ` ${t.text}${eos}` : `[INST] ${t.text} [/INST]`;
      }
      return out;
    },
  },
  // Google Gemma (1–3): `<start_of_turn>user|model\n…<end_of_turn>\n`; no system role.
  gemma: {
    defaultBos: "<bos>",
    stops: () => ["<end_of_turn>"],
    render(turns, gen, { bos }) {
      const folded = foldSystem(turns.map((t) => ({ ...t, text: t.text.trim() })), blankLineJoin);
      let out = bos;
      for (const t of folded) {
        const role = t.role === "assistant" ? "model" : "user";
        out += `<start_of_turn>${role}\n${t.text}<end_of_turn>\n`;
      }
      if (gen) out += "<start_of_turn>model\n";
      return out;
    },
  },
  // Microsoft Phi-3/3.5: `<|system|>`, `<|user|>`, `<|assistant|>` tags, turns ended by <|end|>.
  phi3: {
    stops: () => ["<|end|>"],
    render(turns, gen) {
      let out = turns.map((t) => `<|${t.role}|>\n${t.text}<|end|>\n`).join("");
      if (gen) out += "<|assistant|>\n";
      return out;
    },
  },
  // OpenChat 3.5: `GPT4 Correct User: …<|end_of_turn|>GPT4 Correct Assistant: …`; a system
  // prompt is written bare, ended by <|end_of_turn|>.
  openchat: {
    defaultBos: "<s>",
    stops: () => ["<|end_of_turn|>"],
    render(turns, gen, { bos }) {
      const prefix = {
        system: "",
        user: "GPT4 Correct User: ",
        assistant: "GPT4 Correct Assistant: ",
      };
      let out = bos + turns.map((t) => `${prefix[t.role]}${t.text}<|end_of_turn|>`).join("");
      if (gen) out += "GPT4 Correct Assistant:";
      return out;
    },
  },
  // HuggingFace Zephyr: `<|system|>`, `<|user|>`, `<|assistant|>` tags, turns ended by EOS.
  zephyr: {
    stops: ({ eos }) => [eos],
    render(turns, gen, { eos }) {
      let out = turns.map((t) => `<|${t.role}|>\n${t.text}${eos}\n`).join("");
      if (gen) out += "<|assistant|>\n";
      return out;
    },
  },
  // No template: the messages' text, one per line, for base models.
  raw: {
    stops: () => [],
    render: (turns) => turns.map((t) => t.text).join("\n"),
  },
};

/**
 * The strings that end the assistant's turn in a family's format.
 *
 * @param family The family.
 * @param eosToken Text of the vocabulary's EOS token (llama2, mistral and zephyr end turns
 *   with it). Default `</s>`.
 * @returns The stop strings (none for `raw`).
 * @example
 * ```ts
 * familyStopStrings("chatml"); // ["<|im_end|>"]
 * ```
 */
export function familyStopStrings(family: FamilyName, eosToken?: string): string[] {
  return SPECS[family].stops({ bos: "", eos: eosToken || "</s>" }).filter((s) => s !== "");
}

/**
 * Formats messages with a built-in family.
 *
 * @param family The family.
 * @param messages The conversation.
 * @param options Generation prompt and special-token texts.
 * @returns The prompt, the BOS it starts with, and the stop strings.
 * @example
 * ```ts
 * renderFamily("chatml", [{ role: "user", content: "Hi" }]).prompt;
 * // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
 * ```
 */
export function renderFamily(
  family: FamilyName,
  messages: readonly FamilyMessage[],
  options: FamilyRenderOptions = {},
): FamilyRendering {
  const spec = SPECS[family];
  const bos = spec.defaultBos === undefined ? "" : options.bosToken ?? spec.defaultBos;
  const tokens = { bos, eos: options.eosToken || "</s>" };
  const prompt = spec.render(toTurns(messages), options.addGenerationPrompt ?? true, tokens);
  return { prompt, bos, stopStrings: familyStopStrings(family, tokens.eos) };
}
