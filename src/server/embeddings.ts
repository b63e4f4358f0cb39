/**
 * `POST /v1/embeddings` in OpenAI's shape: `input` as a string, an array of strings, an array
 * of token ids or an array of token-id arrays; `encoding_format` `float` or `base64`
 * (little-endian float32 bytes); `dimensions` up to the model's own size (shorter vectors are
 * cut and scaled back to unit length, see `shortenEmbedding`). Texts are
 * tokenized as llama-server tokenizes them (special tokens added and parsed), embedded by the
 * model's embeddings context in as few decodes as fit, and normalized to unit length.
 *
 * @module
 */

import { type Embedder, shortenEmbedding } from "../engine/embedder.ts";
import type { LoadedModel } from "../engine/loaded_model.ts";
import type { ModelEntry } from "../models/registry.ts";
import type { ServerContext } from "./context.ts";
import { badRequest, type HttpError } from "./http_error.ts";
import { Fields, readRequestJson, refuseUnknownFields } from "./request_body.ts";
import type { ServedRequest } from "./served_request.ts";

/** Most inputs in one request (OpenAI's limit). */
export const MAX_EMBEDDING_INPUTS = 2048;

/**
 * Most numbers one answer holds, over all its vectors: 2,048 inputs of a 1,024-wide model, about
 * 40 MB of JSON (the answer is built in one piece: 2,048 inputs of a 4,096-wide model took 1.6 s
 * of the event loop for 174 MB).
 */
export const MAX_EMBEDDING_FLOATS = MAX_EMBEDDING_INPUTS * 1024;

/** One input as the request gave it: text to tokenize, or token ids used as given. */
export type EmbeddingInput = string | readonly number[];

/** A model leased for one request, with its embeddings context. */
export interface EmbedderLease {
  entry: ModelEntry;
  loaded: LoadedModel;
  embedder: Embedder;
}

/**
 * Runs work with a model's embedder; the model stays loaded (leased) until the work settles.
 *
 * @param ctx Server state.
 * @param name The requested model (default model when undefined).
 * @param work What to do with it.
 * @returns What the work returns.
 * @example
 * ```ts
 * const size = await withEmbedder(ctx, "nomic-embed", async ({ embedder }) => embedder.dimensions);
 * ```
 */
export async function withEmbedder<T>(
  ctx: ServerContext,
  name: string | undefined,
  work: (lease: EmbedderLease) => Promise<T>,
): Promise<T> {
  using lease = await ctx.registry.acquire(name);
  const embedder = await lease.model.embedder();
  return await work({ entry: lease.entry, loaded: lease.model, embedder });
}

/**
 * Reads OpenAI's `input` field.
 *
 * @param value The field.
 * @returns One entry per input.
 * @throws {HttpError} 400 for an empty, malformed or too long list, or an empty input.
 * @example
 * ```ts
 * embeddingInputs("hi"); // ["hi"]
 * embeddingInputs([1, 2, 3]); // [[1, 2, 3]]: one input of three token ids
 * ```
 */
export function embeddingInputs(value: unknown): EmbeddingInput[] {
  const wrong = () =>
    badRequest(
      '"input" must be a string, an array of strings, an array of token ids, or an array of ' +
        "token-id arrays",
      "input",
    );
  let inputs: EmbeddingInput[];
  if (typeof value === "string") inputs = [value];
  else if (!Array.isArray(value)) throw wrong();
  else if (value.length > 0 && value.every(isTokenId)) inputs = [value as number[]];
  else {
    inputs = value.map((one) => {
      if (typeof one === "string") return one;
      if (Array.isArray(one) && one.every(isTokenId)) return one as number[];
      throw wrong();
    });
  }
  if (inputs.length === 0) throw badRequest('"input" must not be empty', "input");
  if (inputs.length > MAX_EMBEDDING_INPUTS) {
    throw badRequest(
      `At most ${MAX_EMBEDDING_INPUTS} inputs per request (got ${inputs.length})`,
      "input",
    );
  }
  inputs.forEach((input, index) => {
    if (input.length === 0) throw badRequest(`Input ${index} is empty`, "input");
  });
  return inputs;
}

