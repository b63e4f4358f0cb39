/**
 * Security against a real `shimmy serve`: the API key guards every route and method (and
 * unknown paths answer 401, not 404, without it; only `/health` and `/v1/health` are public); the Host/Origin
 * policy refuses DNS-rebinding and cross-site requests; a cross-site-style `text/plain` POST
 * from a browser, or to a route that changes state, is a 415 and changes nothing; every field that names a model or an adapter refuses paths
 * out of the model folders (files, devices, a FIFO, symlinks, encoded `../`) promptly and
 * without leaking file content; and a WebSocket first frame over 8 MiB is refused.
 *
 * @module
 */

import { join } from "node:path";
import { fixtureLora } from "../fixtures/models.ts";
import { routeTable, TRAVERSAL_NAMES } from "./generators.ts";
import { Histogram, startShimmy, summary, tempDir, tinyModel, Watch } from "./harness.ts";
import {
  answerProblem,
  buildRequest,
  errorCode,
  errorShapeProblem,
  isOllamaPath,
  ollamaErrorProblem,
  rawExchange,
  type RawResponse,
  wsSession,
} from "./wire.ts";

const KEY = "secret";
const MODEL = "tiny-f32";
/** Every request here must answer within this (a FIFO must not hang a request). */
const PROMPT_MS = 5_000;
/** Text that only file contents would put in an answer. */
const LEAKS = [/root:/, /\[fonts\]/i, /for 16-bit app support/i, /\bPATH=/];

interface Exchange {
  label: string;
  path: string;
  response?: RawResponse;
  failure?: string;
  ms: number;
}

async function send(
  port: number,
  label: string,
  method: string,
  path: string,
  headers: [string, string][] = [],
  body?: string,
): Promise<Exchange> {
  const json: [string, string][] =
    body !== undefined && !headers.some(([k]) => k.toLowerCase() === "content-type")
      ? [["Content-Type", "application/json"]]
      : [];
  const result = await rawExchange(
    port,
    buildRequest(port, {
      method,
      path,
      headers: [...json, ...headers],
      ...(body !== undefined ? { body } : {}),
    }),
    { head: method === "HEAD", timeoutMs: PROMPT_MS + 5_000 },
  );
  return {
    label,
    path,
    ...(result.response ? { response: result.response } : { failure: result.failure }),
    ms: result.ms,
  };
}

/** Checks one exchange: status in `statuses`, and (unless HEAD) a JSON error with `code`. */
function expectError(
  e: Exchange,
  statuses: number[],
  code?: string,
  head = false,
): string | undefined {
  if (!e.response) return `${e.label}: no answer (${e.failure})`;
  const { status, text } = e.response;
  if (!statuses.includes(status)) {
    return `${e.label}: ${status}, expected ${statuses.join("/")}: ${text.slice(0, 200)}`;
  }
  if (head) return undefined;
  // Ollama's routes answer {"error": message}, with no code.
  if (isOllamaPath(e.path)) {
    const problem = ollamaErrorProblem(text);
    return problem ? `${e.label}: ${problem}` : undefined;
  }
  const shape = errorShapeProblem(text);
  if (shape) return `${e.label}: ${shape}`;
  if (code !== undefined && errorCode(text) !== code) {
    return `${e.label}: code ${errorCode(text)}, expected ${code}`;
  }
  return undefined;
}

function fail(failures: string[], context: string): void {
  if (failures.length > 0) {
    throw new Error(
      `${failures.length} failures; the first 25:\n  ${
        failures.slice(0, 25).join("\n  ")
      }\n${context}`,
    );
  }
}

const UNKNOWN_PATHS = [
  "/webui/nope.js", // the chat page's files are public, but not a file it lacks
  "/nope",
  "/v1/nope",
  "/api/nope",
  "/admin",
  "/%2e%2e/etc/passwd",
  "/health/x",
];
const AUTH_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

