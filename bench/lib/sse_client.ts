/**
 * The benchmark's HTTP client: one streamed `POST /v1/completions`, with the same body for both
 * servers, read straight from the socket. Every network read is stamped with `performance.now()`
 * as it is delivered, and each SSE event that carries text gets the stamp of the read that
 * completed it. Several events delivered by one read therefore share one time: that clumping is
 * part of what the token gaps ({@link tokenGaps}) are meant to show.
 *
 * @module
 */

/** Upper bound for one streamed request. */
const REQUEST_TIMEOUT_MS = 600_000;

/** What the client saw of one streamed completion; times are `performance.now()` values, ms. */
export interface StreamResult {
  /** The prompt sent. */
  prompt: string;
  /** Just before `fetch()` was called. */
  sentAt: number;
  /** Arrival of the first text event. */
  firstAt: number;
  /** Arrival of the last text event. */
  lastAt: number;
  /** Arrival of every text event, in order (the first is `firstAt`, the last `lastAt`). */
  textAt: number[];
  /** Arrival of `data: [DONE]`. */
  doneAt: number;
  /** Generated tokens, from `usage.completion_tokens`. */
  tokens: number;
  /** Prompt tokens, from `usage.prompt_tokens`. */
  promptTokens: number;
  /** Prompt tokens the server reused from its cache (`timings.cache_n`; 0 if not reported). */
  cachedTokens: number;
  /**
   * The server's own time from starting the prompt to its first token (`timings.prompt_ms`;
   * NaN if not reported): TTFT less the request's way in, its queueing and the token's way out.
   */
  serverPromptMs: number;
  /** The generated text. */
  text: string;
}

/** Options of {@link streamCompletion}. */
export interface StreamOptions {
  /**
   * Called after each text event with the number of text events so far (1 for the first).
   * Default: none.
   */
  onText?: (events: number) => void;
  /**
   * Accept a stream without any text event: a single token may decode to no text (a lone byte
   * of a UTF-8 character). `firstAt` and `lastAt` are then `doneAt`. Default false.
   */
  allowNoText?: boolean;
  /**
   * The HTTP client (its own pool of connections) to send it with. Default: `fetch`'s shared
   * one.
   */
  client?: Deno.HttpClient;
}

/** The fields read from an SSE event of either server. */
interface CompletionChunk {
  choices?: { text?: string }[];
  usage?: { completion_tokens?: number; prompt_tokens?: number } | null;
  timings?: { cache_n?: number; prompt_ms?: number };
  error?: unknown;
}

/**
 * Streams one `POST /v1/completions` (greedy, `ignore_eos`, usage included) and records when
 * each text event arrived.
 *
 * @param url The server's base URL, `http://127.0.0.1:PORT`.
 * @param prompt The prompt.
 * @param maxTokens Tokens to generate; the server must generate exactly this many.
 * @param options Optional progress callback.
 * @returns The arrival times, token counts and text.
 * @throws {Error} for an HTTP error, an error event, a stream without text or `[DONE]`, or a
 * token count other than `maxTokens`.
 * @example
 * ```ts
 * const result = await streamCompletion("http://127.0.0.1:8080", "1 Hello", 64);
 * console.log(result.firstAt - result.sentAt, tokenGaps(result));
 * ```
 */
export async function streamCompletion(
  url: string,
  prompt: string,
  maxTokens: number,
  options: StreamOptions = {},
): Promise<StreamResult> {
  const body = JSON.stringify({
    prompt,
    max_tokens: maxTokens,
    temperature: 0,
    seed: 42,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true },
  });
  const sentAt = performance.now();
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    ...(options.client ? { client: options.client } : {}),
  });
  if (!response.ok || !response.body) {
    const detail = (await response.text()).slice(0, 500);
    throw new Error(`POST ${url}/v1/completions answered ${response.status}: ${detail}`);
  }
  const result: StreamResult = {
    prompt,
    sentAt,
    firstAt: 0,
    lastAt: 0,
    textAt: [],
    doneAt: 0,
    tokens: -1,
    promptTokens: -1,
    cachedTokens: 0,
    serverPromptMs: NaN,
    text: "",
  };
  let pending = "";
  const decoder = new TextDecoder();
  const reader = response.body.getReader();
  for (;;) {
    const read = await reader.read();
    const now = performance.now();
    pending += read.done ? decoder.decode() : decoder.decode(read.value, { stream: true });
    const lines = pending.split("\n");
    pending = read.done ? "" : lines.pop() ?? "";
    for (const line of lines) {
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") {
        result.doneAt = now;
        continue;
      }
      const chunk = JSON.parse(data) as CompletionChunk;
      if (chunk.error) {
        throw new Error(`${url} sent an error event: ${JSON.stringify(chunk.error)}`);
      }
      const piece = chunk.choices?.[0]?.text ?? "";
      if (piece !== "") {
        result.textAt.push(now);
        result.text += piece;
        options.onText?.(result.textAt.length);
      }
      if (chunk.usage) {
        result.tokens = chunk.usage.completion_tokens ?? -1;
        result.promptTokens = chunk.usage.prompt_tokens ?? -1;
      }
      result.cachedTokens = chunk.timings?.cache_n ?? result.cachedTokens;
      result.serverPromptMs = chunk.timings?.prompt_ms ?? result.serverPromptMs;
    }
    if (read.done) break;
  }
  const noText = options.allowNoText ? result.doneAt : undefined;
  const first = result.textAt[0] ?? noText;
  const last = result.textAt[result.textAt.length - 1] ?? noText;
  if (result.doneAt === 0 || first === undefined || last === undefined) {
    throw new Error(`${url} ended the stream without text or without "data: [DONE]"`);
  }
  if (result.tokens !== maxTokens) {
    throw new Error(
      `${url} generated ${result.tokens} tokens instead of ${maxTokens} (with ignore_eos): ` +
        "the work would differ between the servers; check --ctx-size",
    );
  }
  return { ...result, firstAt: first, lastAt: last };
}

/**
 * The gaps between consecutive text events of one stream, in ms. The first token is left out:
 * its time is the TTFT. Events delivered by one network read have a gap of 0.
 *
 * @param result A finished stream.
 * @returns One gap per text event after the first.
 * @example
 * ```ts
 * tokenGaps({ ...result, textAt: [100, 110, 110, 125] }); // [10, 0, 15]
 * ```
 */
export function tokenGaps(result: Pick<StreamResult, "textAt">): number[] {
  return result.textAt.slice(1).map((t, i) => t - (result.textAt[i] as number));
}
