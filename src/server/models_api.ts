/**
 * Model management routes: `POST /api/models/load`, `POST /api/models/unload` (Ollama's
 * `GET /api/ps` lists the loaded models, with Shimmy's fields), and LoRA hot-swap through
 * `GET`/`POST /api/lora`. Also the resolution of a request's `lora` field, shared by the
 * generating endpoints.
 *
 * LoRA: `POST /api/lora {"model", "adapters":[{"name" or "path", "scale"}]}` sets the adapters
 * attached to a loaded model (an empty list detaches all; a changed scale rescales). A `path`
 * must name a regular file inside the model folders (see models/adapter_policy.ts). The
 * change takes effect between decode steps, once running requests finish. A request may pick
 * its own adapters with `"lora":[{"name","scale"}]`, by the names of adapters known for its
 * model (never by path); requests with different adapters take turns instead of sharing steps.
 *
 * @module
 */

import type { LoadedModel } from "../engine/loaded_model.ts";
import { allowedAdapterPath } from "../models/adapter_policy.ts";
import type { ModelEntry } from "../models/registry.ts";
import type { LoraChoice } from "../engine/scheduler.ts";
import { basename } from "node:path";
import type { ServerContext } from "./context.ts";
import { badRequest, HttpError } from "./http_error.ts";
import {
  Fields,
  readRequestJson,
  readRequestJsonArray,
  refuseUnknownFields,
} from "./request_body.ts";
import type { ServedRequest } from "./served_request.ts";

/** Reads a body of `fields` (`model` among them) and resolves its model. */
async function modelField(ctx: ServerContext, request: ServedRequest, fields: string[]): Promise<{
  entry: ModelEntry;
  body: Record<string, unknown>;
}> {
  const body = await readRequestJson(request, ctx.settings);
  refuseUnknownFields(body, new Set(fields), new URL(request.url).pathname);
  const name = new Fields(body).string("model");
  return { entry: ctx.registry.resolve(name), body };
}

/** `POST /api/models/load {"model"}`: loads a model now (it stays until unloaded or idle). */
export async function loadModel(ctx: ServerContext, request: ServedRequest): Promise<Response> {
  const { entry } = await modelField(ctx, request, ["model"]);
  return await loadEntry(ctx, entry);
}

/** `POST /api/models/unload {"model"}`: frees a loaded, idle model. */
export async function unloadModel(ctx: ServerContext, request: ServedRequest): Promise<Response> {
  const { entry } = await modelField(ctx, request, ["model"]);
  return await unloadEntry(ctx, entry);
}

async function loadEntry(ctx: ServerContext, entry: ModelEntry): Promise<Response> {
  using lease = await ctx.registry.acquire(entry.name);
  return Response.json({
    model: entry.name,
    state: "loaded",
    status: "loaded",
    load_ms: Math.round(ctx.registry.loadTimes.get(entry.name) ?? 0),
    backend: lease.model.devices.backend,
  });
}

async function unloadEntry(ctx: ServerContext, entry: ModelEntry): Promise<Response> {
  const unloaded = await ctx.registry.unload(entry.name);
  return Response.json({ model: entry.name, state: "available", status: "available", unloaded });
}

/**
 * The original Shimmy's routes by model name: `POST /api/models/{name}/load`,
 * `POST /api/models/{name}/unload` and `GET /api/models/{name}/status` (`{model, status,
 * loaded}`), the name URL-encoded where it has a `/`. They do what the JSON routes above do.
 */
export const MODEL_ACTION_ROUTE = /^\/api\/models\/([^/]+)\/(load|unload|status)$/;

/**
 * Serves a path that {@link MODEL_ACTION_ROUTE} matches (`status` by GET, the others by POST).
 *
 * @param ctx Server state.
 * @param request The request.
 * @returns The answer of the action the path names.
 * @throws {HttpError} 404 for an unknown model.
 */
export async function modelAction(ctx: ServerContext, request: ServedRequest): Promise<Response> {
  const [, encoded, action] = MODEL_ACTION_ROUTE.exec(new URL(request.url).pathname)!;
  let name: string;
  try {
    name = decodeURIComponent(encoded!);
  } catch {
    throw badRequest("The model name in the path is not valid URL encoding");
  }
  const entry = ctx.registry.resolve(name);
  if (action === "load") return await loadEntry(ctx, entry);
  if (action === "unload") return await unloadEntry(ctx, entry);
  const status = ctx.registry.state(entry.name);
  return Response.json({ model: entry.name, status, loaded: status === "loaded" });
}

function adapterPath(entry: ModelEntry, loaded: LoadedModel, name: string): string | undefined {
  const lower = name.toLowerCase();
  return entry.adapters?.find((a) => a.name === lower)?.path ??
    loaded.lora().find((a) => basename(a.path).toLowerCase().replace(/\.gguf$/, "") === lower)
      ?.path;
}

/** A model's adapter by its place in the list `GET /api/lora` shows as `known`. */
function adapterAt(entry: ModelEntry, id: number): { name: string; path: string } {
  const adapter = Number.isInteger(id) ? entry.adapters?.[id] : undefined;
  if (!adapter) {
    const count = entry.adapters?.length ?? 0;
    throw badRequest(
      `"lora[].id" ${id} names no adapter of ${entry.name}: it has ${count} (ids 0 to ${
        count - 1
      })`,
      "lora",
    );
  }
  return adapter;
}