function validBody(path: string): string {
  if (path.endsWith("/responses/input_tokens")) return JSON.stringify({ model: MODEL, input: "x" });
  if (path.endsWith("/chat/completions/control")) {
    return JSON.stringify({ id: "chatcmpl-x", action: "reasoning_end" });
  }
  if (
    path.endsWith("/chat/completions") || path.endsWith("/chat/completions/input_tokens") ||
    path === "/apply-template"
  ) {
    return JSON.stringify({ messages: [{ role: "user", content: "x" }], max_tokens: 2 });
  }
  if (path.endsWith("/responses")) {
    return JSON.stringify({ model: MODEL, input: "x", max_output_tokens: 2 });
  }
  const messages = [{ role: "user", content: "x" }];
  if (path.endsWith("/count_tokens")) return JSON.stringify({ model: MODEL, messages });
  if (path.endsWith("/messages")) return JSON.stringify({ model: MODEL, messages, max_tokens: 2 });
  if (path.endsWith("/embeddings")) return JSON.stringify({ model: MODEL, input: "x" });
  if (path === "/embedding") return JSON.stringify({ model: MODEL, content: "x" });
  if (path.includes("/rerank")) {
    return JSON.stringify({ model: MODEL, query: "x", documents: ["y"] });
  }
  if (path.endsWith("/lora")) return JSON.stringify({ model: MODEL, adapters: [] });
  if (path === "/lora-adapters") return "[]";
  if (path.startsWith("/api/models/")) return JSON.stringify({ model: MODEL });
  if (path === "/v1/streams/lookup") return JSON.stringify({ conversation_ids: ["x"] });
  if (path === "/tokenize") return JSON.stringify({ model: MODEL, content: "x" });
  if (path === "/detokenize") return JSON.stringify({ model: MODEL, tokens: [1] });
  if (path === "/infill") {
    return JSON.stringify({ model: MODEL, input_prefix: "x", input_suffix: "y", n_predict: 2 });
  }
  return JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 2 });
}

/**
 * The status a valid request with the key gets: the served model is no reranker and has no
 * fill-in-the-middle tokens.
 */
function statusWithKey(path: string): number {
  if (path === "/ws/generate") return 426;
  if (path === "/infill") return 501;
  // Without ?conv_id= the kept-stream routes have no stream to name.
  if (path === "/v1/stream") return 400;
  return path.includes("/rerank") ? 400 : 200;
}

