/**
 * Faults: what clients, signals and the file system can do to a running `shimmy serve`.
 * (a) a storm of connections dropped at random points; (b) stalled uploads, partial and
 * trickled headers, idle keep-alive connections; (c) a slow reader next to a fast one;
 * (d) SIGTERM in the middle of SSE, JSON and WebSocket streams, with a stalled upload open;
 * (e) model files truncated and deleted under the server; (f) 16 simultaneous first loads;
 * (g) generation racing `/api/models/unload` and LoRA swaps. Servers run with
 * `--body-timeout 1s --header-timeout 1s --idle-timeout 2s`.
 *
 * @module
 */

import { join } from "node:path";
import { fixtureLora } from "../fixtures/models.ts";
import { Rand } from "./generators.ts";
import {
  apiPs,
  byMode,
  Histogram,
  runPool,
  sleep,
  startShimmy,
  summary,
  tempDir,
  tinyModel,
  waitFor,
  waitIdle,
  Watch,
} from "./harness.ts";
import {
  awaitServerEnd,
  buildRequest,
  closeQuietly,
  errorCode,
  errorShapeProblem,
  maxGap,
  readTimed,
  sseEvents,
  wsSession,
} from "./wire.ts";

const TIMEOUTS = ["--body-timeout", "1s", "--header-timeout", "1s", "--idle-timeout", "2s"];
const encoder = new TextEncoder();

function post(url: string, path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: signal ?? AbortSignal.timeout(120_000),
  });
}

Deno.test("faults (a): 200 connections dropped at random points leave the server serving with no busy slot", async () => {
  await using server = await startShimmy({
    args: [...TIMEOUTS, "--parallel", "4", "--ctx-size", "4096"],
  });
  const watch = new Watch(server);
  const rand = new Rand(`storm-${Date.now()}`);
  const kinds = new Histogram();
  const paths = ["/v1/completions", "/v1/chat/completions", "/api/generate"];
  const started = performance.now();
  await runPool(200, 16, started + 60_000, async () => {
    const path = rand.pick(paths);
    const kind = rand.pick(["headers", "mid-body", "after-send", "mid-stream"] as const);
    const stream = kind === "mid-stream" || rand.chance(0.5);
    // Long generations: one the server fails to cancel keeps its slot busy for many seconds.
    const bytes = buildRequest(server.port, {
      method: "POST",
      path,
      headers: [["Content-Type", "application/json"]],
      body: JSON.stringify({
        prompt: "tell me a story",
        messages: [{ role: "user", content: "tell me a story" }],
        max_tokens: 3000,
        ignore_eos: true,
        stream,
      }),
    });
    const headEnd = new TextDecoder().decode(bytes).indexOf("\r\n\r\n") + 4;
    kinds.add(kind);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    try {
      if (kind === "headers") {
        await conn.write(bytes.subarray(0, rand.int(1, headEnd - 1)));
        await sleep(rand.int(0, 50));
      } else if (kind === "mid-body") {
        await conn.write(bytes.subarray(0, rand.int(headEnd, bytes.length - 1)));
        await sleep(rand.int(0, 50));
      } else if (kind === "after-send") {
        await conn.write(bytes);
        await sleep(rand.int(0, 30));
      } else {
        await conn.write(bytes);
        const buffer = new Uint8Array(256);
        const reads = rand.int(1, 4);
        for (let i = 0; i < reads; i++) if ((await conn.read(buffer)) === null) break;
      }
    } catch {
      // The server may close first; that is allowed.
    } finally {
      closeQuietly(conn);
    }
  });
  const stormMs = performance.now() - started;
  const after = await post(server.url, "/v1/completions", { prompt: "x", max_tokens: 8 }).then(
    async (r) => ({ status: r.status, text: await r.text() }),
    (e) => ({ status: 0, text: String(e) }),
  );
  const ps = await waitIdle(server.url, 5_000).catch(() => []);
  await waitFor(() => (server.fdCount() ?? 0) <= (watch.fdsBefore ?? 0) + 2, 5_000);
  await watch.stop();
  summary("faults-a-storm", {
    ...watch.figures(),
    dropped: kinds.total,
    kinds,
    storm_seconds: (stormMs / 1000).toFixed(1),
    after_status: after.status,
    busy_after: JSON.stringify(ps.map((m) => [m.busy_slots, m.queued])),
  });
  const failures: string[] = [];
  if (!server.alive) failures.push("The server died");
  if (after.status !== 200) {
    failures.push(
      `A normal request after the storm got ${after.status}: ${after.text.slice(0, 300)}`,
    );
  }
  if (!(ps.length > 0 && ps.every((m) => m.busy_slots === 0 && m.queued === 0))) {
    failures.push(`/api/ps still shows work 5 s after the storm: ${JSON.stringify(ps)}`);
  }
  if (failures.length > 0) throw new Error(`${failures.join("\n")}\n${server.describe()}`);
});

