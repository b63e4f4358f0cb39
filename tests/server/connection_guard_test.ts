import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import {
  type GuardedHandler,
  type GuardOptions,
  serveGuarded,
} from "../../src/server/connection_guard.ts";
import { get, RawClient, settlesWithin } from "./raw_client.ts";
import type { ServedRequest } from "../../src/server/served_request.ts";

const encoder = new TextEncoder();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Small timeouts so that each rule shows within a second. */
const FAST: Omit<GuardOptions, "port"> = { headerTimeoutMs: 400, idleTimeoutMs: 600 };

function guard(handler: GuardedHandler, options: Omit<GuardOptions, "port"> = {}) {
  return serveGuarded({ ...FAST, ...options, port: 0 }, handler);
}

/** Opens a WebSocket and waits for it to be open. */
async function openSocket(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("WebSocket failed to open"));
  });
  return ws;
}

function echoSocket(request: ServedRequest): Response {
  // Upgrades reach the handler through Deno.serve, as a `Request`.
  if (!(request instanceof Request)) throw new Error("an upgrade served by the guard itself");
  const { socket, response } = Deno.upgradeWebSocket(request);
  socket.onmessage = (event) => socket.send(event.data);
  socket.onerror = () => {};
  return response;
}

Deno.test("serveGuarded() serves keep-alive requests and passes on the client's real address", async () => {
  const seen: string[] = [];
  await using server = guard((request, info) => {
    ok(info.completed instanceof Promise);
    seen.push(`${info.remoteAddr.hostname}:${info.remoteAddr.port}`);
    return new Response(`hello ${new URL(request.url).pathname}`);
  });
  const client = await RawClient.open(server.addr.port);
  try {
    await client.send(get("/one"));
    const first = await client.response();
    await client.send(get("/two"));
    const second = await client.response();
    equal(first.status, 200);
    equal(first.body, "hello /one");
    equal(second.body, "hello /two");
    const own = `${client.conn.localAddr.hostname}:${client.conn.localAddr.port}`;
    deepEqual(seen, [own, own]);
    equal(server.connections(), 1);
  } finally {
    client.close();
  }
});

Deno.test("serveGuarded() closes a connection whose headers trickle in past headerTimeoutMs", async () => {
  await using server = guard(() => new Response("never"), {
    headerTimeoutMs: 400,
    idleTimeoutMs: 5_000,
  });
  const client = await RawClient.open(server.addr.port);
  try {
    const header = "GET / HTTP/1.1\r\nHost: test\r\nX-Slow: " + "a".repeat(100);
    let sent = 0;
    const trickle = (async () => {
      try {
        for (; sent < header.length; sent++) {
          await client.send(header[sent] as string);
          await sleep(100);
        }
      } catch {
        // Closed by the server.
      }
    })();
    const closedAfter = await client.closedWithin(3_000);
    client.close();
    await trickle;
    ok(closedAfter !== null, "the connection should be closed");
    ok(closedAfter >= 350 && closedAfter < 900, `closed after ${closedAfter} ms`);
    ok(sent < 12, `${sent} bytes went in before the close`);
  } finally {
    client.close();
  }
});

Deno.test("serveGuarded() closes a keep-alive connection left idle for idleTimeoutMs", async () => {
  await using server = guard(() => new Response("ok"), { headerTimeoutMs: 5_000 });
  const client = await RawClient.open(server.addr.port);
  const silent = await RawClient.open(server.addr.port);
  try {
    await client.send(get());
    equal((await client.response()).body, "ok");
    const [afterResponse, afterOpen] = await Promise.all([
      client.closedWithin(3_000),
      silent.closedWithin(3_000),
    ]);
    ok(afterResponse !== null && afterResponse >= 500 && afterResponse < 1_100, `${afterResponse}`);
    ok(afterOpen !== null && afterOpen >= 450 && afterOpen < 1_100, `${afterOpen}`);
    for (let i = 0; i < 20 && server.connections() > 0; i++) await sleep(10);
    equal(server.connections(), 0);
  } finally {
    client.close();
    silent.close();
  }
});

