/**
 * Ollama's `POST /api/pull` over Shimmy's own download (`pullModel`, the code `shimmy pull`
 * runs): `{"model": "hf.co/ORG/REPO[:QUANT]"}` streams Ollama's progress lines (`pulling
 * manifest`, `pulling <digest>` with `total`/`completed`, `verifying sha256 digest`, `success`),
 * or with `"stream": false` answers the last one. The server must run with `--allow-pull`;
 * the model is then known to the registry (listed, servable) without a restart.
 *
 * @module
 */

import { isHubReference, isPullable } from "../../models/hf_hub.ts";
import type { PullProgress } from "../../models/pull.ts";
import type { ServerContext } from "../context.ts";
import { HttpError } from "../http_error.ts";
import { Fields, readRequestJson } from "../request_body.ts";
import { ndjsonResponse } from "./ndjson.ts";
import { modelOrName } from "./request_checks.ts";
import { followClient } from "../stream_body.ts";
import type { ServedRequest } from "../served_request.ts";

/**
 * `POST /api/pull`.
 *
 * @param ctx Server state (`ctx.pulls` is set by `--allow-pull`).
 * @param request The HTTP request (`{"model", "insecure", "stream"}`).
 * @param clientGone Aborts when the client disconnects (the pull goes on for other askers).
 * @returns An NDJSON progress stream, or one `{"status":"success"}` object.
 * @throws {HttpError} 403 without `--allow-pull`, 400 without a model.
 * @example
 * ```ts
 * await ollamaPull(ctx, request, signal); // {"status":"pulling manifest"}\n …
 * ```
 */
export async function ollamaPull(
  ctx: ServerContext,
  request: ServedRequest,
  clientGone: AbortSignal,
): Promise<Response> {
  const fields = new Fields(
    await readRequestJson(request, ctx.settings),
  );
  const model = modelOrName(fields);
  if (!model) throw new HttpError(400, '"model" is required', { param: "model" });
  const pulls = ctx.pulls;
  if (!pulls) {
    throw new HttpError(
      403,
      "Pulling models through the API is off: start the server with --allow-pull, or run " +
        `"shimmy pull ${model}" on the server`,
      { code: "pull_disabled" },
    );
  }
  if (isPullable(model) && !isHubReference(model)) {
    throw new HttpError(
      403,
      `The API pulls models from the Hugging Face Hub only (hf.co/ORG/REPO[:QUANT]), not "${model}": ` +
        "a URL could reach any address the server can; run shimmy pull on the server for it",
      { code: "pull_refused", param: "model" },
    );
  }
  const pull = async (send: (line: unknown) => void, signal: AbortSignal) => {
    send({ status: "pulling manifest" });
    // Followed until this request ends or its client goes; the pull goes on for other askers.
    const unfollow = pulls.follow(model, (progress) => {
      const line = progressLine(progress);
      if (line) send(line);
    }, signal);
    try {
      await pulls.pull(model);
    } finally {
      unfollow();
    }
    await ctx.registry.resolveOrFetch(model);
    send({ status: "writing manifest" });
    send({ status: "success" });
  };
  if (fields.boolean("stream") === false) {
    await pull(() => {}, clientGone);
    return Response.json({ status: "success" });
  }
  const abort = followClient(clientGone);
  return ndjsonResponse((send) => pull(send, abort.signal), abort);
}

/** One progress report as Ollama's progress line. */
function progressLine(progress: PullProgress): Record<string, unknown> | undefined {
  const digest = progress.digest ? `sha256:${progress.digest}` : progress.file;
  switch (progress.status) {
    case "downloading":
    case "present":
      return {
        status: `pulling ${digest?.replace(/^sha256:/, "").slice(0, 12) ?? "file"}`,
        ...(digest ? { digest } : {}),
        ...(progress.total !== undefined ? { total: progress.total } : {}),
        ...(progress.completed !== undefined ? { completed: progress.completed } : {}),
      };
    case "verifying":
      return { status: "verifying sha256 digest" };
    default:
      return undefined;
  }
}