function isTokenId(value: unknown): boolean {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/**
 * Turns inputs into token ids: texts tokenized with special tokens added and parsed (as
 * llama-server does), token ids checked against the vocabulary and the context size.
 *
 * @param lease The model and its embedder.
 * @param inputs The inputs.
 * @param signal Stops tokenizing big texts.
 * @returns The tokens of each input.
 * @throws {HttpError} 400 naming the input that is too long or holds an unknown token id.
 */
export async function tokenizeInputs(
  lease: EmbedderLease,
  inputs: readonly EmbeddingInput[],
  signal?: AbortSignal,
): Promise<Int32Array[]> {
  const { model } = lease.loaded;
  const nVocab = model.nVocab;
  const out: Int32Array[] = [];
  for (const [index, input] of inputs.entries()) {
    let tokens: Int32Array;
    if (typeof input === "string") {
      tokens = await inputTokens(lease, input, `Input ${index}`, signal);
    } else {
      if (input.some((id) => id >= nVocab)) {
        throw badRequest(`Input ${index} holds a token id outside the vocabulary`, "input");
      }
      tokens = Int32Array.from(input);
      checkLength(lease.embedder, tokens, `Input ${index}`, "input");
    }
    out.push(tokens);
  }
  return out;
}

/**
 * The tokens of a text input (special tokens added and parsed, as llama-server does), refused
 * untokenized when its length alone shows it longer than the embeddings context
 * (`Model.fewestTokens`): a text of megabytes takes seconds of a core to tokenize.
 *
 * @param lease The model and its embedder.
 * @param text The input.
 * @param what How a refusal names the input, e.g. `Input 3`.
 * @param signal Stops tokenizing a big text.
 * @returns Its tokens.
 * @throws {HttpError} 400 when it is longer than the embeddings context.
 */
export async function inputTokens(
  lease: EmbedderLease,
  text: string,
  what: string,
  signal?: AbortSignal,
): Promise<Int32Array> {
  refuseLongText(lease, text, what, "input");
  const tokens = await lease.loaded.model.tokenizeAsync(text, { signal });
  checkLength(lease.embedder, tokens, what, "input");
  return tokens;
}

/**
 * Refuses a text whose length alone shows it longer than the embeddings context
 * (`Model.fewestTokens`), before it is tokenized.
 *
 * @param lease The model and its embedder.
 * @param text The text.
 * @param what How a refusal names the input, e.g. `Input 3`.
 * @param param The request field at fault.
 * @throws {HttpError} 400 when it is surely too long.
 */
export function refuseLongText(
  lease: EmbedderLease,
  text: string,
  what: string,
  param: string,
): void {
  const { embedder } = lease;
  const fewest = lease.loaded.model.fewestTokens(text, embedder.contextSize);
  if (fewest > embedder.contextSize) throw tooLong(embedder, `at least ${fewest}`, what, param);
}

/**
 * Refuses an input longer than the embeddings context.
 *
 * @param embedder The embedder.
 * @param tokens The input's tokens.
 * @param what How the message names the input, e.g. `Input 3`.
 * @param param The request field at fault.
 * @throws {HttpError} 400 `context_length_exceeded`.
 */
export function checkLength(
  embedder: Embedder,
  tokens: Int32Array,
  what: string,
  param: string,
): void {
  if (tokens.length > embedder.contextSize) {
    throw tooLong(embedder, `${tokens.length}`, what, param);
  }
}

function tooLong(embedder: Embedder, tokens: string, what: string, param: string): HttpError {
  return badRequest(
    `${what} has ${tokens} tokens, more than the embedding context of ` +
      `${embedder.contextSize}; shorten it or start the server with a larger --ctx-size`,
    param,
  );
}

/**
 * Encodes a vector as OpenAI's `base64` format: little-endian float32 bytes, base64.
 *
 * @param vector The embedding.
 * @returns The base64 text.
 * @example
 * ```ts
 * float32Base64(Float32Array.of(1)); // "AACAPw=="
 * ```
 */
export function float32Base64(vector: Float32Array): string {
  const bytes = new Uint8Array(vector.length * 4);
  const view = new DataView(bytes.buffer);
  vector.forEach((v, i) => view.setFloat32(i * 4, v, true));
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * Refuses a model that makes no embeddings: one that pools nothing, or a reranker.
 *
 * @param lease The model and its embedder.
 * @throws {HttpError} 400 naming `--pooling` or `/v1/rerank`.
 * @example
 * ```ts
 * await withEmbedder(ctx, name, async (lease) => checkPooling(lease));
 * ```
 */
export function checkPooling(lease: EmbedderLease): void {
  const { embedder, entry } = lease;
  if (embedder.pooling === "none") {
    throw badRequest(
      `Model "${entry.name}" pools no embeddings (its pooling type is none); ` +
        "start the server with --pooling mean, cls or last to embed with it",
      "model",
    );
  }
  if (embedder.pooling === "rank") {
    throw badRequest(
      `Model "${entry.name}" is a reranker (pooling type rank); use /v1/rerank`,
      "model",
    );
  }
}

/**
 * Refuses a request whose answer would hold more than {@link MAX_EMBEDDING_FLOATS} numbers.
 *
 * @param inputs How many inputs the request has.
 * @param width The length of each vector answered (`dimensions`, else the model's size).
 * @throws {HttpError} 400 saying how many inputs to send per request.
 * @example
 * ```ts
 * checkAnswerSize(2048, 1024); // fine
 * checkAnswerSize(2048, 4096); // throws: send at most 512 inputs per request
 * ```
 */
export function checkAnswerSize(inputs: number, width: number): void {
  if (inputs * width <= MAX_EMBEDDING_FLOATS) return;
  throw badRequest(
    `The answer to ${inputs} inputs of ${width} dimensions would hold ${inputs * width} ` +
      `numbers, more than the limit of ${MAX_EMBEDDING_FLOATS}; send at most ` +
      `${
        Math.floor(MAX_EMBEDDING_FLOATS / width)
      } inputs per request, or ask for fewer "dimensions"`,
    "input",
  );
}

/**
 * Checks a request's `dimensions` against a model's embedding size: it may shorten the vectors,
 * never lengthen them.
 *
 * @param dimensions The request's `dimensions`, if any.
 * @param size The model's embedding size.
 * @param model The model's name, for the message.
 * @throws {HttpError} 400 when `dimensions` is above the model's size.
 */
export function checkDimensions(dimensions: number | undefined, size: number, model: string) {
  if (dimensions !== undefined && dimensions > size) {
    throw badRequest(
      `Model "${model}" makes embeddings of ${size} dimensions: "dimensions" may be at most ${size}`,
      "dimensions",
    );
  }
}

/**
 * Embeddings shortened to `dimensions` (see `shortenEmbedding`), or as they are without it.
 *
 * @param vectors Unit-length embeddings.
 * @param dimensions The request's `dimensions`, if any (checked by {@link checkDimensions}).
 * @returns The vectors to answer.
 */
export function withDimensions(vectors: Float32Array[], dimensions: number | undefined) {
  return dimensions === undefined ? vectors : vectors.map((v) => shortenEmbedding(v, dimensions));
}

/** The fields `/v1/embeddings` reads; `user` is accepted as OpenAI's clients send it. */
const EMBEDDING_FIELDS = new Set(["model", "input", "encoding_format", "dimensions", "user"]);

/**
 * `POST /v1/embeddings` (also `/embeddings`).
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns The OpenAI list of embeddings.
 * @throws {HttpError} 400 for a bad field, a model that pools nothing (pooling none) or is a
 *   reranker, a `dimensions` other than the model's, an input that is too long, or an answer
 *   that would hold more than {@link MAX_EMBEDDING_FLOATS} numbers.
 */
export async function embeddings(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  refuseUnknownFields(body, EMBEDDING_FIELDS, "/v1/embeddings");
  const fields = new Fields(body);
  const inputs = embeddingInputs(fields.raw("input"));
  const format = fields.string("encoding_format") ?? "float";
  if (format !== "float" && format !== "base64") {
    throw badRequest('"encoding_format" must be "float" or "base64"', "encoding_format");
  }
  const dimensions = fields.number("dimensions", { min: 1, integer: true });
  fields.string("user"); // accepted, as OpenAI's clients send it; nothing is tracked
  return await withEmbedder(ctx, fields.string("model"), async (lease) => {
    const { embedder, entry } = lease;
    checkPooling(lease);
    checkDimensions(dimensions, embedder.dimensions, entry.name);
    checkAnswerSize(inputs.length, dimensions ?? embedder.dimensions);
    const tokens = await tokenizeInputs(lease, inputs, clientGone);
    const vectors = withDimensions(
      await embedder.embed(tokens, { signal: clientGone }),
      dimensions,
    );
    const promptTokens = tokens.reduce((sum, t) => sum + t.length, 0);
    return Response.json({
      object: "list",
      data: vectors.map((vector, index) => ({
        object: "embedding",
        index,
        embedding: format === "base64" ? float32Base64(vector) : Array.from(vector),
      })),
      model: entry.name,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    });
  });
}