Deno.test("security: with --api-key every route and method, and unknown paths, answer 401 without a valid key", async () => {
  // Mean pooling, so the generation model also answers /v1/embeddings.
  await using server = await startShimmy({ args: ["--api-key", KEY, "--pooling", "mean"] });
  const watch = new Watch(server);
  const failures: string[] = [];
  const statuses = new Histogram();
  const paths = [...Object.keys(routeTable()), ...UNKNOWN_PATHS];
  const badAuth: [string, [string, string][]][] = [
    ["no key", []],
    ["wrong key", [["Authorization", "Bearer wrong"]]],
  ];
  const moreBadAuth: [string, [string, string][]][] = [
    ["prefix of the key", [["Authorization", `Bearer ${KEY.slice(0, -1)}`]]],
    ["key plus a character", [["Authorization", `Bearer ${KEY}x`]]],
    ["key without Bearer", [["Authorization", KEY]]],
    ["Basic auth with the key", [["Authorization", `Basic ${btoa(`${KEY}:`)}`]]],
    ["empty Bearer", [["Authorization", "Bearer"]]],
    ["wrong key in X-Api-Key", [["X-Api-Key", "wrong"]]],
    ["prefix of the key in X-Api-Key", [["X-Api-Key", KEY.slice(0, -1)]]],
    ["key in X-Api-Key but a wrong Bearer", [["X-Api-Key", KEY], ["Authorization", "Bearer x"]]],
  ];
  const exchanges: Promise<void>[] = [];
  for (const path of paths) {
    for (const method of AUTH_METHODS) {
      for (
        const [what, headers] of path === "/v1/models" || path === "/v1/completions"
          ? [...badAuth, ...moreBadAuth]
          : badAuth
      ) {
        exchanges.push((async () => {
          const body = ["POST", "PUT", "PATCH"].includes(method) ? validBody(path) : undefined;
          const e = await send(
            server.port,
            `${method} ${path} (${what})`,
            method,
            path,
            headers,
            body,
          );
          statuses.add(e.response?.status ?? e.failure ?? "?");
          if (path === "/health" || path === "/v1/health") {
            // Public: GET answers; other methods get 405, 401, or an empty preflight answer.
            const ok = method === "GET"
              ? [200]
              : method === "OPTIONS"
              ? [204, 401, 405]
              : [200, 401, 405];
            const problem = expectError(
              e,
              ok,
              undefined,
              method === "HEAD" || method === "OPTIONS" || ok.includes(200),
            );
            if (problem) failures.push(problem);
            return;
          }
          const problem = expectError(e, [401], undefined, method === "HEAD");
          if (problem) failures.push(problem);
          if (e.response && /tiny-f32|"models"|"data"/.test(e.response.text)) {
            failures.push(
              `${e.label}: the 401 shows server data: ${e.response.text.slice(0, 200)}`,
            );
          }
        })());
        if (exchanges.length % 16 === 0) await Promise.all(exchanges.splice(0));
      }
    }
  }
  await Promise.all(exchanges);
  for (const query of [`?api_key=${KEY}`, `?key=${KEY}`, `?token=${KEY}`]) {
    const e = await send(server.port, `GET /v1/models${query}`, "GET", `/v1/models${query}`);
    const problem = expectError(e, [401]);
    if (problem) failures.push(problem);
  }
  const upgrade = await send(
    server.port,
    "WebSocket upgrade without a key",
    "GET",
    "/ws/generate",
    [
      ["Upgrade", "websocket"],
      ["Connection", "Upgrade"],
      ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
      ["Sec-WebSocket-Version", "13"],
    ],
  );
  const upgradeProblem = expectError(upgrade, [401]);
  if (upgradeProblem) failures.push(upgradeProblem);

  // With the key, normal behaviour.
  const auth: [string, string][] = [["Authorization", `Bearer ${KEY}`]];
  const normal = new Histogram();
  for (const [path, methods] of Object.entries(routeTable())) {
    for (const method of methods) {
      const body = method === "POST" ? validBody(path) : undefined;
      const e = await send(server.port, `${method} ${path} with the key`, method, path, auth, body);
      normal.add(`${path}:${e.response?.status ?? e.failure}`);
      const expected = statusWithKey(path);
      if (e.response?.status !== expected) {
        failures.push(
          `${e.label}: ${e.response?.status ?? e.failure}, expected ${expected}: ${
            e.response?.text.slice(0, 200)
          }`,
        );
      } else if (expected === 200) {
        const problem = answerProblem(method, path, e.response);
        if (problem) failures.push(`${e.label}: ${problem}`);
      }
    }
  }
  for (const path of UNKNOWN_PATHS.slice(1, 4)) {
    const problem = expectError(
      await send(server.port, `GET ${path} with the key`, "GET", path, auth),
      [404],
    );
    if (problem) failures.push(problem);
  }
  const ws = await wsSession(server.url, JSON.stringify({ prompt: "x", max_tokens: 2 }), {
    timeoutMs: 10_000,
  });
  if (ws.opened) failures.push("A WebSocket without the key was accepted");
  await watch.stop();
  summary("security-api-key", {
    ...watch.figures(),
    requests: statuses.total,
    statuses,
    with_key: normal.total,
    alive: server.alive,
  });
  fail(failures, server.describe());
});