Deno.test("faults (b): stalled uploads get 408 or are closed; partial, trickled and idle connections are closed", async () => {
  await using server = await startShimmy({ args: TIMEOUTS });
  const watch = new Watch(server);
  const failures: string[] = [];
  const connect = () => Deno.connect({ hostname: "127.0.0.1", port: server.port });

  // A body that stops after one byte of 1000: 408 (JSON, request_timeout) or closed, after ~1 s.
  const stalled = await connect();
  await stalled.write(encoder.encode(
    `POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nContent-Type: application/json\r\n` +
      "Content-Length: 1000\r\n\r\n{",
  ));
  const upload = await awaitServerEnd(stalled, 6_000);
  const status = /^HTTP\/1\.1 (\d{3})/.exec(upload.text)?.[1];
  const body = upload.text.slice(upload.text.indexOf("\r\n\r\n") + 4);
  if (upload.outcome === "timeout") {
    failures.push("A stalled upload was neither answered nor closed within 6 s");
  } else if (status !== undefined) {
    if (status !== "408") {
      failures.push(`A stalled upload got ${status}, expected 408: ${upload.text.slice(0, 300)}`);
    } else if (errorShapeProblem(body) || errorCode(body) !== "request_timeout") {
      failures.push(`The 408 body is not a request_timeout JSON error: ${body.slice(0, 300)}`);
    }
  }
  if (upload.ms > 4_000) {
    failures.push(`A stalled upload was held ${Math.round(upload.ms)} ms (body timeout 1 s)`);
  }

  // Headers that stop in the middle: closed after the header timeout.
  const partial = await connect();
  await partial.write(
    encoder.encode(`POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le`),
  );
  const partialEnd = await awaitServerEnd(partial, 6_000);
  if (partialEnd.outcome === "timeout" || partialEnd.ms > 4_000) {
    failures.push(`Partial headers were held ${Math.round(partialEnd.ms)} ms (header timeout 1 s)`);
  }
  if (/^HTTP\/1\.1 2/.test(partialEnd.text)) failures.push("Partial headers got a 2xx answer");

  // Headers trickled one byte every 200 ms: the trickle does not extend the header timeout.
  const trickle = await connect();
  const line = encoder.encode(
    `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${"s".repeat(200)}`,
  );
  const trickleStart = performance.now();
  let trickleOpen = true;
  const dripping = (async () => {
    for (
      let i = 0;
      i < line.length && trickleOpen && performance.now() - trickleStart < 8_000;
      i++
    ) {
      await trickle.write(line.subarray(i, i + 1));
      await sleep(200);
    }
  })().catch(() => {});
  const trickleEnd = await awaitServerEnd(trickle, 8_000);
  trickleOpen = false;
  await dripping;
  if (trickleEnd.outcome === "timeout" || trickleEnd.ms > 4_000) {
    failures.push(
      `Trickled headers were held ${Math.round(trickleEnd.ms)} ms (header timeout 1 s)`,
    );
  }

  // An idle keep-alive connection after one request: closed after the idle timeout.
  const idle = await connect();
  await idle.write(
    encoder.encode(`GET /health HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n\r\n`),
  );
  const idleEnd = await awaitServerEnd(idle, 8_000);
  if (!/^HTTP\/1\.1 200/.test(idleEnd.text)) {
    failures.push(`The keep-alive request got: ${idleEnd.text.slice(0, 200)}`);
  }
  if (idleEnd.outcome === "timeout" || idleEnd.ms > 5_000) {
    failures.push(
      `An idle keep-alive connection was held ${Math.round(idleEnd.ms)} ms (idle timeout 2 s)`,
    );
  }

  const health = await fetch(`${server.url}/health`).then((r) => r.status, () => 0);
  await watch.stop();
  summary("faults-b-timeouts", {
    ...watch.figures(),
    stalled_upload: `${status ?? upload.outcome}@${Math.round(upload.ms)}ms`,
    partial_headers: `${partialEnd.outcome}@${Math.round(partialEnd.ms)}ms`,
    trickled_headers: `${trickleEnd.outcome}@${Math.round(trickleEnd.ms)}ms`,
    idle_keepalive: `${idleEnd.outcome}@${Math.round(idleEnd.ms)}ms`,
    health_after: health,
  });
  if (health !== 200 || !server.alive) failures.push(`/health after the stalls: ${health}`);
  if (failures.length > 0) throw new Error(`${failures.join("\n")}\n${server.describe()}`);
});

