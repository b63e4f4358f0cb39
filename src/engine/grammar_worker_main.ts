/**
 * The script of the grammar-check worker (started by `grammar_worker.ts`): runs
 * {@link validateGrammar} with the default limits on one grammar per message and posts back
 * the summary, or the error as plain data. The model's vocabulary stays on the main thread, so
 * the tokens a grammar names are answered from the job's `answers`; a token without an answer
 * is taken as a single token that does not end generation, and reported in `asked`, so that
 * the host can answer it and check again.
 *
 * It is the entry point of a Web Worker; other modules import only its types.
 *
 * @module
 */

import {
  GrammarError,
  type GrammarErrorKind,
  type GrammarPosition,
  type GrammarSummary,
  validateGrammar,
} from "./gbnf.ts";

/** What the vocabulary says of a token a grammar names. */
export interface TokenAnswer {
  /** The token, by its text (`<|im_end|>`) or id (`<[2]>`). */
  token: string | number;
  /** Whether a text is one token of the vocabulary (ids: true). */
  single: boolean;
  /** Whether the token ends generation. */
  endsGeneration: boolean;
}

/** A check sent to the worker. */
export interface GrammarCheckRequest {
  /** Matches the reply to the job. */
  id: number;
  /** GBNF text. */
  grammar: string;
  /** The vocabulary's answers for the tokens the grammar names, once known. */
  answers: TokenAnswer[];
}

/** An error as it crosses the worker boundary. */
export type SerializedGrammarError =
  | { kind: "grammar"; check: GrammarErrorKind; reason: string; position?: GrammarPosition }
  | { kind: "other"; name: string; message: string };

/** The worker's answer to one {@link GrammarCheckRequest}. */
export interface GrammarCheckReply {
  id: number;
  /** The summary, or why the grammar is refused. */
  verdict: { ok: true; summary: GrammarSummary } | { ok: false; error: SerializedGrammarError };
  /** Tokens the check met that `answers` did not cover. */
  asked: (string | number)[];
}

/**
 * Checks one grammar as {@link GrammarCheckRequest} asks.
 *
 * @param request The grammar and the vocabulary's answers known so far.
 * @returns The verdict and the tokens still to answer.
 * @example
 * ```ts
 * checkGrammarJob({ id: 1, grammar: 'root ::= "a" <|end|>', answers: [] }).asked; // ["<|end|>"]
 * ```
 */
export function checkGrammarJob(request: GrammarCheckRequest): GrammarCheckReply {
  const known = new Map(request.answers.map((answer) => [answer.token, answer]));
  const asked = new Set<string | number>();
  const answer = (token: string | number) => {
    const found = known.get(token);
    if (found === undefined) asked.add(token);
    return found;
  };
  let verdict: GrammarCheckReply["verdict"];
  try {
    const summary = validateGrammar(request.grammar, {}, {
      isSingleToken: (piece) => answer(piece)?.single ?? true,
      endsGeneration: (token) => answer(token)?.endsGeneration ?? false,
    });
    verdict = { ok: true, summary };
  } catch (error) {
    verdict = { ok: false, error: serializeGrammarError(error) };
  }
  return { id: request.id, verdict, asked: [...asked] };
}

/**
 * Turns whatever {@link validateGrammar} threw into plain data.
 *
 * @param error The thrown value.
 * @returns A grammar refusal with its check, reason and place, or another error's name and text.
 */
export function serializeGrammarError(error: unknown): SerializedGrammarError {
  if (error instanceof GrammarError) {
    const { kind: check, reason, position } = error;
    return { kind: "grammar", check, reason, ...(position ? { position } : {}) };
  }
  const { name, message } = error instanceof Error ? error : new Error(String(error));
  return { kind: "other", name, message };
}

/** The worker's global scope, typed just as far as this script uses it. */
interface WorkerScope {
  onmessage: ((event: MessageEvent<GrammarCheckRequest>) => void) | null;
  postMessage(message: GrammarCheckReply): void;
}

if ("WorkerGlobalScope" in globalThis) {
  const scope = globalThis as unknown as WorkerScope;
  scope.onmessage = ({ data }) => scope.postMessage(checkGrammarJob(data));
}