Deno.test("security: Host and Origin policy refuses rebinding and cross-site requests; text/plain POSTs from browsers are 415", async () => {
  await using server = await startShimmy();
  const watch = new Watch(server);
  const { port } = server;
  const failures: string[] = [];
  const check = (problem: string | undefined) => problem && failures.push(problem);
  const completion = JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 2 });

  for (
    const host of [
      "attacker.example",
      `attacker.example:${port}`,
      "localhost.attacker.example",
      `127.0.0.1.nip.io:${port}`,
    ]
  ) {
    check(
      expectError(
        await send(port, `GET /v1/models Host ${host}`, "GET", "/v1/models", [["Host", host]]),
        [403],
        "host_not_allowed",
      ),
    );
    check(
      expectError(
        await send(port, `POST /v1/completions Host ${host}`, "POST", "/v1/completions", [[
          "Host",
          host,
        ]], completion),
        [403],
        "host_not_allowed",
      ),
    );
    check(
      expectError(
        await send(port, `GET /api/models Host ${host}`, "GET", "/api/models", [["Host", host]]),
        [403],
        "host_not_allowed",
      ),
    );
  }
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, "localhost"]) {
    const e = await send(port, `GET /v1/models Host ${host}`, "GET", "/v1/models", [[
      "Host",
      host,
    ]]);
    if (e.response?.status !== 200) {
      failures.push(`${e.label}: ${e.response?.status ?? e.failure}, expected 200`);
    }
  }
  const evil = [
    "http://evil.example",
    `http://localhost.evil.example:${port}`,
    `http://127.0.0.1.evil.example`,
    "null",
  ];
  for (const origin of evil) {
    check(
      expectError(
        await send(port, `POST /v1/completions Origin ${origin}`, "POST", "/v1/completions", [[
          "Origin",
          origin,
        ]], completion),
        [403],
        "origin_not_allowed",
      ),
    );
    check(
      expectError(
        await send(port, `GET /v1/models Origin ${origin}`, "GET", "/v1/models", [[
          "Origin",
          origin,
        ]]),
        [403],
        "origin_not_allowed",
      ),
    );
    const acao = (await send(port, "GET", "GET", "/v1/models", [["Origin", origin]])).response
      ?.headers.get("access-control-allow-origin");
    if (acao) failures.push(`Origin ${origin} got access-control-allow-origin: ${acao}`);
  }
  for (const origin of [`http://localhost:${port}`, `http://127.0.0.1:${port}`]) {
    const get = await send(port, `GET /v1/models Origin ${origin}`, "GET", "/v1/models", [[
      "Origin",
      origin,
    ]]);
    const postE = await send(
      port,
      `POST /v1/completions Origin ${origin}`,
      "POST",
      "/v1/completions",
      [["Origin", origin]],
      completion,
    );
    for (const e of [get, postE]) {
      if (e.response?.status !== 200) {
        failures.push(`${e.label}: ${e.response?.status ?? e.failure}, expected 200`);
      }
    }
  }
  // A form or fetch without preflight sends text/plain: from a browser (Origin, Sec-Fetch-Site)
  // it is refused before anything happens; a route that changes state refuses it from anyone.
  for (
    const [type, browser] of [
      ["text/plain", ["Sec-Fetch-Site", "cross-site"]],
      ["text/plain;charset=UTF-8", ["Origin", `http://localhost:${port}`]],
      ["application/x-www-form-urlencoded", ["Origin", "null"]],
      ["multipart/form-data; boundary=x", ["Sec-Fetch-Site", "same-site"]],
      ["text/plain", undefined],
      ["application/x-www-form-urlencoded", undefined],
    ] as const
  ) {
    for (const path of ["/api/models/unload", "/v1/completions"]) {
      const headers: [string, string][] = [
        ["Content-Type", type],
        ...(browser ? [[browser[0], browser[1]] as [string, string]] : []),
      ];
      const body = path === "/api/models/unload" ? JSON.stringify({ model: MODEL }) : completion;
      const label = `POST ${path} as ${type}${browser ? ` with ${browser[0]}` : ""}`;
      const e = await send(port, label, "POST", path, headers, body);
      if (browser || path === "/api/models/unload") {
        check(expectError(e, [browser?.[1] === "null" ? 403 : 415, 415]));
      } else if (e.response?.status !== 200) {
        // curl's `-d` without a JSON type, from no browser: the body is read as JSON.
        failures.push(`${label}: ${e.response?.status ?? e.failure}, expected 200`);
      }
    }
  }
  const csrf = await send(port, "cross-site text/plain unload", "POST", "/api/models/unload", [[
    "Content-Type",
    "text/plain",
  ], ["Origin", "http://evil.example"]], JSON.stringify({ model: MODEL }));
  check(expectError(csrf, [403, 415]));
  const ps = await (await fetch(`${server.url}/api/ps`)).json();
  if (!ps.models?.some((m: { name: string }) => m.name === MODEL)) {
    failures.push(`The model was unloaded by a refused request: ${JSON.stringify(ps)}`);
  }
  await watch.stop();
  summary("security-host-origin", {
    ...watch.figures(),
    failures: failures.length,
    alive: server.alive,
  });
  fail(failures, server.describe());
});

