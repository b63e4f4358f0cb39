/**
 * `POST /infill`: llama-server's fill-in-the-middle route, which editor plugins for code
 * completion call (llama.vim, llama.vscode): `input_prefix` (the code before the cursor),
 * `input_suffix` (after it), `prompt` (the start of the answer) and `input_extra` (other files,
 * `[{filename, text}]`) become a prompt in the model's FIM layout (`engine/fim_prompt.ts`); the
 * answer is `/completion`'s. A model whose vocabulary has no FIM tokens gets a 501, as there.
 *
 * @module
 */

import type { InfillParts } from "../engine/fim_prompt.ts";
import type { ServerContext } from "./context.ts";
import { startChoices, type StartedGeneration } from "./generation_bridge.ts";
import { checkLlamaCompletionFields } from "./generation_request_fields.ts";
import { foldForeignFields } from "./foreign_fields.ts";
import { badRequest } from "./http_error.ts";
import { answerShape, completionAnswer, probabilitiesAsked } from "./llama_completion.ts";
import { Fields, readRequestJson } from "./request_body.ts";
import type { ServedRequest } from "./served_request.ts";
import { followClient } from "./stream_body.ts";

/**
 * `POST /infill`.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @param clientGone Aborts when the client disconnects.
 * @returns The completion as JSON, or an SSE stream of pieces ending in it.
 * @throws {HttpError} 400 for a malformed body, 501 for a model without FIM tokens.
 */
export async function infill(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const body = foldForeignFields(await readRequestJson(request, ctx.settings), "native");
  checkLlamaCompletionFields(body, "/infill");
  const fields = new Fields(body);
  const parts = infillParts(fields);
  const shape = answerShape(fields);
  const abort = followClient(clientGone);
  const source = { kind: "infill", parts, fillCache: true } as const;
  const all = await startChoices(ctx, fields, source, abort.signal, probabilitiesAsked(fields));
  const first = all[0] as StartedGeneration;
  const prompt = first.loaded.model.detokenize(first.prompt, false, true);
  return await completionAnswer(all, prompt, shape, abort);
}

/** Most files in `input_extra`. */
const MAX_EXTRA_FILES = 1024;

/** The code around the gap and the other files, checked. */
function infillParts(fields: Fields): InfillParts {
  const prefix = fields.string("input_prefix");
  if (prefix === undefined) throw badRequest('"input_prefix" is required', "input_prefix");
  const suffix = fields.string("input_suffix");
  if (suffix === undefined) throw badRequest('"input_suffix" is required', "input_suffix");
  const extra = fields.raw("input_extra") ?? [];
  if (!Array.isArray(extra) || extra.length > MAX_EXTRA_FILES) {
    throw badRequest(
      `"input_extra" must be an array of at most ${MAX_EXTRA_FILES} {"filename", "text"} objects`,
      "input_extra",
    );
  }
  return {
    prefix,
    suffix,
    middle: fields.string("prompt") ?? "",
    extra: extra.map((file, i) => extraFile(file, i)),
  };
}

/** One `input_extra` entry: `text`, and `filename` (default `tmp`, as there). */
function extraFile(file: unknown, index: number): { filename: string; text: string } {
  const entry = file as Record<string, unknown> | null;
  const filename = entry?.filename ?? "tmp";
  if (
    typeof entry !== "object" || entry === null || Array.isArray(entry) ||
    typeof entry.text !== "string" || typeof filename !== "string"
  ) {
    throw badRequest(
      `"input_extra[${index}]" must be an object with a string "text" and an optional string ` +
        `"filename"`,
      "input_extra",
    );
  }
  return { filename, text: entry.text };
}
