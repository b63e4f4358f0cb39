import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import {
  malformedAnswer,
  MAX_HEAD_BYTES,
  parseRequestHead,
  type RequestHead,
  responseHead,
} from "../../src/server/http1_head.ts";
import { type GuardedServer, serveGuarded } from "../../src/server/connection_guard.ts";
import { IncomingRequest } from "../../src/server/served_request.ts";
import { ChunkedBodyError, ChunkedBodyReader } from "../../src/server/chunked_body.ts";
import { SSE_HEADERS } from "../../src/server/sse.ts";
import { streamBody } from "../../src/server/stream_body.ts";
import { get, RawClient } from "./raw_client.ts";

const encoder = new TextEncoder();

/** Parses a head that must be of the plain shape. */
function plainHead(text: string): RequestHead {
  const reading = parseRequestHead(encoder.encode(text));
  if (reading.kind !== "head") throw new Error(`Expected a head, got ${reading.kind}: ${text}`);
  return reading.head;
}

const kindOf = (text: string) => parseRequestHead(encoder.encode(text)).kind;

Deno.test("parseRequestHead() reads a plain head: method, target, headers, body length, keep-alive", () => {
  const text = "POST /v1/completions?x=1 HTTP/1.1\r\nHost: a:1\r\nContent-Length: 12\r\n" +
    'X-Two: a\r\nx-two: b\r\n\r\n{"prompt":1}';
  const head = plainHead(text);
  equal(head.method, "POST");
  equal(head.target, "/v1/completions?x=1");
  equal(head.contentLength, 12);
  equal(new Headers(head.headers).get("x-two"), "a, b");
  equal(head.host, "a:1");
  equal(head.keepAlive, true);
  equal(head.length, text.length - 12);
  equal(
    plainHead("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n").keepAlive,
    false,
  );
  equal(plainHead("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").contentLength, 0);
});

Deno.test("parseRequestHead() waits for the blank line, and forwards a head past its limit", () => {
  equal(kindOf(""), "incomplete");
  equal(kindOf("GET / HTTP/1.1\r\nHost: a\r\n"), "incomplete");
  equal(kindOf("GET / HTTP/1.1\r\nHost: a\r\n\r"), "incomplete");
  equal(kindOf(`GET / HTTP/1.1\r\nHost: a\r\nX: ${"y".repeat(MAX_HEAD_BYTES)}`), "malformed");
  equal(
    kindOf(`GET / HTTP/1.1\r\nHost: a\r\nX: ${"y".repeat(MAX_HEAD_BYTES)}\r\n\r\n`),
    "malformed",
  );
});

Deno.test("parseRequestHead() forwards at once a head that cannot become plain: bare LFs, or no HTTP", () => {
  equal(kindOf("GET / HTTP/1.1\nHost: a\n"), "forward", "lines ending in a bare LF");
  equal(kindOf("GET / HTTP/1.1\r\nHost: a\n"), "forward", "one of them");
  equal(kindOf("\x16\x03\x01\x02\x00"), "forward", "a TLS handshake's first bytes");
  equal(kindOf("\r\nGET / HTTP/1.1\r\nHost"), "incomplete", "CRLF lines so far");
});

Deno.test("parseRequestHead() leaves every request outside the plain shape to Deno.serve", () => {
  const host = "Host: a\r\n";
  const cases = [
    `GET /ws HTTP/1.1\r\n${host}Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n`,
    `POST / HTTP/1.1\r\n${host}Expect: 100-continue\r\nContent-Length: 2\r\n\r\n`,
    `GET / HTTP/1.1\r\n${host}Content-Length: 2\r\n\r\n`,
    `GET / HTTP/1.0\r\n${host}\r\n`,
    `GET http://a/ HTTP/1.1\r\n${host}\r\n`,
    `get / HTTP/1.1\r\n${host}\r\n`,
    `BREW / HTTP/1.1\r\n${host}\r\n`,
    "GET / HTTP/1.1\r\nX: 1\r\n\r\n",
    `OPTIONS * HTTP/1.1\r\n${host}\r\n`,
    `CONNECT a:443 HTTP/1.1\r\n${host}\r\n`,
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    `GET / HTTP/1.1\r\n${host}X: caf\u00e9\r\n\r\n`,
  ];
  for (const text of cases) equal(kindOf(text), "forward", JSON.stringify(text));
});