Deno.test("security: --cors ORIGIN allows that origin with access-control-allow-origin, and only it", async () => {
  await using server = await startShimmy({ args: ["--cors", "http://app.example"] });
  const watch = new Watch(server);
  const { port } = server;
  const failures: string[] = [];
  const completion = JSON.stringify({ model: MODEL, prompt: "x", max_tokens: 2 });
  for (
    const [method, path, body] of [["GET", "/v1/models", undefined], [
      "POST",
      "/v1/completions",
      completion,
    ]] as const
  ) {
    const e = await send(port, `${method} ${path} from http://app.example`, method, path, [[
      "Origin",
      "http://app.example",
    ]], body);
    if (e.response?.status !== 200) {
      failures.push(`${e.label}: ${e.response?.status ?? e.failure}, expected 200`);
    }
    const acao = e.response?.headers.get("access-control-allow-origin");
    if (acao !== "http://app.example" && acao !== "*") {
      failures.push(`${e.label}: access-control-allow-origin is ${acao}`);
    }
    const problem = expectError(
      await send(port, `${method} ${path} from evil`, method, path, [[
        "Origin",
        "http://evil.example",
      ]], body),
      [403],
      "origin_not_allowed",
    );
    if (problem) failures.push(problem);
  }
  const preflight = await send(
    port,
    "preflight from http://app.example",
    "OPTIONS",
    "/v1/completions",
    [
      ["Origin", "http://app.example"],
      ["Access-Control-Request-Method", "POST"],
      ["Access-Control-Request-Headers", "content-type, authorization"],
    ],
  );
  const status = preflight.response?.status ?? 0;
  if (status < 200 || status >= 300) failures.push(`The preflight answered ${status}`);
  await watch.stop();
  summary("security-cors", {
    ...watch.figures(),
    failures: failures.length,
    preflight: status,
  });
  fail(failures, server.describe());
});

