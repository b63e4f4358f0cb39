/**
 * Anthropic's Messages API: `POST /v1/messages` and `POST /v1/messages/count_tokens`. A request
 * is mapped (`anthropic_request.ts`) onto the same chat path as OpenAI's chat completions:
 * `startGeneration` renders, plans tool calls and reasoning, and generates; the output is read
 * with the same `readChatGeneration` and turned into content blocks (`thinking`, `text`,
 * `tool_use`), whole or as Anthropic's typed SSE events. Errors leave through the one error
 * boundary, in Anthropic's shape.
 *
 * @module
 */

import type { GenerationResult } from "../engine/scheduler.ts";
import { chatPrompt } from "../engine/prompt.ts";
import { type ChatDelta, type ChatOutput, randomAlnum } from "../engine/tools/output_stream.ts";
import { readChatGeneration } from "./chat_stream.ts";
import { type AnthropicRequest, anthropicRequest } from "./anthropic_request.ts";
import type { ServerContext } from "./context.ts";
import { startGeneration, templateOptions } from "./generation_bridge.ts";
import { anthropicErrorBody, HttpError } from "./http_error.ts";
import { readRequestJson } from "./request_body.ts";
import { sseEvent, sseResponse } from "./sse.ts";
import { followClient } from "./stream_body.ts";
import type { ServedRequest } from "./served_request.ts";

/** Anthropic's `stop_reason` values that Shimmy produces. */
export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use";

/** A content block of an answer. */
type ContentBlock =
  | { type: "text"; text: string }
  | { type: "thinking"; thinking: string; signature: string }
  | { type: "tool_use"; id: string; name: string; input: Record<string, unknown> };

/**
 * `POST /v1/messages`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns The message as JSON, or Anthropic's SSE event stream for `stream: true`.
 * @throws {HttpError} 400 for a malformed or unsupported request; engine errors are mapped
 *   by the error boundary.
 * @example
 * ```ts
 * const response = await messages(ctx, new Request(url, { method: "POST", body }), signal);
 * ```
 */
export async function messages(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  const wire = anthropicRequest(body, false, ctx.settings.prefillAssistant ?? true);
  const abort = followClient(clientGone);
  const started = await startGeneration(ctx, wire.fields, wire.source, abort.signal);
  const id = `msg_${randomAlnum(24)}`;
  const model = started.entry.name;

  if (!wire.stream) {
    const { result, output } = await readChatGeneration(started, () => {}, { streaming: false });
    return Response.json({
      id,
      type: "message",
      role: "assistant",
      model,
      content: contentBlocks(output, wire.showThinking),
      ...stopOf(result, wire, output.toolCalls.length),
      usage: usageOf(result),
    });
  }

  return sseResponse(
    async (send) => {
      const event = (type: string, data: Record<string, unknown> = {}) =>
        send(sseEvent(JSON.stringify({ type, ...data }), type));
      // The prompt's size; message_delta splits it into evaluated and cache-read tokens.
      event("message_start", {
        message: {
          id,
          type: "message",
          role: "assistant",
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: started.promptTokens, output_tokens: 0 },
        },
      });
      event("ping");
      const blocks = new BlockEvents(event, wire.showThinking);
      const { result, output } = await readChatGeneration(started, (d) => blocks.delta(d), {
        streaming: true,
      });
      blocks.close();
      event("message_delta", {
        delta: stopOf(result, wire, output.toolCalls.length),
        usage: usageOf(result),
      });
      event("message_stop");
    },
    abort,
    (error, send) => send(sseEvent(JSON.stringify(anthropicErrorBody(error)), "error")),
  );
}

/**
 * `POST /v1/messages/count_tokens`: the prompt's size as `messages` would render it, nothing
 * generated.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns `{"input_tokens": n}`.
 * @throws {HttpError} 400 for a malformed or unsupported request; 404 for an unknown model.
 * @example
 * ```ts
 * const { input_tokens } = await (await countTokens(ctx, request, signal)).json();
 * ```
 */
export async function countTokens(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  const { fields, source } = anthropicRequest(body, true, ctx.settings.prefillAssistant ?? true);
  using lease = await ctx.registry.acquire(fields.string("model"));
  const prepared = await chatPrompt(
    lease.model.model,
    source.messages,
    ctx.settings.chatTemplate,
    source.tools,
    { signal: clientGone, ...templateOptions(ctx, source.template) },
  );
  return Response.json({ input_tokens: prepared.tokens.length });
}