Deno.test("faults (c): a client that reads very slowly does not slow down another client's stream", async () => {
  await using server = await startShimmy({
    args: [...TIMEOUTS, "--parallel", "4", "--ctx-size", "8192"],
  });
  const watch = new Watch(server);
  const fast = async () => {
    const response = await post(server.url, "/v1/completions", {
      prompt: "fast",
      max_tokens: 64,
      ignore_eos: true,
      stream: true,
    });
    const read = await readTimed(response);
    return {
      gap: maxGap(read.times),
      ms: read.times[read.times.length - 1] ?? 0,
      done: read.text.endsWith("data: [DONE]\n\n"),
    };
  };
  const alone = await fast();
  // The slow client asks for a long stream, reads nothing for 3 s, then 512 bytes every 250 ms.
  const slow = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await slow.write(buildRequest(server.port, {
    method: "POST",
    path: "/v1/completions",
    headers: [["Content-Type", "application/json"]],
    body: JSON.stringify({ prompt: "slow", max_tokens: 8000, ignore_eos: true, stream: true }),
  }));
  let slowOpen = true;
  const slowReader = (async () => {
    await sleep(3_000);
    const buffer = new Uint8Array(512);
    while (slowOpen && (await slow.read(buffer)) !== null) await sleep(250);
  })().catch(() => {});
  await sleep(500);
  const beside = [];
  for (let i = 0; i < 3; i++) beside.push(await fast());
  slowOpen = false;
  closeQuietly(slow);
  await slowReader;
  const worstGap = Math.max(...beside.map((b) => b.gap));
  const worstMs = Math.max(...beside.map((b) => b.ms));
  const ps = await waitIdle(server.url, 5_000);
  await watch.stop();
  summary("faults-c-slow-client", {
    ...watch.figures(),
    alone_gap_ms: Math.round(alone.gap),
    alone_ms: Math.round(alone.ms),
    beside_gap_ms: Math.round(worstGap),
    beside_ms: Math.round(worstMs),
  });
  const failures: string[] = [];
  if (!beside.every((b) => b.done)) {
    failures.push("A fast stream beside the slow client did not end with [DONE]");
  }
  if (worstGap > Math.max(1_000, 5 * alone.gap)) {
    failures.push(
      `Token gaps beside a slow client reached ${Math.round(worstGap)} ms (alone: ${
        Math.round(alone.gap)
      } ms)`,
    );
  }
  if (worstMs > 3 * alone.ms + 2_000) {
    failures.push(
      `Streams beside a slow client took ${Math.round(worstMs)} ms (alone: ${
        Math.round(alone.ms)
      } ms)`,
    );
  }
  if (!ps.every((m) => m.busy_slots === 0)) {
    failures.push(`Slots busy after the slow client left: ${JSON.stringify(ps)}`);
  }
  if (failures.length > 0) throw new Error(`${failures.join("\n")}\n${server.describe()}`);
});

