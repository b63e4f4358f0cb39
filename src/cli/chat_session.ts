/**
 * What `shimmy run` does with each thing typed at its prompt, without a terminal or a model:
 * the conversation so far (system message, turns), the slash commands (`/bye`, `/clear`,
 * `/system TEXT`, `/set temperature X`, `/help`), and multi-line input (a `"""` line opens a
 * block that the next line ending in `"""` closes; a line ending in `\` continues).
 *
 * @module
 */

/** A message of the conversation. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** What the caller does after one input line. */
export type ChatAction =
  | { kind: "ask"; text: string }
  | { kind: "say"; text: string }
  | { kind: "more" }
  | { kind: "bye" };

/** Help printed by `/help`. */
export const CHAT_HELP = `Type a message and press Enter; the answer streams back.
  """          Start or end a multi-line message (or end a line with \\ to continue)
  /system TEXT Set the system message (and start over)
  /set temperature X   Sampling temperature (0 = greedy)
  /set max-tokens N    Longest answer
  /clear       Forget the conversation
  /bye         Leave (Ctrl-D too)
  /help        This help
Ctrl-C stops an answer; Ctrl-C twice at the prompt leaves.`;

/** The conversation and settings of one `shimmy run` session. */
export class ChatSession {
  /** The system message, if any. */
  system: string | undefined;
  /** Turns so far (user and assistant). */
  readonly turns: ChatMessage[] = [];
  /** Sampling temperature; undefined = the engine's default. */
  temperature: number | undefined;
  /** Most tokens per answer. */
  maxTokens: number;
  #pending: string[] | undefined;
  #block = false;

  /**
   * @param options The system message, temperature and answer length to start with.
   */
  constructor(options: { system?: string; temperature?: number; maxTokens?: number } = {}) {
    this.system = options.system;
    this.temperature = options.temperature;
    this.maxTokens = options.maxTokens ?? 1024;
  }

  /** Whether a multi-line message is being typed (the prompt shows `...`). */
  get continuing(): boolean {
    return this.#pending !== undefined;
  }

  /**
   * Takes one typed line.
   *
   * @param line The line, without its newline.
   * @returns What to do: ask the model, print something, wait for more, or leave.
   * @example
   * ```ts
   * const session = new ChatSession();
   * session.input("/set temperature 0"); // { kind: "say", text: "Set temperature to 0" }
   * session.input("Hi"); // { kind: "ask", text: "Hi" }
   * ```
   */
  input(line: string): ChatAction {
    if (this.#pending !== undefined) return this.#continue(line);
    const trimmed = line.trim();
    if (trimmed.startsWith('"""')) {
      const rest = trimmed.slice(3);
      if (rest.endsWith('"""') && rest.length >= 3) return this.#ask(rest.slice(0, -3));
      this.#pending = rest === "" ? [] : [rest];
      this.#block = true;
      return { kind: "more" };
    }
    if (line.endsWith("\\")) {
      this.#pending = [line.slice(0, -1)];
      this.#block = false;
      return { kind: "more" };
    }
    if (trimmed.startsWith("/")) return this.#command(trimmed);
    if (trimmed === "") return { kind: "more" };
    return this.#ask(line);
  }

  /**
   * Adds a question as typed, without reading commands or quotes in it.
   *
   * @param text The question.
   */
  ask(text: string): void {
    this.#ask(text);
  }

  /**
   * Records the model's answer to the last question.
   *
   * @param text The answer (what was streamed, even if stopped early).
   */
  answered(text: string): void {
    this.turns.push({ role: "assistant", content: text });
  }

  /**
   * Forgets the last question (its answer failed), so the conversation stays well-formed.
   */
  unask(): void {
    if (this.turns.at(-1)?.role === "user") this.turns.pop();
  }

  /** The messages for the chat template: the system message, then the turns. */
  messages(): ChatMessage[] {
    return [
      ...(this.system ? [{ role: "system" as const, content: this.system }] : []),
      ...this.turns,
    ];
  }

  #continue(line: string): ChatAction {
    const pending = this.#pending!;
    if (this.#block) {
      if (line.trimEnd().endsWith('"""')) {
        pending.push(line.trimEnd().slice(0, -3));
        return this.#finish(pending);
      }
      pending.push(line);
      return { kind: "more" };
    }
    if (line.endsWith("\\")) {
      pending.push(line.slice(0, -1));
      return { kind: "more" };
    }
    pending.push(line);
    return this.#finish(pending);
  }

  #finish(lines: string[]): ChatAction {
    this.#pending = undefined;
    const text = lines.join("\n").replace(/^\n+|\n+$/g, "");
    return text.trim() === "" ? { kind: "more" } : this.#ask(text);
  }

  #ask(text: string): ChatAction {
    this.turns.push({ role: "user", content: text });
    return { kind: "ask", text };
  }

  #command(text: string): ChatAction {
    const [command = "", ...args] = text.split(/\s+/);
    const rest = text.slice(command.length).trim();
    switch (command.toLowerCase()) {
      case "/bye":
      case "/exit":
      case "/quit":
        return { kind: "bye" };
      case "/help":
      case "/?":
        return { kind: "say", text: CHAT_HELP };
      case "/clear":
        this.turns.length = 0;
        return { kind: "say", text: "Cleared the conversation" };
      case "/system":
        this.system = rest === "" ? undefined : rest;
        this.turns.length = 0;
        return {
          kind: "say",
          text: rest === ""
            ? "Removed the system message"
            : "Set the system message; starting over",
        };
      case "/set":
        return this.#set(args);
      default:
        return { kind: "say", text: `Unknown command ${command}; type /help for the commands` };
    }
  }

  #set(args: string[]): ChatAction {
    const [name = "", value = ""] = args;
    const number = Number(value);
    if (name === "temperature" && value !== "" && Number.isFinite(number) && number >= 0) {
      this.temperature = number;
      return { kind: "say", text: `Set temperature to ${number}` };
    }
    if (
      (name === "max-tokens" || name === "num_predict") && Number.isInteger(number) && number > 0
    ) {
      this.maxTokens = number;
      return { kind: "say", text: `Set max-tokens to ${number}` };
    }
    return {
      kind: "say",
      text: "Usage: /set temperature X (a number >= 0) or /set max-tokens N (a positive integer)",
    };
  }
}
