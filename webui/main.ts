/**
 * The chat page: wires the DOM of `index.html` to the API client, the Markdown renderer and
 * the browser store. One conversation is open at a time; an answer streams into its message
 * element, re-rendered at most once per frame, and is saved when it ends or is stopped. The
 * server keeps a streaming answer when the page goes away (a reload, a closed tab): the page
 * reads it again when its conversation opens, and Stop ends it on the server.
 *
 * @module
 */
/// <reference no-default-lib="true" />
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/// <reference lib="esnext" />

import { Api, ApiError, type ApiMessage, type SamplingOptions, type StreamEvent } from "./api.ts";
import { renderMarkdown } from "./markdown.ts";
import { type Conversation, store, type StoredMessage } from "./store.ts";

/** How often the model list is refreshed while a model is loading, in milliseconds. */
const LOADING_POLL_MS = 1000;
/** Longest title made from a first message. */
const TITLE_LENGTH = 48;

function $<T extends HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

const ui = {
  model: $<HTMLSelectElement>("model"),
  modelStatus: $("model-status"),
  sidebar: $("sidebar"),
  toggleSidebar: $<HTMLButtonElement>("toggle-sidebar"),
  list: $<HTMLUListElement>("conversations"),
  messages: $<HTMLOListElement>("messages"),
  composer: $<HTMLFormElement>("composer"),
  prompt: $<HTMLTextAreaElement>("prompt"),
  send: $<HTMLButtonElement>("send"),
  stop: $<HTMLButtonElement>("stop"),
  settings: $<HTMLDialogElement>("settings"),
  keyDialog: $<HTMLDialogElement>("key-dialog"),
  keyInput: $<HTMLInputElement>("key-input"),
  keyError: $("key-error"),
};

const api = new Api(() => store.apiKey());
let conversations: Conversation[] = store.conversations();
let current: Conversation = conversations.find((c) => c.id === store.current()) ??
  conversations[0] ?? newConversation();
let running: AbortController | null = null;

function newConversation(): Conversation {
  return { id: crypto.randomUUID(), title: "New chat", updated: Date.now(), messages: [] };
}

function save(): void {
  current.updated = Date.now();
  if (!conversations.includes(current)) conversations.unshift(current);
  conversations = conversations.filter((c) => c.messages.length > 0 || c === current);
  store.saveConversations(conversations.filter((c) => c.messages.length > 0));
  store.saveCurrent(current.id);
  renderList();
}

// ---- Models

async function refreshModels(): Promise<void> {
  let models;
  try {
    models = await api.models();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      return askForKey(store.apiKey() ? "The server refused this key." : "");
    }
    ui.modelStatus.textContent = `Cannot list models: ${(error as Error).message}`;
    return;
  }
  const wanted = ui.model.value || store.settings().model;
  ui.model.replaceChildren(...models.map((m) => {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.status === "loading"
      ? `${m.id} (loading${m.progress !== undefined ? ` ${Math.round(m.progress * 100)}%` : ""})`
      : m.id;
    return option;
  }));
  if (models.some((m) => m.id === wanted)) ui.model.value = wanted!;
  showModelStatus(models);
  if (models.some((m) => m.status === "loading")) {
    setTimeout(refreshModels, LOADING_POLL_MS);
  }
}

function showModelStatus(models: { id: string; status: string; progress?: number }[]): void {
  const model = models.find((m) => m.id === ui.model.value);
  if (!model) {
    ui.modelStatus.textContent = "No models";
    return;
  }
  ui.modelStatus.textContent = model.status === "loaded"
    ? "Loaded"
    : model.status === "loading"
    ? `Loading${model.progress !== undefined ? ` ${Math.round(model.progress * 100)}%` : "…"}`
    : "Loads on first message";
}

function askForKey(message = ""): void {
  ui.keyError.textContent = message;
  ui.keyInput.value = "";
  if (!ui.keyDialog.open) ui.keyDialog.showModal();
}

// ---- Conversation list

function renderList(): void {
  const shown = conversations.filter((c) => c.messages.length > 0);
  ui.list.replaceChildren(...shown.map((c) => {
    const item = document.createElement("li");
    item.setAttribute("aria-current", String(c === current));
    const open = button(c.title, "title", () => openConversation(c));
    open.title = c.title;
    const rename = button("✎", "small", () => {
      const title = prompt("Conversation title", c.title)?.trim();
      if (title) {
        c.title = title;
        store.saveConversations(conversations.filter((x) => x.messages.length > 0));
        renderList();
      }
    });
    rename.setAttribute("aria-label", `Rename ${c.title}`);
    const remove = button("✕", "small", () => {
      if (!confirm(`Delete "${c.title}"?`)) return;
      conversations = conversations.filter((x) => x !== c);
      if (c === current) current = conversations[0] ?? newConversation();
      save();
      renderMessages();
    });
    remove.setAttribute("aria-label", `Delete ${c.title}`);
    item.append(open, rename, remove);
    return item;
  }));
}

