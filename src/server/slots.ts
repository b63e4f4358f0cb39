/**
 * `GET /slots`: llama-server's view of its slots, which load balancers and dashboards poll: each
 * slot's `id`, `n_ctx` and `is_processing`, and for a busy one how far its request is
 * (`n_prompt_tokens`, `n_prompt_tokens_processed`, `n_prompt_tokens_cache`, `next_token`). The
 * requests' prompts and outputs are not shown (llama-server shows them; here one client never
 * reads another's). `?fail_on_no_slot=1` answers 503 when every slot is busy. `?model=NAME` picks
 * a model; without it, the one a request that names none gets. A model not loaded has no slots
 * yet: an empty list, never a load. `POST /slots/N?action=erase` empties slot N's cache (once
 * its request ends, as llama-server waits for it), so the next request there evaluates its whole
 * prompt: what benchmarks and agents use for cold runs. With `--slot-save-path DIR`,
 * `?action=save` writes a slot's cache to a file in DIR and `?action=restore` reads one back, so a
 * long prompt's evaluation outlives the server (an agent's system prompt and tools, a document).
 * The files together stay within `--slot-save-max-size` (`slot_folder.ts`).
 *
 * @module
 */

import { join } from "node:path";
import type { ServerContext } from "./context.ts";
import { badRequest, HttpError } from "./http_error.ts";
import { Fields, readRequestJson, refuseUnknownFields } from "./request_body.ts";
import { plainFileNameProblem } from "../util/plain_file_name.ts";
import { DEFAULT_SLOT_SAVE_MAX_BYTES, SlotFolder } from "./slot_folder.ts";
import type { LoadedModel } from "../engine/loaded_model.ts";
import type { ServedRequest } from "./served_request.ts";

/**
 * `GET /slots`.
 *
 * @param ctx Server state.
 * @param request The HTTP request (`?model=NAME`, `?fail_on_no_slot=1`).
 * @returns The slots, in llama-server's shape (every copy's, numbered on from the first's).
 * @throws {HttpError} 503 `no_slot_available` with `fail_on_no_slot` when none is idle.
 */
export function slots(ctx: ServerContext, request: ServedRequest): Response {
  const query = new URL(request.url).searchParams;
  const views = loadedCopies(ctx, query).flatMap(({ copy, first }) => {
    const nCtx = copy.scheduler.slotContext;
    return copy.scheduler.slotViews().map(({ id, request }) => ({
      id: first + id,
      n_ctx: nCtx,
      speculative: false,
      is_processing: request !== undefined,
      ...(request
        ? {
          n_prompt_tokens: request.promptTokens,
          n_prompt_tokens_processed: request.promptDone - request.cachedTokens,
          n_prompt_tokens_cache: request.cachedTokens,
          next_token: [{
            has_next_token: request.remaining > 0,
            n_remain: request.remaining,
            n_decoded: request.generated,
          }],
        }
        : {}),
    }));
  });
  if (query.get("fail_on_no_slot") && views.length > 0 && views.every((v) => v.is_processing)) {
    throw new HttpError(503, "No slot is available: every slot is busy", {
      code: "no_slot_available",
    });
  }
  return Response.json(views);
}

/** The path of `POST /slots/N`. */
export const SLOT_ROUTE = /^\/slots\/([^/]+)$/;

/**
 * `POST /slots/N?action=erase|save|restore`. `erase` empties slot N's cache, once its request (if
 * any) has ended. `save` writes the cache to `{"filename": NAME}` in the `--slot-save-path`
 * folder, `restore` reads such a file back into slot N (both once its request ends, and loading
 * the model where needed): llama-server's files of the same model restore here and Shimmy's
 * there.
 *
 * @param ctx Server state.
 * @param request The HTTP request (`?action=…`, `?model=NAME`; a JSON body for save and restore).
 * @returns llama-server's answers: `{"id_slot", "n_erased"}` (0 for a model not loaded: it caches
 *   nothing), `{"id_slot", "filename", "n_saved", "n_written", "timings": {"save_ms"}}` and
 *   `{"id_slot", "filename", "n_restored", "n_read", "timings": {"restore_ms"}}`.
 * @throws {HttpError} 400 for a slot number the model does not have, another action, a file name
 *   that is not a plain one or a file this slot cannot take; 404 for a file to restore that is
 *   not there; 501 for save and restore without `--slot-save-path`; 507 for a save the folder
 *   has no room for (`--slot-save-max-size`, or the disk's free space: see `slot_folder.ts`).
 */