Deno.test("security: names and paths of models and adapters never reach files outside the model folders", async () => {
  await using modelDir = await tempDir("sec-model");
  await using extraDir = await tempDir("sec-extra");
  await using outside = await tempDir("sec-outside");
  const adapter = await fixtureLora("tiny-f32-lora");
  await Deno.copyFile(await tinyModel(), join(modelDir.path, "tiny-f32.gguf"));
  await Deno.copyFile(adapter, join(modelDir.path, "tiny-f32-lora.gguf"));
  await Deno.copyFile(adapter, join(extraDir.path, "extra-lora.gguf"));
  // Named after the model, so discovery offers it for tiny-f32 by name.
  await Deno.copyFile(adapter, join(extraDir.path, "tiny-f32-style.gguf"));
  await Deno.copyFile(adapter, join(outside.path, "outside-lora.gguf"));
  await Deno.copyFile(await tinyModel(), join(outside.path, "outside-model.gguf"));
  await using server = await startShimmy({
    models: [join(modelDir.path, "tiny-f32.gguf")],
    args: ["--model-dirs", extraDir.path],
  });
  const watch = new Watch(server);
  // Created after the start, so discovery never meets them: only requests do.
  const fifoIn = join(modelDir.path, "pipe.gguf");
  const fifoOut = join(outside.path, "pipe.gguf");
  for (const fifo of [fifoIn, fifoOut]) {
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    if (!made.success) throw new Error(`mkfifo ${fifo} failed`);
  }
  await Deno.symlink("/etc/passwd", join(modelDir.path, "escape.gguf"));
  await Deno.symlink("/etc", join(modelDir.path, "up"));
  await Deno.symlink(join(outside.path, "outside-lora.gguf"), join(modelDir.path, "link-out.gguf"));
  const names = [
    ...TRAVERSAL_NAMES,
    fifoIn,
    fifoOut,
    join(modelDir.path, "escape.gguf"),
    join(modelDir.path, "up", "passwd"),
    join(modelDir.path, "link-out.gguf"),
    join(modelDir.path, "..", "..", "etc", "passwd"),
    join(outside.path, "outside-lora.gguf"),
    join(outside.path, "outside-model.gguf"),
    `${modelDir.path}/../${outside.path.split("/").pop()}/outside-lora.gguf`,
  ];
  const failures: string[] = [];
  const statuses = new Histogram();
  let slowest = 0;
  const judge = (e: Exchange) => {
    slowest = Math.max(slowest, e.ms);
    statuses.add(e.response?.status ?? e.failure ?? "?");
    const problem = expectError(e, [400, 403, 404]);
    if (problem) failures.push(problem);
    if (e.ms > PROMPT_MS) failures.push(`${e.label}: took ${Math.round(e.ms)} ms`);
    const leak = LEAKS.find((re) => re.test(e.response?.text ?? ""));
    if (leak) {
      failures.push(
        `${e.label}: the answer shows file content (${leak}): ${e.response?.text.slice(0, 200)}`,
      );
    }
  };
  const { port } = server;
  const jobs: (() => Promise<void>)[] = [];
  for (const name of names) {
    const q = JSON.stringify(name).slice(0, 70);
    for (const path of ["/v1/chat/completions", "/v1/completions", "/api/generate"]) {
      // The fields each route reads, so the name is looked up (a stray field is a 400 first).
      const base = path === "/v1/chat/completions"
        ? { messages: [{ role: "user", content: "x" }], max_tokens: 2 }
        : { prompt: "x", max_tokens: 2 };
      jobs.push(async () =>
        judge(
          await send(
            port,
            `model ${q} on ${path}`,
            "POST",
            path,
            [],
            JSON.stringify({ ...base, model: name }),
          ),
        )
      );
      jobs.push(async () =>
        judge(
          await send(
            port,
            `lora[].name ${q} on ${path}`,
            "POST",
            path,
            [],
            JSON.stringify({ ...base, model: MODEL, lora: [{ name, scale: 1 }] }),
          ),
        )
      );
    }
    for (const path of ["/api/models/load", "/api/models/unload"]) {
      jobs.push(async () =>
        judge(
          await send(
            port,
            `model ${q} on ${path}`,
            "POST",
            path,
            [],
            JSON.stringify({ model: name }),
          ),
        )
      );
    }
    jobs.push(async () =>
      judge(
        await send(
          port,
          `/api/lora model ${q}`,
          "POST",
          "/api/lora",
          [],
          JSON.stringify({ model: name, adapters: [] }),
        ),
      )
    );
    jobs.push(async () =>
      judge(
        await send(
          port,
          `/api/lora adapters[].path ${q}`,
          "POST",
          "/api/lora",
          [],
          JSON.stringify({ model: MODEL, adapters: [{ path: name, scale: 1 }] }),
        ),
      )
    );
    jobs.push(async () =>
      judge(
        await send(
          port,
          `/api/lora adapters[].name ${q}`,
          "POST",
          "/api/lora",
          [],
          JSON.stringify({ model: MODEL, adapters: [{ name, scale: 1 }] }),
        ),
      )
    );
    jobs.push(async () =>
      judge(
        await send(
          port,
          `GET /api/lora?model=${q}`,
          "GET",
          `/api/lora?model=${encodeURIComponent(name)}`,
        ),
      )
    );
    jobs.push(async () => {
      const outcome = await wsSession(
        server.url,
        JSON.stringify({ model: name, prompt: "x", max_tokens: 2 }),
        { timeoutMs: PROMPT_MS + 5_000 },
      );
      const frame = outcome.frames[0] ?? "";
      statuses.add(`ws${outcome.closeCode}`);
      if (outcome.timedOut || outcome.ms > PROMPT_MS) {
        failures.push(`WebSocket model ${q}: took ${Math.round(outcome.ms)} ms`);
      }
      if (errorShapeProblem(frame) || outcome.closeCode !== 1008) {
        failures.push(
          `WebSocket model ${q}: close ${outcome.closeCode} after ${frame.slice(0, 200)}`,
        );
      }
      if (LEAKS.some((re) => re.test(outcome.frames.join("")))) {
        failures.push(`WebSocket model ${q}: file content in the answer`);
      }
    });
  }
  for (let i = 0; i < jobs.length; i += 8) {
    await Promise.all(jobs.slice(i, i + 8).map((job) => job()));
  }

  // What is allowed: adapters by path inside the model folders, and by name.
  const allowed: [string, unknown][] = [
    ["path in the folder of --model", { path: join(modelDir.path, "tiny-f32-lora.gguf") }],
    ["path in --model-dirs", { path: join(extraDir.path, "extra-lora.gguf") }],
    ["name discovered for the model", { name: "tiny-f32-style" }],
  ];
  for (const [what, item] of allowed) {
    const e = await send(
      port,
      `/api/lora ${what}`,
      "POST",
      "/api/lora",
      [],
      JSON.stringify({ model: MODEL, adapters: [{ ...item as object, scale: 1 }] }),
    );
    if (e.response?.status !== 200) {
      failures.push(
        `${e.label}: ${e.response?.status ?? e.failure}, expected 200: ${
          e.response?.text.slice(0, 200)
        }`,
      );
    }
  }
  const detach = await send(
    port,
    "/api/lora detach",
    "POST",
    "/api/lora",
    [],
    JSON.stringify({ model: MODEL, adapters: [] }),
  );
  if (detach.response?.status !== 200) {
    failures.push(`Detaching answered ${detach.response?.status}`);
  }
  const health = await fetch(`${server.url}/health`).then((r) => r.status, () => 0);
  await watch.stop();
  summary("security-paths", {
    ...watch.figures(),
    requests: statuses.total,
    statuses,
    slowest_ms: Math.round(slowest),
    health_after: health,
  });
  if (health !== 200) failures.push(`/health answered ${health} at the end`);
  fail(failures, server.describe());
});

