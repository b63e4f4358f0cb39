/**
 * Where Ollama's API lives. {@link OLLAMA_ROUTES} are its routes as Ollama serves them, at
 * the root of the `--ollama-bind` listener and under `/ollama` on the main port;
 * {@link OLLAMA_ROOT_ROUTES} are those that also answer at the main port's root because
 * Shimmy's own API has no route there (its `/api/generate` keeps Shimmy's contract), except for
 * Ollama's own clients ({@link isOllamaClient}), which get all of them there.
 *
 * @module
 */

import { VERSION } from "../../version.ts";
import type { Handler } from "../app.ts";
import type { ServerContext } from "../context.ts";
import { HttpError } from "../http_error.ts";
import { ollamaChat } from "./chat.ts";
import { ollamaEmbed, ollamaEmbeddings } from "./embed.ts";
import { ollamaGenerate } from "./generate.ts";
import { ollamaPs, ollamaTags } from "./models.ts";
import { ollamaPull } from "./pull.ts";
import { ollamaShow } from "./show.ts";

/** The version of Ollama's API whose shapes Shimmy serves, which `/api/version` reports. */
export const OLLAMA_API_VERSION = "0.12.0";

/** The base path of Ollama's API on the main port. */
export const OLLAMA_BASE_PATH = "/ollama";

/** `GET /` and `HEAD /`: the liveness answer Ollama's clients look for. */
function alive(): Response {
  return new Response("Ollama is running", {
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

/** `GET /api/version`: the API version, and Shimmy's own. */
function version(): Response {
  return Response.json({ version: OLLAMA_API_VERSION, shimmy: VERSION });
}

/** A 501 for an Ollama route that manages models Shimmy only reads. */
function modelStoreRoute(what: string): Handler {
  return (_ctx: ServerContext) => {
    throw new HttpError(
      501,
      `${what} is not supported: Shimmy serves the GGUF files it finds and does not change ` +
        "them; manage them with ollama or on disk",
      { code: "not_implemented" },
    );
  };
}

/** Ollama's routes, by path and method. */
export const OLLAMA_ROUTES: Record<string, Partial<Record<string, Handler>>> = {
  "/": { GET: alive, HEAD: alive },
  "/api/version": { GET: version },
  "/api/tags": { GET: ollamaTags },
  "/api/ps": { GET: ollamaPs },
  "/api/show": { POST: ollamaShow },
  "/api/chat": { POST: ollamaChat },
  "/api/generate": { POST: ollamaGenerate },
  "/api/embed": { POST: ollamaEmbed },
  "/api/embeddings": { POST: ollamaEmbeddings },
  "/api/pull": { POST: ollamaPull },
  "/api/push": { POST: modelStoreRoute("Pushing models") },
  "/api/create": { POST: modelStoreRoute("Creating models") },
  "/api/copy": { POST: modelStoreRoute("Copying models") },
  "/api/delete": { DELETE: modelStoreRoute("Deleting models") },
};

/** Ollama's routes that also answer at the main port's root. */
export const OLLAMA_ROOT_ROUTES: readonly string[] = [
  "/api/chat",
  "/api/show",
  "/api/embed",
  "/api/version",
  "/api/tags",
  "/api/ps",
];

/**
 * The Ollama path a main-port path names under {@link OLLAMA_BASE_PATH}.
 *
 * @param path A request path without trailing slash.
 * @returns The path below `/ollama` (`/` for `/ollama` itself), or undefined.
 * @example
 * ```ts
 * ollamaSubpath("/ollama/api/chat"); // "/api/chat"
 * ```
 */
export function ollamaSubpath(path: string): string | undefined {
  if (path === OLLAMA_BASE_PATH) return "/";
  return path.startsWith(OLLAMA_BASE_PATH + "/") ? path.slice(OLLAMA_BASE_PATH.length) : undefined;
}

/** The User-Agent of Ollama's own clients: ollama-js, ollama-python, and the Go client and CLI. */
const OLLAMA_CLIENT_AGENT = /^ollama(?:-js|-python)?\//i;

/**
 * Whether a request comes from one of Ollama's own clients, which know only Ollama's API: they
 * get it at the root of the main port too, `/api/generate` included.
 *
 * @param userAgent The request's User-Agent header.
 * @returns True for `ollama-js/…`, `ollama-python/…` and `ollama/…`.
 * @example
 * ```ts
 * isOllamaClient("ollama-js/0.6.4 (x64 linux Node.js/v22)"); // true
 * isOllamaClient("curl/8.5.0"); // false
 * ```
 */
export function isOllamaClient(userAgent: string | null): boolean {
  return userAgent !== null && OLLAMA_CLIENT_AGENT.test(userAgent);
}
