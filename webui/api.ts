/**
 * The page's client for Shimmy's HTTP API: model list, load progress and streaming chat
 * completions through the OpenAI routes, with the API key the person gave (if any). Answers are
 * streamed under their conversation's id, so the server keeps them when the page goes away and
 * a reloaded page can read them again (`resume`) or stop them (`stop`).
 *
 * @module
 */
/// <reference no-default-lib="true" />
/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/// <reference lib="esnext" />

/** A model as `GET /v1/models` lists it. */
export interface ModelInfo {
  /** The name to send as `model`. */
  id: string;
  /** `loaded`, `loading` or `available`. */
  status: string;
  /** Load progress from 0 to 1, while loading (from `/health`). */
  progress?: number;
}

/** One chat message as the OpenAI API takes it. */
export interface ApiMessage {
  /** `system`, `user` or `assistant`. */
  role: string;
  /** The text. */
  content: string;
}

/** Sampling and length settings sent with each request. */
export interface SamplingOptions {
  /** Sampling temperature. */
  temperature?: number;
  /** Nucleus sampling. */
  top_p?: number;
  /** Most tokens to generate. */
  max_tokens?: number;
  /** Random seed. */
  seed?: number;
}

/** A piece of a streamed answer. */
export type StreamEvent =
  | { kind: "content"; text: string }
  | { kind: "reasoning"; text: string }
  | { kind: "usage"; promptTokens: number; completionTokens: number }
  | { kind: "timings"; tokensPerSecond: number }
  | { kind: "finish"; reason: string };

/** An error answer from the server, with its OpenAI error code. */
export class ApiError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** The error body's `code`, e.g. `invalid_api_key`. */
  readonly code: string | undefined;
  /**
   * @param status HTTP status.
   * @param message The server's message.
   * @param code The server's error code.
   */
  constructor(status: number, message: string, code?: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** Calls the server with the key from `getKey()`. */
export class Api {
  #getKey: () => string;

  /** @param getKey Returns the API key, or "" for none. */
  constructor(getKey: () => string) {
    this.#getKey = getKey;
  }

  #headers(json: boolean): HeadersInit {
    const headers: Record<string, string> = {};
    const key = this.#getKey();
    if (key) headers.authorization = `Bearer ${key}`;
    if (json) headers["content-type"] = "application/json";
    return headers;
  }

  /**
   * Lists the models with their load state and progress.
   *
   * @returns The models.
   */
  async models(): Promise<ModelInfo[]> {
    const response = await fetch("/v1/models", { headers: this.#headers(false) });
    await check(response);
    const body = await response.json() as { data: { id: string; status: string }[] };
    const progress = await this.#progress();
    return body.data.map((m) => ({
      id: m.id,
      status: m.status,
      ...(progress.has(m.id) ? { progress: progress.get(m.id) } : {}),
    }));
  }

  async #progress(): Promise<Map<string, number>> {
    try {
      const response = await fetch("/health");
      const body = await response.json() as { models?: { name: string; progress?: number }[] };
      return new Map(
        (body.models ?? []).flatMap((m) => m.progress === undefined ? [] : [[m.name, m.progress]]),
      );
    } catch {
      return new Map();
    }
  }

  /**
   * Streams a chat completion, kept by the server under the conversation's id: it goes on if
   * the page goes away, until {@link Api.stop}.
   *
   * @param model Model name.
   * @param messages The conversation.
   * @param options Sampling settings.
   * @param conversation The conversation's id.
   * @param signal Stops reading (the answer goes on: {@link Api.stop} stops it).
   * @returns The answer's pieces as they arrive.
   */
  async *chat(
    model: string,
    messages: ApiMessage[],
    options: SamplingOptions,
    conversation: string,
    signal: AbortSignal,
  ): AsyncGenerator<StreamEvent> {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { ...this.#headers(true), "x-conversation-id": conversation },
      body: JSON.stringify({
        model,
        messages,
        stream: true,
        stream_options: { include_usage: true },
        ...options,
      }),
      signal,
    });
    yield* events(response);
  }

  /**
   * Reads a conversation's kept answer again from its start: what came while the page was away,
   * then the rest as it comes.
   *
   * @param conversation The conversation's id.
   * @param signal Stops reading.
   * @returns The answer's pieces; an {@link ApiError} 404 when the server no longer has it.
   */
  async *resume(conversation: string, signal: AbortSignal): AsyncGenerator<StreamEvent> {
    const query = new URLSearchParams({ conv_id: conversation, from: "0" });
    yield* events(await fetch(`/v1/stream?${query}`, { headers: this.#headers(false), signal }));
  }

  /**
   * Stops a conversation's kept answer: its generation ends and the server frees the slot.
   *
   * @param conversation The conversation's id.
   */
  async stop(conversation: string): Promise<void> {
    const query = new URLSearchParams({ conv_id: conversation });
    await fetch(`/v1/stream?${query}`, { method: "DELETE", headers: this.#headers(false) })
      .then((response) => response.body?.cancel(), () => {});
  }
}

/** The events of a streamed chat completion's SSE answer. */
async function* events(response: Response): AsyncGenerator<StreamEvent> {
  await check(response);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart()).join("\n");
      if (data === "" || data === "[DONE]") continue;
      yield* eventsOf(JSON.parse(data));
    }
  }
}

interface Chunk {
  choices?: {
    delta?: { content?: string | null; reasoning_content?: string | null };
    finish_reason?: string | null;
  }[];
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
  timings?: { predicted_per_second?: number };
  error?: { message?: string; code?: string };
}

function* eventsOf(chunk: Chunk): Generator<StreamEvent> {
  if (chunk.error) throw new ApiError(500, chunk.error.message ?? "Error", chunk.error.code);
  const choice = chunk.choices?.[0];
  if (choice?.delta?.reasoning_content) {
    yield { kind: "reasoning", text: choice.delta.reasoning_content };
  }
  if (choice?.delta?.content) yield { kind: "content", text: choice.delta.content };
  if (choice?.finish_reason) yield { kind: "finish", reason: choice.finish_reason };
  if (chunk.usage) {
    yield {
      kind: "usage",
      promptTokens: chunk.usage.prompt_tokens,
      completionTokens: chunk.usage.completion_tokens,
    };
  }
  if (chunk.timings?.predicted_per_second !== undefined) {
    yield { kind: "timings", tokensPerSecond: chunk.timings.predicted_per_second };
  }
}

async function check(response: Response): Promise<void> {
  if (response.ok) return;
  let message = `${response.status} ${response.statusText}`;
  let code: string | undefined;
  try {
    const body = await response.json() as { error?: { message?: string; code?: string } };
    message = body.error?.message ?? message;
    code = body.error?.code;
  } catch {
    // Not JSON: keep the status line.
  }
  throw new ApiError(response.status, message, code);
}
