/**
 * Ollama's `POST /api/generate`: a prompt rendered with the model's chat template as one user
 * turn (after `system`, when given), or used as is with `raw: true`; the reply's text comes in
 * `response` and any reasoning in `thinking`. With a `suffix` the prompt is the code before a gap
 * and the reply fills it (a fill-in-the-middle prompt from the model's FIM tokens, as `/infill`
 * builds it; code autocompletion such as Continue's sends it). An empty prompt without a suffix
 * loads (or, with `keep_alive: 0`, unloads) the model. Served under `/ollama` and on the `--ollama-bind` listener; the main
 * port's own `/api/generate` keeps Shimmy's contract.
 *
 * @module
 */

import type { ServerContext } from "../context.ts";
import type { PromptSource } from "../generation_bridge.ts";
import { badRequest } from "../http_error.ts";
import { Fields, readRequestJson, refuseUnlessEmpty } from "../request_body.ts";
import { loadOrUnload } from "./load.ts";
import { resolveOllamaModel } from "./models.ts";
import { type OllamaFields, ollamaFields } from "./options.ts";
import { ollamaReply, type ReplyShape } from "./reply.ts";
import { checkFields } from "./request_checks.ts";
import type { ServedRequest } from "../served_request.ts";

/** The fields `POST /api/generate` accepts; any other is a 400. */
const GENERATE_FIELDS = [
  "model",
  "prompt",
  "system",
  "raw",
  "stream",
  "format",
  "options",
  "keep_alive",
  "think",
  "logprobs",
  "top_logprobs",
  // Refused below unless empty, with the reason.
  "suffix",
  "template",
  "context",
];

/**
 * `POST /api/generate` in Ollama's shape.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns The reply, whole or as NDJSON chunks.
 * @throws {HttpError} 400 for a malformed or unsupported request, 404 for an unknown model.
 * @example
 * ```ts
 * const response = await ollamaGenerate(ctx, new Request(url, { method: "POST", body }), signal);
 * ```
 */
export async function ollamaGenerate(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const arrivedAt = performance.now();
  const body = await readRequestJson(request, ctx.settings);
  checkFields(body, GENERATE_FIELDS, "/api/generate");
  const fields = new Fields(body);
  refuseUnlessEmpty(fields, "template", "templates are set per server with --chat-template");
  const context = fields.raw("context");
  if (context !== undefined && !(Array.isArray(context) && context.length === 0)) {
    throw badRequest(
      '"context" is not supported: send the conversation to /api/chat as "messages"',
      "context",
    );
  }
  const entry = resolveOllamaModel(ctx, body.model);
  const mapped = ollamaFields(body, entry.name);
  const prompt = fields.string("prompt") ?? "";
  if (prompt === "" && !fields.string("suffix")) {
    return await loadOrUnload(ctx, entry.name, mapped, "generate");
  }
  return await ollamaReply(
    ctx,
    {
      model: entry.name,
      request: mapped,
      arrivedAt,
      source: sourceOf(prompt, fields, mapped),
    },
    GENERATE_SHAPE,
    clientGone,
  );
}

/**
 * The prompt as one templated user turn, raw text (`system` needs the template), or with a
 * `suffix` the code before and after a gap, laid out with the model's fill-in-the-middle tokens.
 */
function sourceOf(prompt: string, fields: Fields, mapped: OllamaFields): PromptSource {
  const system = fields.string("system");
  const raw = fields.boolean("raw") ?? false;
  const suffix = fields.string("suffix") ?? "";
  if (suffix !== "") {
    if (system || mapped.template.kwargs) {
      const field = system ? "system" : "think";
      throw badRequest(`"${field}" has no place in a fill-in-the-middle prompt ("suffix")`, field);
    }
    return { kind: "infill", parts: { prefix: prompt, suffix, middle: "", extra: [] } };
  }
  if (raw) {
    if (system) {
      throw badRequest('"system" needs the chat template; leave it out with "raw": true', "system");
    }
    if (mapped.template.kwargs) {
      throw badRequest('"think" needs the chat template; leave it out with "raw": true', "think");
    }
    return { kind: "raw", prompt };
  }
  return {
    kind: "chat",
    messages: [
      ...(system ? [{ role: "system", content: system }] : []),
      { role: "user", content: prompt },
    ],
    template: mapped.template,
    output: { tools: [], choice: "none", parallel: false, reasoningFormat: "auto" },
  };
}

/** Generate chunks: `response` with the piece's text, `thinking` with its reasoning. */
const GENERATE_SHAPE: ReplyShape = {
  piece: (delta) => {
    if (!delta.content && !delta.reasoning_content) return undefined;
    return {
      response: delta.content ?? "",
      ...(delta.reasoning_content ? { thinking: delta.reasoning_content } : {}),
    };
  },
  last: () => ({ response: "" }),
  whole: (output) => ({
    response: output.content ?? "",
    ...(output.reasoning !== undefined ? { thinking: output.reasoning } : {}),
  }),
};