Deno.test("security: a WebSocket first frame over 8 MiB is refused with 1009 and the server stays healthy", async () => {
  await using server = await startShimmy();
  const watch = new Watch(server);
  const big = JSON.stringify({ prompt: "a".repeat(8 * 1024 * 1024 + 1024), max_tokens: 2 });
  const outcome = await wsSession(server.url, big, { timeoutMs: 15_000 });
  const frames = outcome.frames.map((f) => f.slice(0, 200));
  // Refused for its size: an error frame that says so (not, say, a context-length error after
  // the 8 MiB were parsed and tokenized).
  const first = outcome.frames[0] ?? "";
  const errorFrame = outcome.frames.length === 1 && errorShapeProblem(first) === undefined &&
    (/too_large/.test(errorCode(first) ?? "") ||
      /too large|larger than|at most \d+ bytes/i.test(first));
  const health = await fetch(`${server.url}/health`).then((r) => r.status, () => 0);
  const after = await wsSession(server.url, JSON.stringify({ prompt: "x", max_tokens: 4 }), {
    timeoutMs: 15_000,
  });
  const afterFinal = after.frames[after.frames.length - 1] ?? "";
  await watch.stop();
  summary("security-ws-size", {
    ...watch.figures(),
    close: outcome.closeCode,
    frames: outcome.frames.length,
    ms: Math.round(outcome.ms),
    health_after: health,
  });
  const failures: string[] = [];
  if (!outcome.opened) failures.push("The handshake failed");
  if (outcome.timedOut) failures.push("The server neither closed nor answered within 15 s");
  else if (outcome.closeCode !== 1009 && !errorFrame) {
    failures.push(
      `Closed with ${outcome.closeCode} (expected 1009, or a size error frame then close); frames: ${
        JSON.stringify(frames)
      }`,
    );
  }
  if (outcome.frames.length > 1 || (outcome.frames.length === 1 && !errorFrame)) {
    failures.push(`The oversized request was answered: ${JSON.stringify(frames)}`);
  }
  if (health !== 200 || !server.alive) failures.push(`/health after the big frame: ${health}`);
  if (after.closeCode !== 1000 || !afterFinal.includes('"done":true')) {
    failures.push(
      `A normal WebSocket afterwards closed ${after.closeCode} after ${afterFinal.slice(0, 200)}`,
    );
  }
  fail(failures, server.describe());
});
