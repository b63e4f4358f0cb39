/**
 * Ollama's `POST /api/chat`: messages (with `thinking`, `tool_calls` whose `arguments` are
 * objects, and `tool` turns named by `tool_name`) become the messages chat templates take,
 * `tools` the same tool specs as OpenAI's, and the reply comes back as `message` chunks:
 * `content`, `thinking`, and complete `tool_calls`. Ollama has no `tool_choice`; Shimmy takes
 * OpenAI's (`"auto"`, `"none"`, `"required"`, `{"type":"function","function":{"name"}}`) as
 * an extension, and without it the model decides (a call it starts is grammar-constrained).
 * An empty `messages` loads the model (or, with `keep_alive: 0`, unloads it), as in Ollama.
 *
 * @module
 */

import type { TemplateMessage } from "../../engine/templates.ts";
import type { ChatOutput, ToolCallMessage } from "../../engine/tools/output_stream.ts";
import type { ServerContext } from "../context.ts";
import { continuedPart } from "../chat_continuation.ts";
import { badRequest, HttpError } from "../http_error.ts";
import { Fields, readRequestJson } from "../request_body.ts";
import { chatOutputRequest } from "../tool_calls.ts";
import { loadOrUnload } from "./load.ts";
import { resolveOllamaModel } from "./models.ts";
import { ollamaFields } from "./options.ts";
import { ollamaReply, type ReplyShape } from "./reply.ts";
import { checkFields, refuseImages } from "./request_checks.ts";
import type { ServedRequest } from "../served_request.ts";
import { isObject } from "../../util/objects.ts";

/** The fields `POST /api/chat` accepts; any other is a 400. */
const CHAT_FIELDS = [
  "model",
  "messages",
  "stream",
  "format",
  "options",
  "keep_alive",
  "think",
  "tools",
  "tool_choice",
  "logprobs",
  "top_logprobs",
];

/**
 * `POST /api/chat`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns The reply, whole or as NDJSON chunks.
 * @throws {HttpError} 400 for a malformed or unsupported request, 404 for an unknown model.
 * @example
 * ```ts
 * const response = await ollamaChat(ctx, new Request(url, { method: "POST", body }), signal);
 * ```
 */
export async function ollamaChat(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const arrivedAt = performance.now();
  const body = await readRequestJson(request, ctx.settings);
  checkFields(body, CHAT_FIELDS, "/api/chat");
  const entry = resolveOllamaModel(ctx, body.model);
  const mapped = ollamaFields(body, entry.name);
  const raw = body.messages ?? [];
  if (!Array.isArray(raw)) throw badRequest('"messages" must be an array', "messages");
  if (raw.length === 0) return await loadOrUnload(ctx, entry.name, mapped, "chat");
  const output = chatOutputRequest(
    new Fields({ tools: body.tools, tool_choice: body.tool_choice }),
  );
  const calling = output.tools.length > 0 && output.choice !== "none";
  const messages = linkToolResults(raw.map(templateMessage));
  // A last message from the assistant is continued (prefill): the answer is what the model adds.
  const continued = (ctx.settings.prefillAssistant ?? true) && messages.at(-1)?.role === "assistant"
    ? continuedPart(messages)
    : undefined;
  return await ollamaReply(
    ctx,
    {
      model: entry.name,
      request: mapped,
      arrivedAt,
      source: {
        kind: "chat",
        messages,
        ...(calling ? { tools: body.tools as unknown[] } : {}),
        template: { ...mapped.template, ...(continued ? { continueFinal: continued } : {}) },
        output,
      },
    },
    CHAT_SHAPE,
    clientGone,
  );
}

/** Chat chunks: `message` with the piece's content or thinking; the calls come whole. */
const CHAT_SHAPE: ReplyShape = {
  piece: (delta) => {
    if (!delta.content && !delta.reasoning_content) return undefined;
    return {
      message: {
        role: "assistant",
        content: delta.content ?? "",
        ...(delta.reasoning_content ? { thinking: delta.reasoning_content } : {}),
      },
    };
  },
  last: (output) => ({
    message: { role: "assistant", content: "", ...toolCallsOf(output) },
  }),
  whole: (output) => ({
    message: {
      role: "assistant",
      content: output.content ?? "",
      ...(output.reasoning !== undefined ? { thinking: output.reasoning } : {}),
      ...toolCallsOf(output),
    },
  }),
};

function toolCallsOf(output: ChatOutput): { tool_calls?: unknown[] } {
  if (output.toolCalls.length === 0) return {};
  return { tool_calls: output.toolCalls.map(ollamaToolCall) };
}

