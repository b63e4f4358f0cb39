/**
 * `POST /tokenize` and `POST /detokenize`, with llama-server's routes and shapes, so scripts and
 * clients that count or inspect tokens through llama-server work unchanged.
 *
 * - `/tokenize`: `{"content", "add_special"?, "parse_special"?, "with_pieces"?, "model"?}` →
 *   `{"tokens": [ids]}`, or with `with_pieces` `{"tokens": [{"id", "piece"}]}`, a piece being its
 *   text, or its bytes where they are not whole UTF-8. `content` is a string, or an array of strings
 *   and token ids (only a leading string gets BOS with `add_special`). `add_special` defaults to
 *   false and `parse_special` (special tokens written as text) to true, as there.
 * - `/detokenize`: `{"tokens": [ids], "model"?}` → `{"content"}`: the tokens' pieces, special
 *   tokens written out, bytes that are not whole UTF-8 as U+FFFD.
 *
 * @module
 */

import { concatTokens } from "../util/arrays.ts";
import type { LoadedModel } from "../engine/loaded_model.ts";
import type { ServerContext } from "./context.ts";
import { badRequest } from "./http_error.ts";
import { Fields, readRequestJson, refuseUnknownFields } from "./request_body.ts";
import type { ServedRequest } from "./served_request.ts";
import { concatBytes } from "../util/bytes.ts";

type Model = LoadedModel["model"];

const TOKENIZE_FIELDS = new Set([
  "model",
  "content",
  "add_special",
  "parse_special",
  "with_pieces",
]);
const DETOKENIZE_FIELDS = new Set(["model", "tokens"]);

/** One token of `with_pieces`: its text, or its bytes where they are not whole UTF-8. */
interface TokenPiece {
  id: number;
  piece: string | number[];
}

/**
 * `POST /tokenize`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects (a long text stops between pieces).
 * @returns `{"tokens": […]}`.
 * @throws {HttpError} 400 for a malformed body or a token id outside the vocabulary.
 */
export async function tokenize(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  refuseUnknownFields(body, TOKENIZE_FIELDS, "/tokenize");
  const fields = new Fields(body);
  const addSpecial = fields.boolean("add_special") ?? false;
  const parseSpecial = fields.boolean("parse_special") ?? true;
  const withPieces = fields.boolean("with_pieces") ?? false;
  const parts = contentParts(fields.raw("content"));
  using lease = await ctx.registry.acquire(fields.string("model"));
  const model = lease.model.model;
  const tokenParts: ArrayLike<number>[] = [];
  for (const [i, part] of parts.entries()) {
    if (typeof part === "number") {
      tokenParts.push([checkedToken(model, part, "content")]);
      continue;
    }
    const options = { addSpecial: addSpecial && i === 0, parseSpecial, signal: clientGone };
    tokenParts.push(await model.tokenizeAsync(part, options));
  }
  const tokens = concatTokens(tokenParts);
  if (!withPieces) {
    return tokenListResponse(tokens.length, (start, end) => tokens.subarray(start, end).join(","));
  }
  const pieces = await eachToken(tokens, (id) => pieceOf(model, id), clientGone);
  return tokenListResponse(tokens.length, (start, end) => {
    const share: TokenPiece[] = [];
    for (let i = start; i < end; i++) {
      share.push({ id: tokens[i] as number, piece: pieces[i] as string | number[] });
    }
    return JSON.stringify(share).slice(1, -1);
  });
}

/**
 * `{"tokens": [...]}`, its items written a share per turn of the event loop as the client reads
 * them: 2.3 million ids (an 8 MB text) had taken 230 ms to turn into one JSON string, with every
 * stream waiting.
 *
 * @param count How many items.
 * @param share The items from `start` to `end` as JSON, without the brackets.
 * @returns The answer.
 */