Deno.test("serveGuarded() keeps a busy connection open past both timeouts and delivers its response", async () => {
  await using server = guard(async () => {
    await sleep(1_500);
    return new Response("slow but sure");
  }, { headerTimeoutMs: 300, idleTimeoutMs: 500 });
  const client = await RawClient.open(server.addr.port);
  try {
    const start = performance.now();
    await client.send(get());
    const response = await client.response();
    equal(response.body, "slow but sure");
    ok(performance.now() - start >= 1_450);
  } finally {
    client.close();
  }
});

Deno.test("serveGuarded() closes a connection whose client stops reading its answer for sendTimeoutMs", async () => {
  const big = new Uint8Array(64 * 1024 * 1024).fill(0x61); // more than the sockets' buffers hold
  await using server = guard(() => new Response(big), {
    headerTimeoutMs: 5_000,
    idleTimeoutMs: 5_000,
    sendTimeoutMs: 500,
  });
  // One answer the guard writes itself, one that goes through Deno.serve (an HTTP/1.0 request).
  const served = await RawClient.open(server.addr.port);
  const forwarded = await RawClient.open(server.addr.port);
  try {
    await served.send(get());
    await forwarded.send("GET / HTTP/1.0\r\nHost: test\r\n\r\n");
    await sleep(200);
    equal(server.connections(), 2, "both are being answered");
    let waited = 0;
    while (server.connections() > 0 && waited < 4_000) waited += await sleep(50).then(() => 50);
    equal(server.connections(), 0, "both were closed once their writes waited 0.5 s");
  } finally {
    served.close();
    forwarded.close();
  }
});

/** Streams 30 SSE events 50 ms apart and records when each was enqueued. */
function streamingHandler(sentAt: number[]): () => Response {
  return () => {
    let i = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        timer = setInterval(() => {
          sentAt[i] = performance.now();
          controller.enqueue(encoder.encode(`data: ${i}\n\n`));
          if (++i === 30) {
            clearInterval(timer);
            controller.close();
          }
        }, 50);
      },
      cancel() {
        clearInterval(timer);
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  };
}

/** Reads an SSE stream and returns how long after its enqueue each event arrived. */
async function eventDelays(port: number, sentAt: number[]): Promise<number[]> {
  const client = await RawClient.open(port);
  const delays: number[] = [];
  try {
    await client.send(get());
    let text = "";
    while (delays.length < 30 && await client.fill()) {
      const now = performance.now();
      text += client.take();
      for (const match of text.matchAll(/data: (\d+)\n/g)) {
        const index = Number(match[1]);
        delays[index] ??= now - (sentAt[index] as number);
      }
    }
  } finally {
    client.close();
  }
  return delays;
}

Deno.test("serveGuarded() streams each chunk as it is sent, within 40 ms of a direct Deno.serve", async () => {
  const sentDirect: number[] = [];
  const sentGuarded: number[] = [];
  const direct = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    streamingHandler(sentDirect),
  );
  await using server = guard(streamingHandler(sentGuarded), { idleTimeoutMs: 5_000 });
  try {
    const [directDelays, guardedDelays] = await Promise.all([
      eventDelays(direct.addr.port, sentDirect),
      eventDelays(server.addr.port, sentGuarded),
    ]);
    equal(guardedDelays.length, 30);
    const worstDirect = Math.max(...directDelays);
    const worstGuarded = Math.max(...guardedDelays);
    const mean = guardedDelays.reduce((a, b) => a + b, 0) / guardedDelays.length;
    ok(
      worstGuarded < worstDirect + 40,
      `worst delay ${worstGuarded.toFixed(1)} ms guarded, ${worstDirect.toFixed(1)} ms direct`,
    );
    ok(mean < 10, `mean delay ${mean.toFixed(2)} ms`);
  } finally {
    await direct.shutdown();
  }
});

Deno.test("serveGuarded() keeps a WebSocket open past idleTimeoutMs and it still echoes", async () => {
  await using server = guard(echoSocket, { headerTimeoutMs: 300, idleTimeoutMs: 400 });
  const ws = await openSocket(`ws://127.0.0.1:${server.addr.port}/`);
  const closed = new Promise<void>((resolve) => ws.onclose = () => resolve());
  try {
    await sleep(1_000);
    let echo = "";
    const echoed = new Promise<void>((resolve) => {
      ws.onmessage = (event) => {
        echo = String(event.data);
        resolve();
      };
    });
    ws.send("still here");
    await settlesWithin(Promise.race([echoed, closed]), 2_000);
    equal(echo, "still here");
    equal(server.connections(), 1);
  } finally {
    ws.close();
    await closed;
  }
});