/** Opens a connection that sends headers with Content-Length 1000 and one body byte. */
async function stalledUpload(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode(
    `POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
      "Content-Length: 1000\r\n\r\n{",
  ));
  return conn;
}

interface StreamEnd {
  kind: string;
  ms: number;
  problem?: string;
  /** How it ended: `finished`, `cancelled`, or what went wrong. */
  how: string;
}

Deno.test("faults (d): SIGTERM lets streams within the grace finish, tells the others they were cut off, and exits 0", async () => {
  // 4 s: under a load average of 5 on 2 cores, the 48-token JSON answer once needed more than 2.
  const GRACE_MS = 4_000;
  await using server = await startShimmy({
    args: [...TIMEOUTS, "--shutdown-grace", "4s", "--parallel", "8", "--ctx-size", "8192"],
  });
  const watch = new Watch(server);
  // SIGTERM is sent once every stream has its first token. Short streams then need a few
  // steps (JSON ones, whose start cannot be seen, a few more); long ones run far past the
  // grace. No speed is assumed: a busy machine may be 100 times slower than an idle one.
  const shortTokens = 16;
  const longTokens = 8_000;
  let sigtermAt = 0;
  const since = () => performance.now() - sigtermAt;

  const sse = async (tokens: number, firstToken: () => void): Promise<StreamEnd> => {
    const response = await post(server.url, "/v1/chat/completions", {
      messages: [{ role: "user", content: "go" }],
      max_tokens: tokens,
      ignore_eos: true,
      stream: true,
    });
    const read = await readTimed(response, {
      onChunk: (_, n) => {
        if (n === 1) firstToken();
        return true;
      },
    });
    const { events, problem } = sseEvents(read.text);
    const finish = events.map((e) => /"finish_reason":"(\w+)"/.exec(e)?.[1]).find((f) => f);
    const last = events[events.length - 1] ?? "";
    // Finished: a finish chunk and [DONE]. Cut off: an error event saying so, and no finish.
    const finished = finish === "length" && last === "[DONE]";
    const cutOff = finish === undefined && /"code":"shutting_down"/.test(last);
    return {
      kind: `sse-${tokens === longTokens ? "long" : "short"}`,
      ms: since(),
      how: finished ? "finished" : cutOff ? "cancelled" : "broken",
      ...(!problem && !read.cut && (finished || cutOff) ? {} : {
        problem: `SSE ended with neither a finish and [DONE] nor a shutting_down error: ${
          problem ?? ""
        } …${read.text.slice(-200)}`,
      }),
    };
  };
  const json = async (tokens: number): Promise<StreamEnd> => {
    const kind = `json-${tokens === longTokens ? "long" : "short"}`;
    try {
      const response = await post(server.url, "/v1/completions", {
        prompt: "go",
        max_tokens: tokens,
        ignore_eos: true,
      });
      const text = await response.text();
      const parsed = JSON.parse(text);
      const finished = response.status === 200 && parsed.choices?.[0]?.finish_reason === "length";
      const cutOff = response.status === 503 && parsed.error?.code === "shutting_down";
      return {
        kind,
        ms: since(),
        how: finished ? "finished" : cutOff ? "cancelled" : "broken",
        ...(finished || cutOff
          ? {}
          : { problem: `JSON answer ${response.status}: ${text.slice(0, 200)}` }),
      };
    } catch (error) {
      return {
        kind,
        ms: since(),
        how: "broken",
        problem: `JSON request failed: ${(error as Error).message}`,
      };
    }
  };
  const ws = async (tokens: number, firstToken: () => void): Promise<StreamEnd> => {
    const outcome = await wsSession(
      server.url,
      JSON.stringify({ prompt: "go", max_tokens: tokens, ignore_eos: true }),
      {
        timeoutMs: 20_000,
        onFrame: (_, __, n) => {
          if (n === 1) firstToken();
        },
      },
    );
    const kind = `ws-${tokens === longTokens ? "long" : "short"}`;
    const last = outcome.frames[outcome.frames.length - 1] ?? "";
    let final: { done?: boolean; finish_reason?: string; error?: { code?: string } } = {};
    try {
      final = JSON.parse(last);
    } catch {
      // Reported below.
    }
    const finished = final.done === true && final.finish_reason === "length" &&
      outcome.closeCode === 1000;
    const cutOff = final.error?.code === "shutting_down" && outcome.closeCode === 1001;
    const ok = finished || cutOff;
    return {
      kind,
      ms: since(),
      how: finished ? "finished" : cutOff ? "cancelled" : "broken",
      ...(ok ? {} : {
        problem: `WebSocket ended with close ${outcome.closeCode} after ${last.slice(0, 200)}`,
      }),
    };
  };

  const firsts: Promise<void>[] = [];
  const signalFirst = () => {
    let done!: () => void;
    firsts.push(new Promise<void>((resolve) => (done = resolve)));
    return done;
  };
  const ends = [json(longTokens), sse(longTokens, signalFirst()), ws(longTokens, signalFirst())];
  await Promise.race([Promise.all(firsts), sleep(10_000)]);
  ends.push(json(shortTokens * 3), sse(shortTokens, signalFirst()), ws(shortTokens, signalFirst()));
  await Promise.race([Promise.all(firsts), sleep(10_000)]);
  const stalled = await stalledUpload(server.port);
  const stalledEnd = awaitServerEnd(stalled, 15_000);
  await watch.stop();
  sigtermAt = performance.now();
  const exit = await server.terminate(GRACE_MS + 10_000);
  const results = await Promise.all(ends);
  const upload = await stalledEnd;
  summary("faults-d-sigterm", {
    ...watch.figures(),
    short_tokens: shortTokens,
    exit_code: exit.status.code,
    exit_ms: Math.round(exit.ms),
    streams: results.map((r) => `${r.kind}:${r.how}@${Math.round(r.ms)}ms`).join(","),
    stalled_upload: `${upload.outcome}@${Math.round(upload.ms)}ms`,
  });
  const failures: string[] = [];
  if (exit.status.code !== 0) {
    failures.push(`Exit code ${exit.status.code} (signal ${exit.status.signal})`);
  }
  if (exit.ms > GRACE_MS + 3_000) {
    failures.push(
      `The process took ${Math.round(exit.ms)} ms to exit (grace ${GRACE_MS} ms + 3 s)`,
    );
  }
  for (const r of results) {
    if (r.problem) failures.push(`${r.kind}: ${r.problem}`);
    if (r.kind.endsWith("short") && r.how !== "finished") {
      failures.push(`${r.kind} was ${r.how}, but it fit in the grace`);
    }
    if (r.kind.endsWith("long") && r.how === "finished") {
      failures.push(`${r.kind} finished: the test's long stream was too short`);
    }
    if (r.kind.endsWith("long") && r.ms < GRACE_MS - 500) {
      failures.push(
        `${r.kind} ended ${Math.round(r.ms)} ms after SIGTERM, before the grace ran out`,
      );
    }
  }
  if (failures.length > 0) throw new Error(`${failures.join("\n")}\n${server.describe()}`);
});