function tokenListResponse(
  count: number,
  share: (start: number, end: number) => string,
): Response {
  if (count <= TOKENS_PER_TURN) return new Response(`{"tokens":[${share(0, count)}]}`, JSON_TYPE);
  const encoder = new TextEncoder();
  let start = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (start >= count) {
        controller.enqueue(encoder.encode("]}"));
        controller.close();
        return;
      }
      const end = Math.min(count, start + TOKENS_PER_TURN);
      controller.enqueue(encoder.encode((start === 0 ? '{"tokens":[' : ",") + share(start, end)));
      start = end;
    },
  });
  return new Response(body, JSON_TYPE);
}

const JSON_TYPE = { headers: { "content-type": "application/json" } };

/**
 * `POST /detokenize`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects (a long list stops between shares).
 * @returns `{"content": "…"}`.
 * @throws {HttpError} 400 for a malformed body or a token id outside the vocabulary.
 */
export async function detokenize(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = await readRequestJson(request, ctx.settings);
  refuseUnknownFields(body, DETOKENIZE_FIELDS, "/detokenize");
  const fields = new Fields(body);
  const ids = fields.raw("tokens") ?? [];
  if (!Array.isArray(ids)) throw badRequest('"tokens" must be an array of token ids', "tokens");
  using lease = await ctx.registry.acquire(fields.string("model"));
  const model = lease.model.model;
  const checked = ids.map((id) => checkedToken(model, id, "tokens"));
  const pieces = await eachToken(checked, (id) => model.tokenBytes(id, true), clientGone);
  return Response.json({ content: new TextDecoder().decode(concatBytes(pieces)) });
}

/** Tokens handled between two turns of the event loop. */
const TOKENS_PER_TURN = 8192;

/**
 * A value per token, computed once per distinct token of the request, a share of them per turn
 * of the event loop: a million ids had held every stream and `/health` for seconds.
 *
 * @param ids The token ids.
 * @param valueOf The value of one token (its piece).
 * @param signal Stops between shares when the client has gone.
 * @returns The values, in the order of `ids`.
 */
async function eachToken<T>(
  ids: ArrayLike<number>,
  valueOf: (id: number) => T,
  signal: AbortSignal,
): Promise<T[]> {
  const known = new Map<number, T>();
  const values: T[] = new Array(ids.length);
  for (let start = 0; start < ids.length; start += TOKENS_PER_TURN) {
    if (start > 0) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      signal.throwIfAborted();
    }
    const end = Math.min(ids.length, start + TOKENS_PER_TURN);
    for (let i = start; i < end; i++) {
      const id = ids[i] as number;
      let value = known.get(id);
      if (value === undefined) {
        value = valueOf(id);
        known.set(id, value);
      }
      values[i] = value;
    }
  }
  return values;
}

/** `content` as its strings and token ids, in order. */
function contentParts(content: unknown): (string | number)[] {
  if (typeof content === "string") return [content];
  if (
    Array.isArray(content) && content.every((p) => typeof p === "string" || typeof p === "number")
  ) {
    return content;
  }
  throw badRequest(
    '"content" must be a string, or an array of strings and token ids',
    "content",
  );
}

/** A token id of this model's vocabulary, or a 400 naming the field it came in. */
function checkedToken(model: Model, id: unknown, field: string): number {
  if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= model.nVocab) {
    throw badRequest(
      `"${field}" holds ${JSON.stringify(id)}, which is not a token id of this model ` +
        `(0 to ${model.nVocab - 1})`,
      field,
    );
  }
  return id;
}

/** Decodes only whole UTF-8, throwing otherwise (one for every piece of a request). */
const WHOLE_UTF8 = new TextDecoder("utf-8", { fatal: true });

/** A token's text, or its bytes where they are not whole UTF-8 (llama-server's rule). */
function pieceOf(model: Model, id: number): string | number[] {
  const bytes = model.tokenBytes(id, true);
  try {
    return WHOLE_UTF8.decode(bytes);
  } catch {
    return [...bytes];
  }
}
