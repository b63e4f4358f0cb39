/**
 * The chat page at `/`: static files built by `deno task webui` into `webui/dist/` (an
 * `index.html` and hashed `app.*.js` / `app.*.css`), read once from beside the app (in the
 * compiled executable, from its embedded copy) and kept in memory. The page is public, like
 * any static page, but passes the Host/Origin checks first; every API call it makes needs the
 * key as usual. A strict Content-Security-Policy allows only this server's own scripts,
 * styles and API, so model output that slips HTML into the page cannot run or load anything.
 *
 * @module
 */

import { HttpError } from "./http_error.ts";
import type { ServedRequest } from "./served_request.ts";

/** The folder of the built page. */
export const WEBUI_DIR = new URL("../../webui/dist/", import.meta.url);

/** The URL prefix of the page's assets. */
export const WEBUI_ASSET_PREFIX = "/webui/";

/** Only this server's own files and API; no inline code, no frames, no form posts. */
export const WEBUI_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const CONTENT_TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};

interface Asset {
  body: Uint8Array<ArrayBuffer>;
  type: string;
  etag: string;
}

let cache: Promise<Map<string, Asset>> | undefined;

async function load(dir: URL): Promise<Map<string, Asset>> {
  const assets = new Map<string, Asset>();
  for await (const entry of Deno.readDir(dir)) {
    const type = CONTENT_TYPES[entry.name.split(".").pop() ?? ""];
    if (!entry.isFile || !type) continue;
    const body = await Deno.readFile(new URL(entry.name, dir));
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
    const etag = `"${
      [...digest.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("")
    }"`;
    assets.set(entry.name, { body, type, etag });
  }
  if (!assets.has("index.html")) throw new Deno.errors.NotFound("index.html");
  return assets;
}

/**
 * Whether a path belongs to the page: `/` or a file under {@link WEBUI_ASSET_PREFIX}.
 *
 * @param path The request path, trailing slashes removed.
 * @returns True for the page's paths.
 * @example
 * ```ts
 * isWebuiPath("/"); // true
 * isWebuiPath("/v1/models"); // false
 * ```
 */
export function isWebuiPath(path: string): boolean {
  return path === "/" || path.startsWith(WEBUI_ASSET_PREFIX);
}

/**
 * Serves the page or one of its assets: `index.html` revalidated on each visit, hashed
 * assets cached for a year. Anything else (other methods, unknown files) is not the page's:
 * it is left to the routes, behind the API key, so it reveals nothing.
 *
 * @param request The request.
 * @param path Its path, trailing slashes removed.
 * @param dir The built page's folder. Default {@link WEBUI_DIR}.
 * @returns The file, 304 when the browser's copy is current, or undefined when the request is
 * not a GET or HEAD of one of the page's files.
 * @throws {HttpError} 503 when `/` is asked for and the page was not built.
 * @example
 * ```ts
 * const res = await serveWebui(new Request("http://127.0.0.1/"), "/");
 * console.log(res?.headers.get("content-type")); // "text/html; charset=utf-8"
 * ```
 */
export async function serveWebui(
  request: ServedRequest,
  path: string,
  dir: URL = WEBUI_DIR,
): Promise<Response | undefined> {
  if (!isWebuiPath(path) || (request.method !== "GET" && request.method !== "HEAD")) {
    return undefined;
  }
  let assets;
  try {
    assets = await (cache ??= load(dir));
  } catch {
    cache = undefined;
    if (path !== "/") return undefined;
    throw new HttpError(503, "The web page is not built: run deno task webui", {
      code: "webui_not_built",
    });
  }
  const name = path === "/" ? "index.html" : path.slice(WEBUI_ASSET_PREFIX.length);
  const asset = name === "index.html" && path !== "/" ? undefined : assets.get(name);
  if (!asset) return undefined;
  const headers = new Headers({
    "content-type": asset.type,
    "content-security-policy": WEBUI_CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": name === "index.html" ? "no-cache" : "public, max-age=31536000, immutable",
    etag: asset.etag,
  });
  if (request.headers.get("if-none-match") === asset.etag) {
    return new Response(null, { status: 304, headers });
  }
  headers.set("content-length", String(asset.body.byteLength));
  return new Response(request.method === "HEAD" ? null : asset.body, { headers });
}