Deno.test("faults (d): a stalled upload and half-sent headers do not hold SIGTERM past the grace", async () => {
  await using server = await startShimmy({
    args: [
      "--body-timeout",
      "60s",
      "--header-timeout",
      "60s",
      "--idle-timeout",
      "60s",
      "--shutdown-grace",
      "2s",
    ],
  });
  const watch = new Watch(server);
  const stalled = await stalledUpload(server.port);
  const partial = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await partial.write(encoder.encode("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: "));
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await sleep(300);
  await watch.stop();
  const exit = await server.terminate(15_000);
  for (const conn of [stalled, partial, idle]) closeQuietly(conn);
  summary("faults-d-stalled-sigterm", {
    ...watch.figures(),
    exit_code: exit.status.code,
    exit_ms: Math.round(exit.ms),
  });
  if (exit.status.code !== 0 || exit.ms > 5_000) {
    throw new Error(
      `With stalled connections open, SIGTERM exited ${exit.status.code} after ${
        Math.round(exit.ms)
      } ms (limit 5000)\n${server.describe()}`,
    );
  }
});

/** A request's status and body, or status 0 and the error when the request failed. */
async function attempt(
  url: string,
  path: string,
  body: unknown,
): Promise<{ status: number; text: string }> {
  try {
    const response = await post(url, path, body, AbortSignal.timeout(30_000));
    return { status: response.status, text: await response.text() };
  } catch (error) {
    return { status: 0, text: String(error) };
  }
}