function adapterList(value: unknown, field: string): Record<string, unknown>[] {
  if (!Array.isArray(value)) throw badRequest(`"${field}" must be an array`, field);
  return value.map((item) => {
    if (typeof item !== "object" || item === null) {
      throw badRequest(`"${field}" items must be objects`, field);
    }
    return item as Record<string, unknown>;
  });
}

function scaleOf(item: Record<string, unknown>, field: string): number {
  const scale = item.scale ?? 1;
  if (typeof scale !== "number" || !Number.isFinite(scale)) {
    throw badRequest(`"${field}[].scale" must be a number`, field);
  }
  return scale;
}

/**
 * Resolves a request's `lora` field to adapters of its model.
 *
 * @param entry The model's entry.
 * @param loaded The loaded model.
 * @param value The `lora` field (undefined: the model's attached adapters).
 * @returns The choices, or undefined to use the attached set.
 * @throws {HttpError} 400 for an unknown adapter name or a bad shape.
 */
export async function requestLora(
  entry: ModelEntry,
  loaded: LoadedModel,
  value: unknown,
): Promise<LoraChoice[] | undefined> {
  if (value === undefined || value === null) return undefined;
  const set = adapterList(value, "lora").map((item) => {
    // llama-server's `id` is the adapter's place in its list (llama.vscode sends `{id: 0}`).
    const name = typeof item.id === "number"
      ? adapterAt(entry, item.id).name
      : item.name ?? item.id;
    if (typeof name !== "string") {
      throw badRequest('"lora[].name" must be a string (or "id" an adapter\'s number)', "lora");
    }
    const path = adapterPath(entry, loaded, name);
    if (!path) {
      const known = (entry.adapters ?? []).map((a) => a.name).join(", ") || "none";
      throw badRequest(`Unknown LoRA adapter "${name}" for ${entry.name}; known: ${known}`, "lora");
    }
    return { path, scale: scaleOf(item, "lora") };
  });
  return await loaded.loraChoices(set);
}

/** `GET /api/lora?model=NAME`: the adapters attached to a loaded model and those known. */
export function getLora(ctx: ServerContext, request: ServedRequest): Response {
  const entry = ctx.registry.resolve(new URL(request.url).searchParams.get("model") ?? "");
  const loaded = ctx.registry.loaded().get(entry.name);
  return Response.json({
    model: entry.name,
    attached: loaded?.lora() ?? [],
    known: entry.adapters ?? [],
  });
}

/** `POST /api/lora {"model","adapters":[{"name"|"path","scale"}]}`: hot-swaps adapters. */
export async function setLora(ctx: ServerContext, request: ServedRequest): Promise<Response> {
  const { entry, body } = await modelField(ctx, request, ["model", "adapters"]);
  const items = adapterList(body.adapters, "adapters");
  using lease = await ctx.registry.acquire(entry.name);
  const loaded = lease.model;
  const set: { path: string; scale: number }[] = [];
  for (const item of items) {
    const scale = scaleOf(item, "adapters");
    if (typeof item.path === "string") {
      set.push({
        path: await allowedAdapterPath(item.path, ctx.settings.adapterDirs ?? []),
        scale,
      });
    } else if (typeof item.name === "string") {
      const path = adapterPath(entry, loaded, item.name);
      if (!path) throw badRequest(`Unknown LoRA adapter "${item.name}"`, "adapters");
      set.push({ path, scale });
    } else {
      throw badRequest('Each adapter needs "name" or "path"', "adapters");
    }
  }
  try {
    await lease.replicas.setLora(set);
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw badRequest(`Cannot attach: ${(error as Error).message}`, "adapters");
  }
  return Response.json({ model: entry.name, attached: loaded.lora() });
}

/**
 * `GET /lora-adapters[?model=NAME]`: llama-server's list of a model's adapters, `[{id, path,
 * scale}]`, numbered as `known` in `GET /api/lora`; an adapter not attached has scale 0.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @returns The list.
 */
export function getLoraAdapters(ctx: ServerContext, request: ServedRequest): Response {
  const entry = ctx.registry.resolve(new URL(request.url).searchParams.get("model") ?? undefined);
  const attached = ctx.registry.loaded().get(entry.name)?.lora() ?? [];
  return Response.json((entry.adapters ?? []).map((adapter, id) => ({
    id,
    path: adapter.path,
    scale: attached.find((a) => a.path === adapter.path)?.scale ?? 0,
  })));
}

/**
 * `POST /lora-adapters[?model=NAME]` with `[{"id", "scale"}]`: llama-server's hot-swap. The list
 * is the whole new set: an adapter left out, or at scale 0, is detached.
 *
 * @param ctx Server state.
 * @param request The HTTP request.
 * @returns `{"success": true}`.
 * @throws {HttpError} 400 for a body that is not such a list, or an id with no adapter.
 */
export async function setLoraAdapters(
  ctx: ServerContext,
  request: ServedRequest,
): Promise<Response> {
  const items = adapterList(await readRequestJsonArray(request, ctx.settings), "adapters");
  const entry = ctx.registry.resolve(new URL(request.url).searchParams.get("model") ?? undefined);
  const set = items.map((item) => {
    if (typeof item.id !== "number") throw badRequest('Each adapter needs its "id"', "adapters");
    return { path: adapterAt(entry, item.id).path, scale: scaleOf(item, "adapters") };
  }).filter((adapter) => adapter.scale !== 0);
  using lease = await ctx.registry.acquire(entry.name);
  await lease.replicas.setLora(set);
  return Response.json({ success: true });
}