/**
 * Turns chat deltas into Anthropic's block events: `content_block_start`, its
 * `content_block_delta`s and `content_block_stop`, one block at a time, a new block whenever
 * the kind of output changes (thinking, text, each tool call).
 */
class BlockEvents {
  readonly #event: (type: string, data: Record<string, unknown>) => void;
  readonly #showThinking: boolean;
  #index = -1;
  #open: "text" | "thinking" | "tool_use" | undefined;

  constructor(event: (type: string, data: Record<string, unknown>) => void, showThinking: boolean) {
    this.#event = event;
    this.#showThinking = showThinking;
  }

  /** Sends what one chat delta adds. */
  delta(delta: ChatDelta): void {
    if (delta.reasoning_content) {
      this.#start("thinking", { type: "thinking", thinking: "", signature: "" });
      if (this.#showThinking) {
        this.#delta({ type: "thinking_delta", thinking: delta.reasoning_content });
      }
    }
    if (delta.content) {
      this.#start("text", { type: "text", text: "" });
      this.#delta({ type: "text_delta", text: delta.content });
    }
    for (const call of delta.tool_calls ?? []) {
      if (call.id !== undefined) {
        // Each call is its own block; a header always opens a new one.
        this.#close();
        this.#start("tool_use", {
          type: "tool_use",
          id: anthropicToolId(call.id),
          name: call.function.name ?? "",
          input: {},
        });
      }
      if (call.function.arguments) {
        this.#delta({ type: "input_json_delta", partial_json: call.function.arguments });
      }
    }
  }

  /** Closes the open block, if any. */
  close(): void {
    this.#close();
  }

  #start(kind: "text" | "thinking" | "tool_use", block: Record<string, unknown>): void {
    if (this.#open === kind) return;
    this.#close();
    this.#index++;
    this.#open = kind;
    this.#event("content_block_start", { index: this.#index, content_block: block });
  }

  #delta(delta: Record<string, unknown>): void {
    this.#event("content_block_delta", { index: this.#index, delta });
  }

  #close(): void {
    if (this.#open === undefined) return;
    this.#event("content_block_stop", { index: this.#index });
    this.#open = undefined;
  }
}

/** The final output as content blocks: thinking, then text, then each tool call. */
function contentBlocks(output: ChatOutput, showThinking: boolean): ContentBlock[] {
  const blocks: ContentBlock[] = [];
  if (output.reasoning !== undefined) {
    blocks.push({
      type: "thinking",
      thinking: showThinking ? output.reasoning : "",
      signature: "",
    });
  }
  if (output.content) blocks.push({ type: "text", text: output.content });
  for (const call of output.toolCalls) {
    blocks.push({
      type: "tool_use",
      id: anthropicToolId(call.id),
      name: call.function.name,
      input: toolInput(call.function.arguments),
    });
  }
  return blocks;
}

/** A complete call's arguments as the `input` object. */
function toolInput(args: string): Record<string, unknown> {
  const input = args.trim() === "" ? {} : JSON.parse(args);
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new HttpError(500, `The model's tool call arguments are not a JSON object: ${args}`, {
      code: "internal_error",
    });
  }
  return input;
}

/**
 * `stop_reason` and `stop_sequence`: `tool_use` when the output holds complete calls,
 * `max_tokens` when it ran out, `stop_sequence` when one of the request's sequences ended it.
 */
function stopOf(
  result: GenerationResult,
  wire: AnthropicRequest,
  toolCalls: number,
): { stop_reason: StopReason; stop_sequence: string | null } {
  if (result.finishReason === "length") return { stop_reason: "max_tokens", stop_sequence: null };
  if (result.stoppedBy !== undefined && wire.stopSequences.includes(result.stoppedBy)) {
    return { stop_reason: "stop_sequence", stop_sequence: result.stoppedBy };
  }
  return { stop_reason: toolCalls > 0 ? "tool_use" : "end_turn", stop_sequence: null };
}

/**
 * Anthropic's usage: `input_tokens` are the prompt tokens evaluated, `cache_read_input_tokens`
 * those reused from the prefix cache (together the whole prompt, what `count_tokens` counts).
 */
function usageOf(result: GenerationResult) {
  return {
    input_tokens: result.promptTokens - result.cachedTokens,
    output_tokens: result.completionTokens,
    cache_read_input_tokens: result.cachedTokens,
    cache_creation_input_tokens: 0,
  };
}

/** A tool-call id in Anthropic's style (`toolu_…`), the same for a call's stream and message. */
function anthropicToolId(id: string): string {
  return id.startsWith("toolu_") ? id : `toolu_${id.replace(/^call_/, "")}`;
}