Deno.test("faults (e): model files truncated or deleted while serving give answers or JSON errors, never a crash", async () => {
  await using dir = await tempDir("faults-e");
  const source = await tinyModel();
  const file = (name: string) => join(dir.path, `${name}.gguf`);
  for (const name of ["fault-deleted", "fault-truncated", "fault-lazy", "fault-empty"]) {
    await Deno.copyFile(source, file(name));
  }
  // Memory-mapped weights cannot survive their file being truncated (SIGBUS on the next read,
  // as in every mmap-based server): --no-mmap reads them into memory instead.
  await using server = await startShimmy({
    models: [file("fault-deleted"), file("fault-truncated")],
    args: [...TIMEOUTS, "--model-dirs", dir.path, "--max-models", "4", "--no-mmap"],
  });
  const watch = new Watch(server);
  const outcomes = new Histogram();
  const failures: string[] = [];
  const generate = async (model: string, why: string, allowOk: boolean) => {
    for (const path of ["/v1/completions", "/api/generate"]) {
      const result = await attempt(server.url, path, { model, prompt: "x", max_tokens: 8 });
      outcomes.add(`${model}:${result.status}`);
      if (!server.alive) {
        failures.push(`The server died: ${why} (${path})`);
        return;
      }
      if (result.status === 200 && allowOk) continue;
      if (result.status === 0) failures.push(`${why}: no answer (${result.text})`);
      else if (result.status < 400) {
        failures.push(`${why}: got ${result.status}, expected a JSON error`);
      } else if (result.status === 500) failures.push(`${why}: 500 ${result.text.slice(0, 300)}`);
      else if (errorShapeProblem(result.text)) {
        failures.push(`${why}: ${errorShapeProblem(result.text)}`);
      }
    }
  };
  await generate("fault-deleted", "before any change", true);
  await Deno.remove(file("fault-deleted"));
  await generate("fault-deleted", "a loaded model whose file was deleted", true);
  const size = (await Deno.stat(file("fault-truncated"))).size;
  await Deno.truncate(file("fault-truncated"), Math.floor(size / 2));
  await generate("fault-truncated", "a loaded model whose file was truncated", true);
  await Deno.truncate(file("fault-lazy"), Math.floor(size / 3));
  await generate("fault-lazy", "a model not loaded yet whose file was truncated", false);
  await Deno.truncate(file("fault-empty"), 0);
  await generate("fault-empty", "a model not loaded yet whose file was emptied", false);
  const load = await attempt(server.url, "/api/models/load", { model: "fault-lazy" });
  outcomes.add(`load-lazy:${load.status}`);
  if (load.status < 400 || load.status === 500 || errorShapeProblem(load.text)) {
    failures.push(
      `Loading the truncated model answered ${load.status}: ${load.text.slice(0, 200)}`,
    );
  }
  const unload = await attempt(server.url, "/api/models/unload", { model: "fault-deleted" });
  outcomes.add(`unload-deleted:${unload.status}`);
  await generate(
    "fault-deleted",
    "a deleted model after unload (reload from a missing file)",
    false,
  );
  const health = await fetch(`${server.url}/health`).then((r) => r.status, () => 0);
  await watch.stop();
  summary("faults-e-files", {
    ...watch.figures(),
    outcomes,
    health_after: health,
    alive: server.alive,
  });
  if (health !== 200) failures.push(`/health answered ${health} at the end`);
  if (failures.length > 0) throw new Error(`${failures.join("\n")}\n${server.describe()}`);
});