Deno.test("parseRequestHead() marks where a WebSocket upgrade's head ends, so its frames can be followed", () => {
  const head = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n";
  deepEqual(parseRequestHead(encoder.encode(head + "\x81\x85")), {
    kind: "forward",
    webSocketHead: head.length,
  });
  // An upgrade with a body framing is refused here with a JSON body (Deno.serve's 400 is empty);
  // another method is Deno.serve's to answer.
  for (const framing of ["Content-Length: 0", "Content-Length: 3", "Transfer-Encoding: chunked"]) {
    const reading = parseRequestHead(
      encoder.encode(head.replace("\r\n\r\n", `\r\n${framing}\r\n\r\n`)),
    );
    equal(reading.kind, "malformed", framing);
    match((reading as { reason: string }).reason, /carries no body/);
  }
  deepEqual(parseRequestHead(encoder.encode(head.replace("GET", "POST"))), { kind: "forward" });
});

Deno.test("parseRequestHead() ignores an offer to switch to HTTP/2 in the clear (curl --http2)", () => {
  const offer =
    "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAA\r\n";
  const text = `POST /v1/completions HTTP/1.1\r\nHost: a\r\n${offer}Content-Length: 2\r\n\r\n{}`;
  equal(kindOf(text), "head");
});

Deno.test("parseRequestHead() finds the heads no server may take, for the guard to answer", () => {
  const host = "Host: a\r\n";
  const cases = [
    `POST / HTTP/1.1\r\n${host}Content-Length: 2\r\nContent-Length: 2\r\n\r\n`,
    `POST / HTTP/1.1\r\n${host}Content-Length: -2\r\n\r\n`,
    `GET / HTTP/1.1\r\n${host}X: 1\r\n folded\r\n\r\n`,
    `GET / HTTP/1.1\r\n${host}X: a\rb\r\n\r\n`,
    `GET / HTTP/1.1\r\n${host}X: a\u0000b\r\n\r\n`,
    `GET / HTTP/1.1\r\n${host}Bad Name: 1\r\n\r\n`,
    `GET / HTTP/1.1\r\n${host}${host}\r\n`,
    `GET /  HTTP/1.1\r\n${host}\r\n`,
    `GET / HTTP/1.1 \r\n${host}\r\n`,
    `GET /\r\n${host}\r\n`,
    `GET health HTTP/1.1\r\n${host}\r\n`,
    `GET * HTTP/1.1\r\n${host}\r\n`,
    `POST / HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n`,
    `POST / HTTP/1.1\r\n${host}Transfer-Encoding: chunked, gzip\r\n\r\n`,
    `POST / HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n`,
    `GET /ws HTTP/1.1\r\n${host}Upgrade: websocket\r\n${host}\r\n`,
    `POST / HTTP/1.0\r\n${host}Transfer-Encoding: chunked\r\n\r\n`,
  ];
  for (const text of cases) equal(kindOf(text), "malformed", JSON.stringify(text));
  // Codings besides chunked: a 501 that says so (Deno.serve had ignored a gzip coding).
  for (const codings of ["gzip, chunked", "identity, chunked"]) {
    const reading = parseRequestHead(
      encoder.encode(`POST / HTTP/1.1\r\n${host}Transfer-Encoding: ${codings}\r\n\r\n`),
    );
    equal(reading.kind === "malformed" && reading.status, 501, codings);
  }
  const version = parseRequestHead(new TextEncoder().encode(`GET / HTTP/1.2\r\n${host}\r\n`));
  deepEqual(version, {
    kind: "malformed",
    status: 505,
    reason: "HTTP/1.2 is not supported; send HTTP/1.1",
  });
  const answer = new TextDecoder().decode(
    malformedAnswer({ status: 400, reason: "Host must be given once" }),
  );
  match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/);
  match(answer, /connection: close\r\n/);
  const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));
  equal(body.error.message, "Host must be given once");
});

