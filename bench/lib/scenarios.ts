/**
 * What is measured on one running server. A concurrency level sends K streamed requests at once.
 * The interference scenario measures {@link INTERFERENCE_STREAMS} decoding streams twice: alone,
 * and with one extra request whose prompt is about {@link INTERFERENCE_PROMPT_TOKENS} tokens
 * (and `max_tokens` 1), sent as soon as every stream has received
 * {@link INTERFERENCE_AFTER_TOKENS} text events. Evaluating that prompt competes with the
 * streams' decode steps, which shows in their token gaps. Warm-up requests come before either.
 *
 * @module
 */

import type { PromptSequence } from "./prompts.ts";
import { type InterferenceSample, type LevelSample, levelSample } from "./samples.ts";
import { streamCompletion, type StreamResult } from "./sse_client.ts";

/** Decoding streams in the interference scenario. */
export const INTERFERENCE_STREAMS = 4;
/** Slots the interference scenario needs: one per stream and one for the long prompt. */
export const INTERFERENCE_SLOTS = INTERFERENCE_STREAMS + 1;
/** Tokens of the long prompt in the interference scenario. */
export const INTERFERENCE_PROMPT_TOKENS = 4000;
/** Text events every stream has received when the long prompt is sent. */
export const INTERFERENCE_AFTER_TOKENS = 20;
/** Context per request the interference scenario needs: the long prompt, its token, a margin. */
export const INTERFERENCE_CTX_SIZE = 4200;
/** Tokens per warm-up request. */
export const WARMUP_TOKENS = 16;

/** Options of {@link warmUp}. */
export interface WarmUpOptions {
  /** Sequential warm-up requests. */
  requests: number;
  /** Requests of the concurrent burst after them (one per slot); 0 for none. */
  burst: number;
  /** Tokens per warm-up request; at most {@link WARMUP_TOKENS} are used. */
  tokens: number;
  /** Also evaluate one long prompt (of this many tokens, 1 token generated). Default: none. */
  longPromptTokens?: number;
}

/**
 * Warms a server up: sequential requests, then a concurrent burst, then optionally one long
 * prompt. Nothing is measured. Prompts start with `Warm-up`, so they share no prefix with the
 * measured ones.
 *
 * @param url The server's base URL.
 * @param prompts The warm-up prompt sequence.
 * @param options How much to send.
 * @returns When every warm-up request has finished.
 * @example
 * ```ts
 * await warmUp(server.url, new PromptSequence(), { requests: 2, burst: 8, tokens: 128 });
 * ```
 */
export async function warmUp(
  url: string,
  prompts: PromptSequence,
  options: WarmUpOptions,
): Promise<void> {
  const tokens = Math.min(WARMUP_TOKENS, options.tokens);
  const send = (prompt: string, n = tokens) => streamCompletion(url, `Warm-up ${prompt}`, n);
  for (let i = 0; i < options.requests; i++) await send(prompts.next());
  const burst = Array.from({ length: options.burst }, () => prompts.next());
  await Promise.all(burst.map((p) => send(p)));
  if (options.longPromptTokens !== undefined) await send(prompts.next(options.longPromptTokens), 1);
}

/**
 * Measures one concurrency level once: `streams` requests sent at once.
 *
 * @param url The server's base URL.
 * @param streams Concurrent requests.
 * @param tokens Tokens per request.
 * @param prompts The measured prompt sequence.
 * @param staggered The i-th of n requests generates `tokens * i / n` (ending one by one).
 * @returns The sample.
 * @example
 * ```ts
 * const sample = await measureLevel(server.url, 4, 128, new PromptSequence());
 * ```
 */
export async function measureLevel(
  url: string,
  streams: number,
  tokens: number,
  prompts: PromptSequence,
  staggered = false,
): Promise<LevelSample> {
  const texts = Array.from({ length: streams }, () => prompts.next());
  const tokensOf = (i: number) =>
    staggered ? Math.max(2, Math.round(tokens * (i + 1) / streams)) : tokens;
  return levelSample(
    await Promise.all(texts.map((p, i) => streamCompletion(url, p, tokensOf(i)))),
  );
}

/**
 * Runs the interference scenario once: {@link INTERFERENCE_STREAMS} streams alone, then the same
 * number of streams with a long prompt sent once each has {@link INTERFERENCE_AFTER_TOKENS}
 * text events.
 *
 * @param url The server's base URL.
 * @param tokens Tokens per stream; more than {@link INTERFERENCE_AFTER_TOKENS}.
 * @param prompts The measured prompt sequence; the long prompt is numbered from it too.
 * @returns Both variants and the long prompt's numbers.
 * @throws {Error} when a request fails, or the streams end before the long prompt could be sent.
 * @example
 * ```ts
 * const sample = await measureInterference(server.url, 256, new PromptSequence());
 * console.log(sample.withLongPrompt.gaps.p99 / sample.alone.gaps.p99);
 * ```
 */
export async function measureInterference(
  url: string,
  tokens: number,
  prompts: PromptSequence,
): Promise<InterferenceSample> {
  const alone = await measureLevel(url, INTERFERENCE_STREAMS, tokens, prompts);
  const texts = Array.from({ length: INTERFERENCE_STREAMS }, () => prompts.next());
  const longPrompt = prompts.next(INTERFERENCE_PROMPT_TOKENS);
  const received = texts.map(() => 0);
  let long: Promise<StreamResult> | undefined;
  let sentAt = 0;
  let sentAfter = 0;
  const onText = (stream: number) => (events: number) => {
    received[stream] = events;
    if (long || Math.min(...received) < INTERFERENCE_AFTER_TOKENS) return;
    sentAt = performance.now();
    sentAfter = Math.min(...received);
    long = streamCompletion(url, longPrompt, 1, { allowNoText: true });
    long.catch(() => {}); // awaited below; do not let it count as unhandled meanwhile
  };
  const results = await Promise.all(
    texts.map((p, i) => streamCompletion(url, p, tokens, { onText: onText(i) })),
  );
  if (!long) {
    throw new Error(
      `The streams ended before each had ${INTERFERENCE_AFTER_TOKENS} tokens: use more --tokens`,
    );
  }
  const longResult = await long;
  const end = Math.min(longResult.firstAt, ...results.map((r) => r.lastAt));
  const during = results.flatMap((r) => r.textAt.filter((t) => t > sentAt && t <= end)).length;
  return {
    alone,
    withLongPrompt: levelSample(results),
    longPrompt: {
      promptTokens: longResult.promptTokens,
      sentAfterTokens: sentAfter,
      sentAtMs: sentAt - Math.min(...results.map((r) => r.firstAt)),
      ttftMs: longResult.firstAt - longResult.sentAt,
      streamsTpsDuring: end > sentAt ? during / ((end - sentAt) / 1000) : NaN,
    },
  };
}