Deno.test("faults (f): 16 simultaneous first requests to a model not loaded yet all succeed", async () => {
  await using dir = await tempDir("faults-f");
  await Deno.copyFile(await tinyModel(), join(dir.path, "first-load.gguf"));
  await using server = await startShimmy({
    models: [],
    args: [...TIMEOUTS, "--model-dirs", dir.path],
  });
  const watch = new Watch(server);
  const before = await apiPs(server.url);
  const results = await Promise.all(
    Array.from(
      { length: 16 },
      (_, i) =>
        i % 2
          ? attempt(server.url, "/v1/chat/completions", {
            model: "first-load",
            messages: [{ role: "user", content: "x" }],
            max_tokens: 8,
          })
          : attempt(server.url, "/v1/completions", {
            model: "first-load",
            prompt: "x",
            max_tokens: 8,
          }),
    ),
  );
  const after = await apiPs(server.url);
  const statuses = new Histogram();
  for (const r of results) statuses.add(r.status);
  await watch.stop();
  summary("faults-f-first-loads", {
    ...watch.figures(),
    statuses,
    loaded_before: before.length,
    loaded_after: after.map((m) => m.name).join(","),
  });
  const bad = results.filter((r) => r.status !== 200);
  if (before.length !== 0 || bad.length > 0 || after.length !== 1) {
    throw new Error(
      `Loaded before: ${before.length}, after: ${
        JSON.stringify(after)
      }; ${bad.length} of 16 failed:\n  ` +
        bad.slice(0, 5).map((r) => `${r.status} ${r.text.slice(0, 200)}`).join("\n  ") +
        `\n${server.describe()}`,
    );
  }
});

