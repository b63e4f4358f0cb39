/**
 * The page's memory, kept in the browser's localStorage: conversations, settings and the API
 * key. Nothing is sent anywhere but to this server's API.
 *
 * @module
 */
/// <reference no-default-lib="true" />
/// <reference lib="dom" />
/// <reference lib="esnext" />

/** One message of a stored conversation. */
export interface StoredMessage {
  /** `user` or `assistant`. */
  role: "user" | "assistant";
  /** The text (Markdown for answers). */
  content: string;
  /** The model's reasoning (`reasoning_content`), shown collapsed. */
  reasoning?: string;
  /** An error shown in place of (or after) the answer. */
  error?: string;
  /** Token counts and speed of an answer. */
  stats?: { promptTokens?: number; completionTokens?: number; tokensPerSecond?: number };
  /** Why the answer ended (`stop`, `length`), once it has. */
  finish?: string;
  /** The model that answered. */
  model?: string;
  /** The answer was still streaming when last saved: the server may still have it. */
  pending?: boolean;
}

/** A stored conversation. */
export interface Conversation {
  /** Unique id. */
  id: string;
  /** Title shown in the list. */
  title: string;
  /** Milliseconds since the epoch of the last change. */
  updated: number;
  /** The messages, oldest first. */
  messages: StoredMessage[];
}

/** The settings panel's values. */
export interface Settings {
  /** System prompt; empty for none. */
  system: string;
  /** Temperature; undefined for the server's default. */
  temperature?: number;
  /** Top-p; undefined for the server's default. */
  topP?: number;
  /** Most tokens per answer; undefined for the server's default. */
  maxTokens?: number;
  /** Seed; undefined for random. */
  seed?: number;
  /** The last model picked. */
  model?: string;
}

/** The localStorage keys. */
export const KEYS = {
  conversations: "shimmy.conversations",
  settings: "shimmy.settings",
  apiKey: "shimmy.apiKey",
  current: "shimmy.current",
} as const;

function read<T>(key: string, fallback: T): T {
  try {
    const text = localStorage.getItem(key);
    return text === null ? fallback : JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

/** Reads and writes the page's state. */
export const store = {
  /** @returns Conversations, newest first. */
  conversations(): Conversation[] {
    const list = read<Conversation[]>(KEYS.conversations, []);
    return Array.isArray(list) ? list.sort((a, b) => b.updated - a.updated) : [];
  },
  /** @param list Every conversation. */
  saveConversations(list: Conversation[]): void {
    localStorage.setItem(KEYS.conversations, JSON.stringify(list));
  },
  /** @returns The settings. */
  settings(): Settings {
    return { system: "", ...read<Partial<Settings>>(KEYS.settings, {}) };
  },
  /** @param settings The settings to keep. */
  saveSettings(settings: Settings): void {
    localStorage.setItem(KEYS.settings, JSON.stringify(settings));
  },
  /** @returns The API key, or "". */
  apiKey(): string {
    return localStorage.getItem(KEYS.apiKey) ?? "";
  },
  /** @param key The key; "" forgets it. */
  saveApiKey(key: string): void {
    if (key) localStorage.setItem(KEYS.apiKey, key);
    else localStorage.removeItem(KEYS.apiKey);
  },
  /** @returns The id of the open conversation. */
  current(): string | null {
    return localStorage.getItem(KEYS.current);
  },
  /** @param id The open conversation's id. */
  saveCurrent(id: string): void {
    localStorage.setItem(KEYS.current, id);
  },
};