function openConversation(c: Conversation): void {
  if (running) return;
  current = c;
  store.saveCurrent(c.id);
  renderList();
  renderMessages();
  ui.sidebar.classList.remove("open");
  ui.prompt.focus();
  resume(c);
}

function button(label: string, className: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

// ---- Messages

function renderMessages(): void {
  ui.messages.replaceChildren(...current.messages.map((m, i) => messageElement(m, i)));
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function messageElement(message: StoredMessage, index: number): HTMLLIElement {
  const item = document.createElement("li");
  item.className = `msg ${message.role}`;
  fillMessage(item, message, index);
  return item;
}

function fillMessage(item: HTMLElement, message: StoredMessage, index: number): void {
  const parts: HTMLElement[] = [];
  if (message.reasoning) {
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "Reasoning";
    details.append(summary, message.reasoning);
    parts.push(details);
  }
  const body = document.createElement("div");
  body.className = "body";
  // The person's text is shown as typed; the model's is Markdown, sanitized.
  if (message.role === "user") body.textContent = message.content;
  else renderMarkdown(body, message.content);
  parts.push(body);
  if (message.error) {
    const error = document.createElement("p");
    error.className = "error";
    error.setAttribute("role", "alert");
    error.textContent = message.error;
    parts.push(error);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  if (message.role === "assistant") {
    const s = message.stats;
    if (s?.completionTokens !== undefined) {
      meta.append(span(`${s.promptTokens ?? "?"} prompt + ${s.completionTokens} tokens`));
    }
    if (s?.tokensPerSecond !== undefined) meta.append(span(`${s.tokensPerSecond.toFixed(1)} t/s`));
    if (message.finish === "length") meta.append(span("cut at max tokens (Settings)"));
    if (!running && index === current.messages.length - 1) {
      meta.append(button("Regenerate", "regenerate", () => regenerate(index)));
    }
  } else if (!running) {
    meta.append(button("Edit", "edit", () => edit(index)));
  }
  parts.push(meta);
  item.replaceChildren(...parts);
}

function span(text: string): HTMLSpanElement {
  const s = document.createElement("span");
  s.textContent = text;
  return s;
}

// ---- Generating

function samplingOptions(): SamplingOptions {
  const s = store.settings();
  return {
    ...(s.temperature !== undefined ? { temperature: s.temperature } : {}),
    ...(s.topP !== undefined ? { top_p: s.topP } : {}),
    ...(s.maxTokens !== undefined ? { max_tokens: s.maxTokens } : {}),
    ...(s.seed !== undefined ? { seed: s.seed } : {}),
  };
}

function apiMessages(messages: StoredMessage[]): ApiMessage[] {
  const system = store.settings().system.trim();
  return [
    ...(system ? [{ role: "system", content: system }] : []),
    ...messages.filter((m) => m.content !== "" || m.role === "user")
      .map((m) => ({ role: m.role, content: m.content })),
  ];
}

async function generate(): Promise<void> {
  const model = ui.model.value;
  const history = apiMessages(current.messages);
  const answer: StoredMessage = { role: "assistant", content: "", model, pending: true };
  current.messages.push(answer);
  const id = current.id;
  await follow(answer, (signal) => api.chat(model, history, samplingOptions(), id, signal));
}

/**
 * Reads again the answer that was streaming when the page went away: the server kept it under
 * the conversation's id, from its first byte (the page saved none of it).
 */
async function resume(conversation: Conversation): Promise<void> {
  const answer = conversation.messages.at(-1);
  if (running || answer?.role !== "assistant" || !answer.pending) return;
  Object.assign(answer, { content: "", reasoning: undefined, stats: undefined, finish: undefined });
  await follow(answer, (signal) => api.resume(conversation.id, signal), true);
}

/** Streams an answer into the last message of the open conversation, then saves it. */
async function follow(
  answer: StoredMessage,
  open: (signal: AbortSignal) => AsyncGenerator<StreamEvent>,
  resumed = false,
): Promise<void> {
  const index = current.messages.length - 1;
  save();
  renderMessages();
  const item = ui.messages.lastElementChild as HTMLElement;
  item.setAttribute("aria-busy", "true");
  setRunning(new AbortController());
  let frame = 0;
  const paint = () => {
    frame = 0;
    fillMessage(item, answer, index);
    ui.messages.scrollTop = ui.messages.scrollHeight;
  };
  try {
    for await (const event of open(running!.signal)) {
      if (event.kind === "content") answer.content += event.text;
      else if (event.kind === "reasoning") answer.reasoning = (answer.reasoning ?? "") + event.text;
      else if (event.kind === "usage") {
        answer.stats = {
          ...answer.stats,
          promptTokens: event.promptTokens,
          completionTokens: event.completionTokens,
        };
      } else if (event.kind === "timings") {
        answer.stats = { ...answer.stats, tokensPerSecond: event.tokensPerSecond };
      } else if (event.kind === "finish") {
        answer.finish = event.reason;
      }
      frame ||= requestAnimationFrame(paint);
    }
  } catch (error) {
    answer.error = resumed && error instanceof ApiError && error.status === 404
      ? "The page closed while this answer streamed, and the server no longer has it."
      : describeError(error);
  } finally {
    delete answer.pending;
    cancelAnimationFrame(frame);
    setRunning(null);
    item.removeAttribute("aria-busy");
    save();
    renderMessages();
    refreshModels();
  }
}

function describeError(error: unknown): string {
  if (error instanceof DOMException && error.name === "AbortError") return "Stopped.";
  if (!(error instanceof ApiError)) return `Connection failed: ${(error as Error).message}`;
  if (error.status === 401) {
    askForKey("The server refused the API key.");
    return "The server needs an API key: enter it and press Regenerate.";
  }
  if (error.code === "context_length_exceeded") {
    return `${error.message}. Start a new chat, edit an earlier message to shorten the ` +
      "conversation, or start the server with a larger --ctx-size.";
  }
  return error.message;
}

function setRunning(controller: AbortController | null): void {
  running = controller;
  ui.send.hidden = controller !== null;
  ui.stop.hidden = controller === null;
  ui.model.disabled = controller !== null;
}

function send(): void {
  const text = ui.prompt.value.trim();
  if (!text || running || !ui.model.value) return;
  ui.prompt.value = "";
  if (current.messages.length === 0) {
    current.title = text.length > TITLE_LENGTH ? `${text.slice(0, TITLE_LENGTH)}…` : text;
  }
  current.messages.push({ role: "user", content: text });
  generate();
}

function regenerate(index: number): void {
  if (running) return;
  current.messages.splice(index);
  generate();
}

function edit(index: number): void {
  if (running) return;
  const message = current.messages[index];
  if (!message) return;
  ui.prompt.value = message.content;
  current.messages.splice(index);
  save();
  renderMessages();
  ui.prompt.focus();
}

// ---- Settings, key, export

function openSettings(): void {
  const s = store.settings();
  const field = (id: string) => $<HTMLInputElement>(id);
  field("set-system").value = s.system;
  field("set-temperature").value = s.temperature?.toString() ?? "";
  field("set-top-p").value = s.topP?.toString() ?? "";
  field("set-max-tokens").value = s.maxTokens?.toString() ?? "";
  field("set-seed").value = s.seed?.toString() ?? "";
  field("set-api-key").value = store.apiKey();
  ui.settings.showModal();
}

function saveSettings(): void {
  const value = (id: string) => $<HTMLInputElement>(id).value.trim();
  const number = (id: string) => value(id) === "" ? undefined : Number(value(id));
  const settings = {
    ...store.settings(),
    system: $<HTMLTextAreaElement>("set-system").value,
    temperature: number("set-temperature"),
    topP: number("set-top-p"),
    maxTokens: number("set-max-tokens"),
    seed: number("set-seed"),
  };
  store.saveSettings(settings);
  store.saveApiKey(value("set-api-key"));
  refreshModels();
}

function exportConversations(): void {
  const blob = new Blob([JSON.stringify(store.conversations(), null, 2)], {
    type: "application/json",
  });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `shimmy-conversations-${new Date().toISOString().slice(0, 10)}.json`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// ---- Wiring

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
ui.stop.addEventListener("click", () => {
  if (!running) return;
  // The server keeps the answer for a page that goes away: Stop ends it there too.
  void api.stop(current.id);
  running.abort();
});
ui.model.addEventListener("change", () => {
  store.saveSettings({ ...store.settings(), model: ui.model.value });
  refreshModels();
});
$("new-chat").addEventListener("click", () => {
  if (running) return;
  current = newConversation();
  renderList();
  renderMessages();
  ui.prompt.focus();
});
$("export").addEventListener("click", exportConversations);
$("open-settings").addEventListener("click", openSettings);
ui.settings.addEventListener("close", () => {
  if (ui.settings.returnValue === "save") saveSettings();
});
ui.keyDialog.addEventListener("close", () => {
  if (ui.keyDialog.returnValue !== "save") return;
  store.saveApiKey(ui.keyInput.value.trim());
  refreshModels();
});
ui.toggleSidebar.addEventListener("click", () => {
  const open = ui.sidebar.classList.toggle("open");
  ui.toggleSidebar.setAttribute("aria-expanded", String(open));
});

renderList();
renderMessages();
refreshModels();
ui.prompt.focus();
resume(current);