Deno.test("faults (g): generation racing /api/models/unload and LoRA swaps completes; a busy unload is a 503", async () => {
  await using dir = await tempDir("faults-g");
  await Deno.copyFile(await tinyModel(), join(dir.path, "racer.gguf"));
  await Deno.copyFile(await fixtureLora("tiny-f32-lora"), join(dir.path, "racer-lora.gguf"));
  await using server = await startShimmy({
    models: [join(dir.path, "racer.gguf")],
    args: [...TIMEOUTS, "--model-dirs", dir.path, "--parallel", "4", "--ctx-size", "8192"],
  });
  const watch = new Watch(server);
  const failures: string[] = [];
  const known = await (await fetch(`${server.url}/api/lora?model=racer`)).json();
  if (!JSON.stringify(known.known ?? []).includes("racer-lora")) {
    failures.push(`The adapter racer-lora was not discovered for racer: ${JSON.stringify(known)}`);
  }
  const rand = new Rand(`race-${Date.now()}`);
  const statuses = new Histogram();

  // Phase 1: four generating clients (JSON, SSE, WebSocket; some with the adapter) against a
  // client that unloads the model and swaps, detaches and rescales adapters at random.
  const deadline = performance.now() + byMode(6_000, 60_000);
  const generations = Array.from({ length: 4 }, async (_, worker) => {
    for (let i = 0; i < 10_000 && performance.now() < deadline && server.alive; i++) {
      const lora = rand.chance(0.4)
        ? { lora: [{ name: "racer-lora", scale: rand.pick([0.5, 1]) }] }
        : {};
      const body = { model: "racer", prompt: "race", max_tokens: rand.int(4, 32), ...lora };
      if (rand.chance(0.25)) {
        const outcome = await wsSession(server.url, JSON.stringify(body), { timeoutMs: 30_000 });
        const final = outcome.frames[outcome.frames.length - 1] ?? "";
        statuses.add(`gen-ws${outcome.closeCode}`);
        if (outcome.closeCode !== 1000 || !final.includes('"done":true')) {
          failures.push(
            `worker ${worker}: WebSocket generation closed ${outcome.closeCode} after ${
              final.slice(0, 200)
            }`,
          );
        }
        continue;
      }
      const stream = rand.chance(0.5);
      const result = await attempt(server.url, "/v1/completions", { ...body, stream });
      statuses.add(`gen${result.status}`);
      if (result.status !== 200 || (stream && !result.text.endsWith("data: [DONE]\n\n"))) {
        failures.push(`worker ${worker}: generation ${result.status}: ${result.text.slice(-300)}`);
      }
    }
  });
  const swaps = (async () => {
    for (let i = 0; i < 10_000 && performance.now() < deadline && server.alive; i++) {
      const action = rand.pick(["unload", "attach", "detach", "path", "rescale"] as const);
      const result = action === "unload"
        ? await attempt(server.url, "/api/models/unload", { model: "racer" })
        : await attempt(server.url, "/api/lora", {
          model: "racer",
          adapters: action === "detach"
            ? []
            : action === "path"
            ? [{ path: join(dir.path, "racer-lora.gguf"), scale: 1 }]
            : [{ name: "racer-lora", scale: action === "rescale" ? rand.pick([0.25, 0.75]) : 1 }],
        });
      statuses.add(`${action}${result.status}`);
      const allowed = action === "unload" ? [200, 503] : [200];
      if (
        !allowed.includes(result.status) || (result.status >= 400 && errorShapeProblem(result.text))
      ) {
        failures.push(`${action} answered ${result.status}: ${result.text.slice(0, 200)}`);
      }
      await sleep(rand.int(0, 50));
    }
  })();
  await Promise.all([...generations, swaps]);

  // Phase 2: while a long stream runs, every unload is a 503 JSON error and the stream completes.
  const tokens = 300;
  let first!: () => void;
  const started = new Promise<void>((resolve) => (first = resolve));
  let running = true;
  const long = (async () => {
    try {
      const response = await post(server.url, "/v1/completions", {
        model: "racer",
        prompt: "long",
        max_tokens: tokens,
        ignore_eos: true,
        stream: true,
      });
      return (await readTimed(response, { onChunk: (_, n) => (n === 1 && first(), true) })).text;
    } catch (error) {
      return String(error);
    } finally {
      running = false;
      first();
    }
  })();
  await started;
  let busyUnloads = 0;
  while (running && busyUnloads < 20) {
    const result = await attempt(server.url, "/api/models/unload", { model: "racer" });
    if (!running) break;
    busyUnloads++;
    statuses.add(`busy-unload${result.status}`);
    // The generation may have ended (its lease released) while this client still reads the
    // stream's last events: an unload then is no longer of a busy model.
    if (result.status === 200 && (await long).includes('"finish_reason":"length"')) break;
    if (result.status !== 503 || errorShapeProblem(result.text)) {
      failures.push(
        `Unloading a busy model answered ${result.status}, expected a 503 JSON error: ${
          result.text.slice(0, 200)
        }`,
      );
      break;
    }
    await sleep(50);
  }
  const longText = await long;
  if (!longText.endsWith("data: [DONE]\n\n") || !longText.includes('"finish_reason":"length"')) {
    failures.push(
      `The stream did not complete while unloads were refused: …${longText.slice(-200)}`,
    );
  }
  if (busyUnloads === 0) {
    failures.push("No unload was sent while the long stream ran (it was too short)");
  }
  const ps = await waitIdle(server.url, 5_000).catch(() => []);
  await watch.stop();
  summary("faults-g-races", {
    ...watch.figures(),
    statuses,
    long_tokens: tokens,
    alive: server.alive,
  });
  if (!server.alive) failures.push("The server died");
  if (!ps.every((m) => m.busy_slots === 0 && m.queued === 0)) {
    failures.push(`Busy after the race: ${JSON.stringify(ps)}`);
  }
  if (failures.length > 0) {
    throw new Error(`${failures.slice(0, 15).join("\n")}\n${server.describe()}`);
  }
});