/** A call in Ollama's shape: its `arguments` an object. */
function ollamaToolCall(call: ToolCallMessage, index: number) {
  const args = call.function.arguments.trim() === "" ? {} : JSON.parse(call.function.arguments);
  if (typeof args !== "object" || args === null || Array.isArray(args)) {
    throw new HttpError(
      500,
      `The model's tool call arguments are not a JSON object: ${call.function.arguments}`,
      { code: "internal_error" },
    );
  }
  return { id: call.id, function: { index, name: call.function.name, arguments: args } };
}

/** An Ollama message as a template message. */
function templateMessage(message: unknown, i: number): TemplateMessage {
  const where = `messages[${i}]`;
  if (!isObject(message)) throw badRequest(`${where} must be an object`, "messages");
  const {
    role,
    content,
    thinking,
    tool_calls: calls,
    tool_name: toolName,
    tool_call_id: callId,
    images,
  } = message;
  if (typeof role !== "string" || role === "") {
    throw badRequest(`${where}.role must be a string`, "messages");
  }
  refuseImages(images, `${where}.images`);
  if (content !== undefined && content !== null && typeof content !== "string") {
    throw badRequest(`${where}.content must be a string`, "messages");
  }
  if (thinking !== undefined && thinking !== null && typeof thinking !== "string") {
    throw badRequest(`${where}.thinking must be a string`, "messages");
  }
  if (toolName !== undefined && toolName !== null && typeof toolName !== "string") {
    throw badRequest(`${where}.tool_name must be a string`, "messages");
  }
  if (callId !== undefined && callId !== null && typeof callId !== "string") {
    throw badRequest(`${where}.tool_call_id must be a string`, "messages");
  }
  return {
    role,
    content: content ?? "",
    ...(typeof thinking === "string" && thinking !== "" ? { reasoning_content: thinking } : {}),
    ...(calls !== undefined && calls !== null ? { tool_calls: templateCalls(calls, i) } : {}),
    ...(typeof toolName === "string" ? { name: toolName } : {}),
    ...(typeof callId === "string" ? { tool_call_id: callId } : {}),
  };
}

/**
 * Gives each tool result the id of the call it answers. Ollama's clients send results with the
 * tool's name only (`tool_name`), and templates that pair results with calls by id (Mistral's,
 * Command R7B's) raised on them: a result answers the first call of the assistant turn before it
 * that has its name and no result yet (any such call when it names none).
 */
function linkToolResults(messages: TemplateMessage[]): TemplateMessage[] {
  let open: { id: string; name: string }[] = [];
  return messages.map((message, i) => {
    if (message.role === "assistant") {
      open = (message.tool_calls ?? []).map((call) => {
        const { id, function: fn } = call as { id: string; function: { name: string } };
        return { id, name: fn.name };
      });
      return message;
    }
    if (message.role !== "tool") return message;
    const at = message.tool_call_id !== undefined
      ? open.findIndex((call) => call.id === message.tool_call_id)
      : open.findIndex((call) => message.name === undefined || call.name === message.name);
    // A result that answers no call still gets an id, of its own, for templates that need one.
    if (at < 0) return { ...message, tool_call_id: message.tool_call_id ?? `result_${i}` };
    const [answered] = open.splice(at, 1);
    return { ...message, tool_call_id: answered!.id };
  });
}

/** An assistant turn's `tool_calls` in the OpenAI shape templates take (`arguments` as JSON). */
function templateCalls(calls: unknown, i: number): unknown[] {
  const where = `messages[${i}]`;
  if (!Array.isArray(calls)) throw badRequest(`${where}.tool_calls must be an array`, "messages");
  return calls.map((call, j) => {
    const fn = isObject(call) ? call.function : undefined;
    if (!isObject(fn) || typeof fn.name !== "string") {
      throw badRequest(
        `${where}.tool_calls[${j}] must be {"function": {"name", "arguments": {…}}}`,
        "messages",
      );
    }
    const args = fn.arguments ?? {};
    if (!isObject(args)) {
      throw badRequest(
        `${where}.tool_calls[${j}].function.arguments must be an object`,
        "messages",
      );
    }
    // Ollama's calls have no id: one unique in the conversation, for templates that pair results.
    const id = isObject(call) && typeof call.id === "string" ? call.id : `call_${i}_${j}`;
    return { id, type: "function", function: { name: fn.name, arguments: JSON.stringify(args) } };
  });
}