Deno.test("serveGuarded() answers connections beyond maxConnections with a 503 and closes them", async () => {
  await using server = guard(() => new Response("ok"), { maxConnections: 2 });
  const clients = [
    await RawClient.open(server.addr.port),
    await RawClient.open(server.addr.port),
  ];
  try {
    for (const client of clients) {
      await client.send(get());
      equal((await client.response()).status, 200);
    }
    const extra = await RawClient.open(server.addr.port);
    clients.push(extra);
    await extra.send(get());
    const refused = await extra.response();
    equal(refused.status, 503);
    equal(refused.headers.get("connection"), "close");
    deepEqual(JSON.parse(refused.body), {
      error: {
        message: "Too many open connections; try again shortly",
        type: "server_busy_error",
        param: null,
        code: "too_many_connections",
      },
    });
    ok(await extra.closedWithin(1_000) !== null);
    equal(server.connections(), 2);
  } finally {
    for (const client of clients) client.close();
  }
});

Deno.test("close() finishes within a second despite a stalled upload, a WebSocket and a stuck handler", async () => {
  let uploadFailed = false;
  let release!: () => void;
  const released = new Promise<void>((resolve) => release = resolve);
  const server = guard(async (request) => {
    if (request.headers.get("upgrade") === "websocket") return echoSocket(request);
    if (request.method === "GET") {
      await released;
      return new Response("too late");
    }
    try {
      await request.text();
    } catch {
      uploadFailed = true;
    }
    return new Response("unreachable");
  }, { idleTimeoutMs: 5_000 });
  const ws = await openSocket(`ws://127.0.0.1:${server.addr.port}/`);
  const wsClosed = new Promise<void>((resolve) => ws.onclose = () => resolve());
  const upload = await RawClient.open(server.addr.port);
  const stuck = await RawClient.open(server.addr.port);
  try {
    await upload.send("POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\nx");
    await stuck.send(get());
    await sleep(200);
    equal(server.connections(), 3);
    const took = await settlesWithin(server.close(), 2_000);
    release();
    ok(took !== null && took < 1_000, `close() took ${took} ms`);
    await server.finished;
    ok(await stuck.closedWithin(500) !== null);
    ok(await upload.closedWithin(500) !== null);
    await wsClosed;
    equal(server.connections(), 0);
    for (let i = 0; i < 20 && !uploadFailed; i++) await sleep(10);
    ok(uploadFailed);
  } finally {
    release();
    upload.close();
    stuck.close();
    ws.close();
    await server.close();
  }
});

Deno.test("stopAccepting() refuses new connections while an in-flight request completes", async () => {
  let release!: () => void;
  const released = new Promise<void>((resolve) => release = resolve);
  await using server = guard(async () => {
    await released;
    return new Response("finished");
  });
  const client = await RawClient.open(server.addr.port);
  try {
    await client.send(get());
    await sleep(50);
    server.stopAccepting();
    server.stopAccepting();
    await rejects(Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }));
    release();
    equal((await client.response()).body, "finished");
  } finally {
    client.close();
  }
});

Deno.test("closeIdle() closes only idle connections, and busy ones once their response is sent", async () => {
  let release!: () => void;
  const released = new Promise<void>((resolve) => release = resolve);
  await using server = guard(async (request) => {
    if (new URL(request.url).pathname === "/wait") await released;
    return new Response("done");
  }, { idleTimeoutMs: 5_000 });
  const idle = await RawClient.open(server.addr.port);
  const busy = await RawClient.open(server.addr.port);
  try {
    await idle.send(get());
    equal((await idle.response()).body, "done");
    await busy.send(get("/wait"));
    await sleep(50);
    server.stopAccepting();
    server.closeIdle();
    ok(await idle.closedWithin(500) !== null, "the idle connection should be closed");
    idle.close();
    for (let i = 0; i < 50 && server.connections() > 1; i++) await sleep(10);
    equal(server.connections(), 1);
    release();
    equal((await busy.response()).body, "done");
    ok(await busy.closedWithin(500) !== null, "the busy one should close after its response");
    busy.close();
    for (let i = 0; i < 50 && server.connections() > 0; i++) await sleep(10);
    equal(server.connections(), 0);
  } finally {
    idle.close();
    busy.close();
  }
});