Deno.test("responseHead() frames the body itself, whatever the handler's headers say", () => {
  const response = new Response("ok", {
    status: 201,
    headers: {
      "content-length": "99",
      "transfer-encoding": "gzip",
      connection: "keep-alive",
      "x-a": "1",
    },
  });
  const sized = responseHead(response, { contentLength: 2 }, false);
  ok(sized.startsWith("HTTP/1.1 201 Created\r\n"), sized);
  ok(sized.includes("content-length: 2\r\n") && !sized.includes("99"), sized);
  ok(!sized.includes("transfer-encoding") && !sized.includes("connection"), sized);
  ok(sized.includes("x-a: 1\r\n") && /\r\ndate: [^\r]+ GMT\r\n/.test(sized), sized);
  ok(sized.endsWith("\r\n\r\n"));
  const chunked = responseHead(response, "chunked", true);
  ok(
    chunked.includes("transfer-encoding: chunked\r\n") && chunked.includes("connection: close\r\n"),
  );
  ok(!responseHead(new Response(null, { status: 204 }), "none", false).includes("content-length"));
});

/** A guard whose handler echoes what it got, or streams, or ignores the body. */
function echoGuard(): GuardedServer {
  return serveGuarded({ port: 0 }, async (request) => {
    const url = new URL(request.url);
    if (url.pathname === "/stream") {
      let i = 0;
      return new Response(
        new ReadableStream({
          async pull(controller) {
            await new Promise((resolve) => setTimeout(resolve, 5));
            if (i === 3) return controller.close();
            controller.enqueue(encoder.encode(`part ${i++};`));
          },
        }),
        { headers: { "content-type": "text/plain" } },
      );
    }
    if (url.pathname === "/events") {
      return new Response(
        new ReadableStream({
          async start(controller) {
            await new Promise((resolve) => setTimeout(resolve, 300));
            controller.enqueue(encoder.encode("data: first\n\n"));
            controller.close();
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      );
    }
    if (url.pathname === "/ignore") return new Response("ignored");
    if (url.pathname === "/whole") {
      const whole = request instanceof IncomingRequest ? request.takeWholeBody() : undefined;
      const body = whole ? new TextDecoder().decode(whole) : await request.text();
      return Response.json({ whole: whole !== undefined, body });
    }
    if (url.pathname === "/throw") throw new Error("handler failed on purpose");
    const body = request.body ? await request.text() : "";
    return Response.json({ method: request.method, path: url.pathname, body });
  });
}

Deno.test("the guard serves plain requests itself: sized and chunked answers, pipelining, HEAD", async () => {
  await using server = echoGuard();
  const client = await RawClient.open(server.addr.port);
  try {
    await client.send("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    const sized = await client.response();
    equal(sized.status, 200);
    equal(sized.headers.get("content-length"), String(sized.body.length));
    deepEqual(JSON.parse(sized.body), { method: "POST", path: "/a", body: "hello" });

    await client.send(get("/stream"));
    const streamed = await client.response();
    equal(streamed.headers.get("transfer-encoding"), "chunked");
    equal(streamed.body, "part 0;part 1;part 2;");

    // Three requests in one write: answered in order on the same connection.
    await client.send(
      "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nonePOST /c HTTP/1.1\r\nHost: t\r\n" +
        `Content-Length: 3\r\n\r\ntwo${get("/d")}`,
    );
    deepEqual(JSON.parse((await client.response()).body).body, "one");
    deepEqual(JSON.parse((await client.response()).body).body, "two");
    deepEqual(JSON.parse((await client.response()).body).path, "/d");

    await client.send("HEAD /e HTTP/1.1\r\nHost: t\r\n\r\n");
    const head = await client.response(true);
    equal(head.status, 200);
    await client.send(get("/f"));
    equal(JSON.parse((await client.response()).body).path, "/f", "HEAD sent no body");
    equal(server.forwardedConnections(), 0);
  } finally {
    client.close();
  }
});

Deno.test("a body that came with its head is handed over whole; one that comes later streams", async () => {
  await using server = echoGuard();
  const client = await RawClient.open(server.addr.port);
  try {
    await client.send('POST /whole HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n{"a":1}');
    deepEqual(JSON.parse((await client.response()).body), { whole: true, body: '{"a":1}' });
    await client.send("POST /whole HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n");
    await new Promise((resolve) => setTimeout(resolve, 50));
    await client.send('{"b":2}');
    deepEqual(JSON.parse((await client.response()).body), { whole: false, body: '{"b":2}' });
  } finally {
    client.close();
  }
});

Deno.test("a head whose Host makes no URL is handed over as it came, for the handler to refuse", async () => {
  await using server = serveGuarded({ port: 0 }, (request) => new Response(request.url));
  const client = await RawClient.open(server.addr.port);
  try {
    await client.send("GET /x HTTP/1.1\r\nHost: a b\r\n\r\n");
    equal((await client.response()).body, "http://a b/x");
    equal(server.forwardedConnections(), 0);
  } finally {
    client.close();
  }
});

Deno.test("an event stream's head is sent at once, before its first event", async () => {
  await using server = echoGuard();
  const client = await RawClient.open(server.addr.port);
  try {
    await client.send(get("/events"));
    const started = performance.now();
    ok(await client.fill());
    const head = client.take();
    ok(performance.now() - started < 250, `the head came after ${performance.now() - started} ms`);
    ok(head.startsWith("HTTP/1.1 200 OK\r\n") && head.includes("transfer-encoding: chunked"), head);
    ok(!head.includes("data:"), head);
    ok(await client.fill());
    ok(client.take().includes("data: first"));
  } finally {
    client.close();
  }
});

Deno.test("the guard skips a body its handler did not read, answers a throw with 500, and honours Connection: close", async () => {
  await using server = echoGuard();
  const client = await RawClient.open(server.addr.port);
  try {
    await client.send(
      `POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n${"x".repeat(70_000)}`,
    );
    equal((await client.response()).body, "ignored");
    await client.send(get("/g"));
    equal(JSON.parse((await client.response()).body).path, "/g");
    await client.send(get("/throw"));
    equal((await client.response()).status, 500);
    await client.send("GET /h HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    const last = await client.response();
    equal(last.headers.get("connection"), "close");
    ok((await client.closedWithin(1_000)) !== null, "closed after a Connection: close request");
  } finally {
    client.close();
  }
});

Deno.test("streamBody's events are pushed to the socket unread; Deno.serve reads the same events", async () => {
  const bodies: (ReadableStream<Uint8Array> | null)[] = [];
  const aborts: AbortController[] = [];
  await using server = serveGuarded({ port: 0 }, async (request) => {
    if (request.body) await request.text();
    const abort = new AbortController();
    const response = streamBody(
      async (send) => {
        send(encoder.encode("data: 0\n\n")); // before any consumer is there
        await new Promise((resolve) => setTimeout(resolve, 5));
        for (const event of ["1", "2", "3"]) send(encoder.encode(`data: ${event}\n\n`));
      },
      abort,
      SSE_HEADERS,
      () => {},
    );
    bodies.push(response.body);
    aborts.push(abort);
    return response;
  });
  const client = await RawClient.open(server.addr.port);
  const events = "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n";
  try {
    await client.send(get("/pushed"));
    equal((await client.response()).body, events);
    equal(bodies[0]?.locked, false, "the guard took the events without reading the stream");
    // A request with a byte outside ASCII in a header goes to Deno.serve, which reads the
    // response's stream.
    await client.send(
      "POST /read HTTP/1.1\r\nHost: t\r\nX-Name: caf\u00e9\r\nContent-Length: 1\r\n\r\nx",
    );
    equal((await client.response()).body, events);
    equal(bodies[1]?.locked, true);
    equal(server.forwardedConnections(), 1);
    ok(aborts.every((abort) => !abort.signal.aborted), "both streams ended by themselves");
  } finally {
    client.close();
  }
});

Deno.test("events pushed faster than a client reads wait as they are, framed only as they go", async () => {
  // 32 MiB of events at once, as a replay of kept sessions sends them, to a client that reads
  // nothing: framed whole, they were 64 MiB more held until the last byte left (1.5-5.3 MiB now,
  // batches already written that the collector has not taken yet).
  const events = Array.from(
    { length: 160_000 },
    (_, i) => encoder.encode(`data: ${i}${"x".repeat(190)}\n\n`),
  );
  const pushedAll = Promise.withResolvers<void>();
  await using server = serveGuarded({ port: 0 }, () =>
    streamBody(
      (send) => {
        for (const event of events) send(event);
        pushedAll.resolve();
        return new Promise(() => {}); // the stream stays open
      },
      new AbortController(),
      SSE_HEADERS,
      () => {},
    ));
  const client = await RawClient.open(server.addr.port);
  try {
    const before = Deno.memoryUsage().external;
    await client.send(get("/replay"));
    await pushedAll.promise;
    await new Promise((resolve) => setTimeout(resolve, 300));
    const held = Deno.memoryUsage().external - before;
    ok(held < 16 * 2 ** 20, `${(held / 2 ** 20).toFixed(1)} MiB held for the events`);
  } finally {
    client.close();
  }
});

Deno.test("a request of another shape hands its connection to Deno.serve, bytes read so far included", async () => {
  await using server = echoGuard();
  const client = await RawClient.open(server.addr.port);
  try {
    await client.send(get("/before"));
    equal(JSON.parse((await client.response()).body).path, "/before");
    equal(server.forwardedConnections(), 0);
    // A request for Deno.serve (a byte outside ASCII in a header), sent in two writes, then a
    // plain request behind it.
    await client.send(
      "POST /forwarded HTTP/1.1\r\nHost: t\r\nX-Name: caf\u00e9\r\nContent-Length: 5\r\n\r\nhel",
    );
    await client.send(`lo${get("/after")}`);
    deepEqual(JSON.parse((await client.response()).body), {
      method: "POST",
      path: "/forwarded",
      body: "hello",
    });
    equal(JSON.parse((await client.response()).body).path, "/after");
    equal(server.forwardedConnections(), 1);
  } finally {
    client.close();
  }
});

Deno.test("the guard reads chunked uploads itself: extensions, trailers, split writes, then the next request", async () => {
  await using server = echoGuard();
  const client = await RawClient.open(server.addr.port);
  try {
    await client.send(
      "POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n5;name=x\r\nhel",
    );
    await client.send("lo\r\n1 \r\n,\r\n");
    await client.send(`6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n${get("/after")}`);
    deepEqual(JSON.parse((await client.response()).body), {
      method: "POST",
      path: "/chunked",
      body: "hello, world",
    });
    equal(JSON.parse((await client.response()).body).path, "/after");
    equal(server.forwardedConnections(), 0);
  } finally {
    client.close();
  }
});

Deno.test("ChunkedBodyReader: pieces in order, and each framing error named", async () => {
  const source = (text: string) => {
    let bytes = encoder.encode(text);
    return {
      get size() {
        return bytes.length;
      },
      view: () => bytes,
      take(count: number) {
        const taken = bytes.slice(0, count);
        bytes = bytes.subarray(count);
        return taken;
      },
      consume(count: number) {
        bytes = bytes.subarray(count);
      },
      fill: () => Promise.resolve(false),
    };
  };
  const readAll = async (text: string) => {
    const reader = new ChunkedBodyReader(source(text));
    let body = "";
    for (let piece; (piece = await reader.next()) !== null;) {
      body += new TextDecoder().decode(piece);
    }
    return { body, done: reader.done };
  };
  deepEqual(await readAll("3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\nNEXT"), {
    body: "abc0123456789",
    done: true,
  });
  // A byte per chunk: what is buffered comes as one piece, not a piece per byte.
  const bytewise = new ChunkedBodyReader(source("1\r\nx\r\n".repeat(5000) + "0\r\n\r\n"));
  equal((await bytewise.next())?.length, 5000);
  equal(await bytewise.next(), null);
  ok(bytewise.done);
  const failures: [string, RegExp][] = [
    ["zz\r\nabc\r\n0\r\n\r\n", /hexadecimal/],
    ["3\r\nabcd\r\n0\r\n\r\n", /not followed by CRLF/],
    ["2\r\nab\r\n\r\n0\r\n\r\n", /size line is empty/],
    ["3\nabc\r\n0\r\n\r\n", /does not end in CRLF/],
    ["-1\r\n", /hexadecimal/],
    ["12345678901234\r\n", /hexadecimal/],
    ["3\r\nab", /closed before/],
    ["0\r\nX: 1\r\n", /closed before/],
    [`${"1".repeat(5000)}`, /longer than 4096/],
  ];
  for (const [text, message] of failures) {
    await rejects(
      readAll(text),
      (error: Error) => error instanceof ChunkedBodyError && message.test(error.message),
      JSON.stringify(text),
    );
  }
});
