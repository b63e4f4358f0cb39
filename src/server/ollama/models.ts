/**
 * Ollama's model listings, `GET /api/tags` and `GET /api/ps`, and model names as Ollama users
 * type them: `name:tag`, a bare `name` for `name:latest`, and `name:latest` for a model Shimmy
 * names without a tag.
 *
 * @module
 */

import type { ModelEntry } from "../../models/registry.ts";
import { ModelNotFoundError } from "../../models/model_names.ts";
import type { ServerContext } from "../context.ts";
import { badRequest } from "../http_error.ts";
import { modelFacts } from "./model_facts.ts";

/** `expires_at` of a model that never expires (keep-alive -1). */
const NEVER = "9999-12-31T23:59:59Z";

/**
 * Finds the model an Ollama request names.
 *
 * @param ctx Server state.
 * @param name The `model` field.
 * @returns Its entry.
 * @throws {HttpError} 400 when no name is given; {@link ModelNotFoundError} (404) when no
 *   model has it.
 * @example
 * ```ts
 * resolveOllamaModel(ctx, "tiny-f32:latest").name; // "tiny-f32"
 * ```
 */
export function resolveOllamaModel(ctx: ServerContext, name: unknown): ModelEntry {
  if (typeof name !== "string" || name === "") throw badRequest('"model" is required', "model");
  try {
    return ctx.registry.resolve(name);
  } catch (error) {
    if (!(error instanceof ModelNotFoundError)) throw error;
    const other = name.endsWith(":latest")
      ? name.slice(0, -":latest".length)
      : name.includes(":")
      ? undefined
      : `${name}:latest`;
    if (other === undefined) throw error;
    try {
      return ctx.registry.resolve(other);
    } catch {
      throw error;
    }
  }
}

/**
 * `GET /api/tags`: every known model in Ollama's list shape.
 *
 * @param ctx Server state.
 * @returns `{models: [{name, model, modified_at, size, digest, details}]}`.
 */
export async function ollamaTags(ctx: ServerContext): Promise<Response> {
  const models = await Promise.all(
    ctx.registry.list().map(async (entry) => {
      const facts = await modelFacts(entry);
      return {
        name: entry.name,
        model: entry.name,
        modified_at: facts.modifiedAt,
        size: entry.sizeBytes,
        digest: facts.digest,
        details: facts.details,
      };
    }),
  );
  return Response.json({ models });
}

/**
 * `GET /api/ps`: the loaded models in Ollama's shape (`size_vram`, `expires_at`,
 * `context_length`), with Shimmy's own fields beside them (`slots`, `busy_slots`, `queued`,
 * `backend`, `path`…) and the models `loading`.
 *
 * @param ctx Server state.
 * @returns `{models: […], loading: [{name, progress}]}`.
 */
export async function ollamaPs(ctx: ServerContext): Promise<Response> {
  const loaded = ctx.registry.loaded();
  const models = await Promise.all(
    ctx.registry.status().map(async (m) => {
      const entry = ctx.registry.resolve(m.name);
      const facts = await modelFacts(entry);
      const model = loaded.get(m.name);
      const offload = model?.model.offload;
      const onGpu = model && model.devices.backend !== "cpu" && offload && offload.total > 0
        ? Math.round(m.sizeBytes * Math.min(1, offload.offloaded / offload.total))
        : 0;
      return {
        name: m.name,
        model: m.name,
        size: m.sizeBytes,
        digest: facts.digest,
        details: facts.details,
        expires_at: m.expiresInSeconds === null
          ? NEVER
          : new Date(Date.now() + m.expiresInSeconds * 1000).toISOString(),
        size_vram: onGpu,
        context_length: model?.scheduler.slotContext ?? 0,
        // Shimmy's own fields.
        path: m.path,
        size_bytes: m.sizeBytes,
        backend: m.backend,
        slots: m.slots,
        busy_slots: m.busySlots,
        queued: m.queued,
        idle_seconds: m.idleSeconds,
        expires_in_seconds: m.expiresInSeconds,
        replicas: m.replicas.map((r) => ({
          index: r.index,
          devices: r.devices,
          slots: r.slots,
          busy_slots: r.busySlots,
          queued: r.queued,
        })),
      };
    }),
  );
  const loading = [...ctx.registry.loadProgress].map(([name, progress]) => ({ name, progress }));
  return Response.json({ models, loading });
}
