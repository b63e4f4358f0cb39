/**
 * A loopback server that speaks the parts of the Hugging Face Hub API `shimmy pull` uses:
 * `GET /api/models/ORG/REPO/revision/REV?blobs=true` (the commit and each file's LFS SHA-256),
 * `GET /ORG/REPO/resolve/REV/FILE` redirecting to a CDN path that honours `Range`, tokens for
 * gated repositories (401 without), a connection dropped mid-file, and a wrong checksum.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** A file the fake hub serves. */
export interface FakeFile {
  /** Path in the repository. */
  path: string;
  /** Its bytes. */
  bytes: Uint8Array;
  /** The SHA-256 the listing claims (default: the true one). */
  claimedSha256?: string;
}

/** A repository of the fake hub. */
export interface FakeRepo {
  /** Its files. */
  files: FakeFile[];
  /** The commit `main` points to. Default 40 "a"s. */
  commit?: string;
  /** A token it requires (a gated repository): 401 without it. */
  token?: string;
}

/** A request the fake hub saw. */
export interface SeenRequest {
  path: string;
  range: string | null;
  authorization: string | null;
}

/**
 * The SHA-256 of bytes, hex.
 *
 * @param bytes The bytes.
 * @returns Lowercase hex.
 */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The fake hub; `await using hub = startFakeHub({...})`. */
export interface FakeHub extends AsyncDisposable {
  /** Base URL, for HF_ENDPOINT. */
  url: string;
  /** Every request, in order. */
  requests: SeenRequest[];
  /** Files (by repository path) whose next download stops halfway through what is left. */
  dropNext: Set<string>;
  /** Files whose every download stops halfway. */
  dropAlways: Set<string>;
}

/**
 * Starts a fake hub on a free loopback port.
 *
 * @param repos Repositories by `ORG/REPO`.
 * @returns The running hub.
 */
export function startFakeHub(repos: Record<string, FakeRepo>): FakeHub {
  const requests: SeenRequest[] = [];
  const dropNext = new Set<string>();
  const dropAlways = new Set<string>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const url = new URL(request.url);
    requests.push({
      path: url.pathname,
      range: request.headers.get("range"),
      authorization: request.headers.get("authorization"),
    });
    const allowed = (repo: FakeRepo) =>
      repo.token === undefined || request.headers.get("authorization") === `Bearer ${repo.token}`;
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (api) {
      const repo = repos[api[1]!];
      if (!repo) return Response.json({ error: "Repository not found" }, { status: 404 });
      if (!allowed(repo)) return Response.json({ error: "Access restricted" }, { status: 401 });
      return Response.json({
        id: api[1],
        sha: repo.commit ?? "a".repeat(40),
        siblings: repo.files.map((f) => ({
          rfilename: f.path,
          size: f.bytes.length,
          blobId: "b".repeat(40),
          lfs: {
            sha256: f.claimedSha256 ?? sha256Hex(f.bytes),
            size: f.bytes.length,
            pointerSize: 134,
          },
        })),
      });
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (resolve) {
      const repo = repos[resolve[1]!];
      const file = repo?.files.find((f) => f.path === decodeURIComponent(resolve[3]!));
      if (!repo || !file) return new Response("Entry not found", { status: 404 });
      if (!allowed(repo)) return new Response("Access restricted", { status: 401 });
      return new Response(null, {
        status: 302,
        headers: {
          location: `/cdn/${resolve[1]}/${file.path}?signed=1`,
          "x-repo-commit": repo.commit ?? "a".repeat(40),
          "x-linked-etag": `"${sha256Hex(file.bytes)}"`,
          "x-linked-size": String(file.bytes.length),
        },
      });
    }
    const cdn = /^\/cdn\/([^/]+\/[^/]+)\/(.+)$/.exec(url.pathname);
    const file = cdn && repos[cdn[1]!]?.files.find((f) => f.path === decodeURIComponent(cdn[2]!));
    if (!file) return new Response("Not found", { status: 404 });
    const drop = dropNext.delete(file.path) || dropAlways.has(file.path);
    return serveBytes(file, request.headers.get("range"), drop);
  });
  const { port } = server.addr;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    dropNext,
    dropAlways,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

function serveBytes(file: FakeFile, range: string | null, drop: boolean): Response {
  const size = file.bytes.length;
  const match = range ? /^bytes=(\d+)-$/.exec(range) : null;
  const start = match ? Number(match[1]) : 0;
  if (start >= size && match) {
    return new Response(null, { status: 416, headers: { "content-range": `bytes */${size}` } });
  }
  const body = file.bytes.subarray(start);
  const headers: Record<string, string> = { "content-length": String(body.length) };
  if (match) headers["content-range"] = `bytes ${start}-${size - 1}/${size}`;
  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      if (drop) {
        controller.enqueue(body.slice(0, Math.floor(body.length / 2)));
        await new Promise((r) => setTimeout(r, 20));
        controller.close(); // short of its Content-Length: the client sees the body cut off
        return;
      }
      for (let i = 0; i < body.length; i += 65536) controller.enqueue(body.slice(i, i + 65536));
      controller.close();
    },
  });
  return new Response(stream, { status: match ? 206 : 200, headers });
}
