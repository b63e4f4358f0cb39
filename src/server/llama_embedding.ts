/**
 * `POST /embedding`: llama-server's own (not OpenAI's) embedding route, of llama.cpp's curl
 * examples: `{"content": "…"}` (a string, strings, token ids, or arrays of ids; `input` works
 * too) answers `[{"index": 0, "embedding": [[…]]}]`, one row per input for a pooled model.
 * `embd_normalize` is 2 (unit length, the default) or -1 (as the model gives them); llama.cpp's
 * other norms are a 400, and so is a model that pools nothing (llama-server answers per-token
 * rows there).
 *
 * @module
 */

import type { ServerContext } from "./context.ts";
import { checkPooling, embeddingInputs, tokenizeInputs, withEmbedder } from "./embeddings.ts";
import { badRequest } from "./http_error.ts";
import { Fields, readRequestJson, refuseUnknownFields } from "./request_body.ts";
import type { ServedRequest } from "./served_request.ts";

const FIELDS = new Set(["model", "content", "input", "embd_normalize"]);

/**
 * `POST /embedding`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns The embeddings, in llama-server's shape.
 * @throws {HttpError} 400 for a malformed body, an unsupported norm, or a model without pooling.
 */
export async function llamaEmbedding(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  refuseUnknownFields(body, FIELDS, "/embedding");
  const fields = new Fields(body);
  const given = fields.raw("input") ?? fields.raw("content");
  if (given === undefined) throw badRequest('"content" (or "input") is required', "content");
  const inputs = embeddingInputs(given);
  const norm = fields.number("embd_normalize", { integer: true }) ?? 2;
  if (norm !== 2 && norm !== -1) {
    throw badRequest(
      '"embd_normalize" must be 2 (unit length) or -1 (none); other norms are not supported',
      "embd_normalize",
    );
  }
  return await withEmbedder(ctx, fields.string("model"), async (lease) => {
    checkPooling(lease);
    const tokens = await tokenizeInputs(lease, inputs, clientGone);
    const vectors = await lease.embedder.embed(tokens, {
      signal: clientGone,
      normalize: norm === 2,
    });
    return Response.json(
      vectors.map((vector, index) => ({ index, embedding: [Array.from(vector)] })),
    );
  });
}