export async function slotAction(ctx: ServerContext, request: ServedRequest): Promise<Response> {
  const url = new URL(request.url);
  const idText = SLOT_ROUTE.exec(url.pathname.replace(/\/+$/, ""))?.[1] ?? "";
  const action = url.searchParams.get("action");
  if (action === "erase") {
    const copies = loadedCopies(ctx, url.searchParams);
    const owner = slotOwner(copies, idText);
    ctx.arrivals.handOver(); // no request for its loop to wait for
    const erased = owner ? await owner.copy.scheduler.eraseSlot(owner.slot) : 0;
    return Response.json({ id_slot: Number(idText), n_erased: erased });
  }
  if (action !== "save" && action !== "restore") {
    throw badRequest('"action" must be "erase", "save" or "restore"', "action");
  }
  const folder = ctx.settings.slotSavePath;
  if (folder === undefined) {
    throw new HttpError(
      501,
      `Slot ${action} needs a folder for slot files: start the server with --slot-save-path DIR`,
      { code: "not_supported" },
    );
  }
  const body = await readRequestJson(request, ctx.settings);
  refuseUnknownFields(body, SLOT_FILE_FIELDS, `/slots/{id}?action=${action}`);
  const filename = new Fields(body).string("filename");
  if (filename === undefined) throw badRequest('"filename" is required', "filename");
  const problem = plainFileNameProblem(filename);
  if (problem) throw badRequest(`"filename" is not a plain file name: ${problem}`, "filename");
  const path = join(folder, filename);
  const kind = await entryKind(path);
  if (kind === "other") {
    // A link could lead out of the folder; a FIFO would block the write (and the model) forever.
    throw badRequest(
      `"${filename}" in the slot save folder is a link, a folder or a device, not a slot file`,
      "filename",
    );
  }
  if (action === "restore" && kind === "missing") {
    throw new HttpError(404, `No slot file named "${filename}" in the slot save folder`, {
      param: "filename",
      code: "slot_file_not_found",
    });
  }
  using _lease = await ctx.registry.acquire(url.searchParams.get("model") ?? undefined);
  const owner = slotOwner(loadedCopies(ctx, url.searchParams), idText) as SlotOwner;
  const scheduler = owner.copy.scheduler;
  ctx.arrivals.handOver();
  const started = performance.now();
  const done = action === "save"
    ? await scheduler.saveSlot(
      owner.slot,
      path,
      (bytes, write) => boundedFolder(ctx, folder).write(filename, bytes, write),
    )
    : await scheduler.restoreSlot(owner.slot, path);
  const ms = performance.now() - started;
  const id_slot = Number(idText);
  return Response.json(
    action === "save"
      ? { id_slot, filename, n_saved: done.tokens, n_written: done.bytes, timings: { save_ms: ms } }
      : {
        id_slot,
        filename,
        n_restored: done.tokens,
        n_read: done.bytes,
        timings: { restore_ms: ms },
      },
  );
}

/** The slot folder with its bound, made on first use (and again if the settings name another). */
function boundedFolder(ctx: ServerContext, path: string): SlotFolder {
  const maxBytes = ctx.settings.slotSaveMaxBytes ?? DEFAULT_SLOT_SAVE_MAX_BYTES;
  if (ctx.slotFolder?.path !== path || ctx.slotFolder.maxBytes !== maxBytes) {
    ctx.slotFolder = new SlotFolder(path, { maxBytes });
  }
  return ctx.slotFolder;
}

/** Fields of a slot save or restore body. */
const SLOT_FILE_FIELDS = new Set(["filename"]);

/** A slot in the server's numbering: the copy of the model that has it, and its number there. */
interface SlotOwner {
  copy: LoadedModel;
  slot: number;
}

/**
 * The copy that has slot `idText` of the server's list, or undefined when no copy is loaded.
 *
 * @throws {HttpError} 400 for a number that names no slot of the loaded copies.
 */
function slotOwner(
  copies: { copy: LoadedModel; first: number }[],
  idText: string,
): SlotOwner | undefined {
  const id = /^\d+$/.test(idText) ? Number(idText) : NaN;
  const slotCount = copies.reduce((sum, { copy }) => sum + copy.scheduler.stats().slots, 0);
  if (!Number.isInteger(id) || (copies.length > 0 && id >= slotCount)) {
    throw badRequest(`No slot ${idText}: the slots are 0 to ${slotCount - 1}`, "id_slot");
  }
  const owner = copies.findLast(({ first }) => first <= id);
  return owner && { copy: owner.copy, slot: id - owner.first };
}

/** What a path names itself, links not followed: a regular file, nothing, or anything else. */
async function entryKind(path: string): Promise<"file" | "missing" | "other"> {
  try {
    return (await Deno.lstat(path)).isFile ? "file" : "other";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "missing";
    throw error;
  }
}

/** A model's loaded copies, each with the number its first slot has in the server's list. */
function loadedCopies(
  ctx: ServerContext,
  query: URLSearchParams,
): { copy: LoadedModel; first: number }[] {
  const entry = ctx.registry.resolve(query.get("model") ?? undefined);
  let first = 0;
  return (ctx.registry.replicas().get(entry.name)?.copies ?? []).map((copy) => {
    const numbered = { copy, first };
    first += copy.scheduler.stats().slots;
    return numbered;
  });
}