Deno.test("a client that disconnects mid-stream cancels the response stream", async () => {
  let cancelled!: () => void;
  const cancelSeen = new Promise<void>((resolve) => cancelled = resolve);
  await using server = guard(() => {
    let timer: ReturnType<typeof setInterval> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        timer = setInterval(() => controller.enqueue(encoder.encode("data: x\n\n")), 20);
      },
      cancel() {
        clearInterval(timer);
        cancelled();
      },
    });
    return new Response(body);
  });
  const client = await RawClient.open(server.addr.port);
  try {
    await client.send(get());
    while (!client.take().includes("data: x")) await client.fill();
  } finally {
    client.close();
  }
  ok(await settlesWithin(cancelSeen, 2_000) !== null, "the stream should be cancelled");
});

Deno.test("a client that disconnects before its answer aborts the request signal", async () => {
  let aborted!: () => void;
  const abortSeen = new Promise<void>((resolve) => aborted = resolve);
  await using server = guard(async (request) => {
    await new Promise<void>((resolve) => {
      request.signal.addEventListener("abort", () => resolve());
    });
    aborted();
    return new Response("too late");
  });
  const client = await RawClient.open(server.addr.port);
  try {
    await client.send(get());
    await sleep(100);
  } finally {
    client.close();
  }
  ok(await settlesWithin(abortSeen, 2_000) !== null, "the signal should abort");
});

Deno.test("serveGuarded() serves 200 sequential keep-alive requests and 50 parallel connections", async () => {
  let served = 0;
  await using server = guard(() => new Response(`n${++served}`));
  const client = await RawClient.open(server.addr.port);
  try {
    for (let i = 1; i <= 200; i++) {
      await client.send(get());
      equal((await client.response()).body, `n${i}`);
    }
  } finally {
    client.close();
  }
  const parallel = await Promise.all(
    Array.from({ length: 50 }, async () => {
      const one = await RawClient.open(server.addr.port);
      try {
        await one.send(get());
        return (await one.response()).status;
      } finally {
        one.close();
      }
    }),
  );
  deepEqual(parallel, new Array(50).fill(200));
  equal(served, 250);
});

Deno.test("serveGuarded() throws AddrInUse when the port is taken", () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let error: unknown;
  try {
    serveGuarded({ hostname: "127.0.0.1", port: taken.addr.port }, () => new Response());
  } catch (caught) {
    error = caught;
  }
  ok(error instanceof Deno.errors.AddrInUse);
});

/** Polls until `condition` holds, for at most a second. */
async function eventually(condition: () => boolean): Promise<boolean> {
  for (const deadline = performance.now() + 1000; performance.now() < deadline; await sleep(2)) {
    if (condition()) return true;
  }
  return condition();
}

Deno.test("requestsArriving() counts recent requests that no handler has yet", async () => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  let handled = 0;
  await using server = guard(async () => {
    handled++;
    await held;
    return new Response("done");
  }, { freshConnectionMs: 200 });
  const client = await RawClient.open(server.addr.port);
  try {
    ok(await eventually(() => server.connections() === 1));
    equal(server.requestsArriving(60_000), 1, "a new connection: its request follows at once");
    equal(server.requestsArriving(0), 0, "only if it opened within the time asked");
    await sleep(250);
    equal(server.requestsArriving(60_000), 0, "it sent nothing for a while (a spare)");
    await client.send("GET / HTTP/1.1\r\nHost: te");
    ok(await eventually(() => server.requestsArriving(60_000) === 1), "its first bytes came in");
    await sleep(30);
    equal(server.requestsArriving(10), 0, "not for long when the rest does not follow");
    await client.send("st\r\n\r\n");
    ok(await eventually(() => handled === 1));
    equal(server.requestsArriving(60_000), 0, "the handler has it");
    release();
    equal((await client.response()).body, "done");
    equal(server.requestsArriving(60_000), 0, "a kept-alive connection that has served one");
    await client.send("GET /next");
    ok(await eventually(() => server.requestsArriving(60_000) === 1), "its next request's bytes");
  } finally {
    client.close();
  }
});
