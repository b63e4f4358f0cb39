/**
 * `POST /v1/rerank` (also `/rerank`, and llama-server's `/v1/reranking` spelling) in the
 * Jina/Cohere shape: `{model, query, documents, top_n?, return_documents?}` →
 * `{model, object: "list", results: [{index, relevance_score, document?}], usage}`, best first.
 * Only a reranker answers (a model whose pooling type is `rank`); each query–document pair is
 * formatted as llama-server formats it (see `rerank_prompt.ts`) and all pairs are scored in as
 * few decodes as fit. The score is llama.cpp's raw classifier output, as llama-server reports it.
 *
 * @module
 */

import { type RerankTokenizer, rerankTokens } from "../engine/rerank_prompt.ts";
import { tokenizeText } from "../engine/prompt.ts";
import type { ServerContext } from "./context.ts";
import { checkLength, MAX_EMBEDDING_INPUTS, refuseLongText, withEmbedder } from "./embeddings.ts";
import { badRequest } from "./http_error.ts";
import { Fields, readRequestJson, refuseUnknownFields } from "./request_body.ts";
import type { ServedRequest } from "./served_request.ts";

/** Most documents in one request. */
export const MAX_RERANK_DOCUMENTS = MAX_EMBEDDING_INPUTS;

function documentsOf(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every((d) => typeof d === "string")) {
    throw badRequest('"documents" must be a non-empty array of strings', "documents");
  }
  if (value.length > MAX_RERANK_DOCUMENTS) {
    throw badRequest(
      `At most ${MAX_RERANK_DOCUMENTS} documents per request (got ${value.length})`,
      "documents",
    );
  }
  return value;
}

/** The fields `/v1/rerank` reads. */
const RERANK_FIELDS = new Set(["model", "query", "documents", "top_n", "return_documents"]);

/**
 * `POST /v1/rerank`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns The ranked documents.
 * @throws {HttpError} 400 for a bad field, a model that is not a reranker, or a pair that
 *   does not fit the context.
 */
export async function rerank(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  refuseUnknownFields(body, RERANK_FIELDS, "/v1/rerank");
  const fields = new Fields(body);
  const query = fields.string("query");
  if (query === undefined) throw badRequest('"query" must be a string', "query");
  const documents = documentsOf(fields.raw("documents"));
  const topN = fields.number("top_n", { min: 1, integer: true }) ?? documents.length;
  const returnDocuments = fields.boolean("return_documents") ?? false;
  return await withEmbedder(ctx, fields.string("model"), async (lease) => {
    const { embedder, entry, loaded } = lease;
    if (embedder.pooling !== "rank") {
      throw badRequest(
        `Model "${entry.name}" is not a reranker (its pooling type is ${embedder.pooling}, not ` +
          "rank); rerank with a reranker model",
        "model",
      );
    }
    // Off the event loop: a 7 MB document had held every stream and /health for seconds.
    const tokenize: RerankTokenizer = (text, options) =>
      tokenizeText(loaded.model, text, options, { signal: clientGone });
    const pairs: Int32Array[] = [];
    for (const [index, document] of documents.entries()) {
      const what = `The query with document ${index}`;
      for (const text of [query, document]) refuseLongText(lease, text, what, "documents");
      const tokens = await rerankTokens(loaded.model, query, document, tokenize);
      checkLength(embedder, tokens, what, "documents");
      pairs.push(tokens);
    }
    const scores = await embedder.rank(pairs, clientGone);
    const promptTokens = pairs.reduce((sum, t) => sum + t.length, 0);
    const results = scores
      .map((score, index) => ({
        index,
        relevance_score: score,
        ...(returnDocuments ? { document: { text: documents[index] } } : {}),
      }))
      .sort((a, b) => b.relevance_score - a.relevance_score)
      .slice(0, topN);
    return Response.json({
      model: entry.name,
      object: "list",
      results,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    });
  });
}
