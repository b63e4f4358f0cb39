/**
 * Regression tests for the defects of the hardening issue, each through real HTTP, real
 * sockets and the real libllama. The numbers are the issue's.
 */

import { equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { Sampler } from "../../src/ffi/sampler.ts";
import { fixtureLora } from "../fixtures/models.ts";
import { longestLoopStall, postJson, startServer, type TestServer, waitFor } from "./harness.ts";

async function errorOf(response: Response, status: number, code?: string) {
  const body = await response.json();
  equal(response.status, status, JSON.stringify(body));
  equal(typeof body.error.message, "string");
  if (code) equal(body.error.code, code);
  return body.error as { message: string; code: string; param: string | null };
}

/** Sends raw HTTP/1.1 text and returns the status and body of the answer. */
async function rawRequest(url: string, head: string, body = ""): Promise<{
  status: number;
  text: string;
}> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  await conn.write(new TextEncoder().encode(head + "\r\n" + body));
  const text = await new Response(conn.readable).text();
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]), text };
}

/** The worst /health latency seen while `work` runs. */
async function worstHealthLatency(url: string, work: Promise<unknown>): Promise<number> {
  let done = false;
  let worst = 0;
  const probing = (async () => {
    while (!done) {
      const started = performance.now();
      const res = await fetch(`${url}/health`);
      await res.body?.cancel();
      worst = Math.max(worst, performance.now() - started);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await work;
  done = true;
  await probing;
  return worst;
}

function busySlots(server: TestServer): number {
  return server.ctx.registry.loaded().get("tiny-f32")?.scheduler.stats().busySlots ?? -1;
}

Deno.test("1, 8: a grammar with min > max, or undefined rules, is a 400 at once; the server stays live", async () => {
  await using server = await startServer();
  const started = performance.now();
  const error = await errorOf(
    await postJson(`${server.url}/v1/completions`, {
      prompt: "hi",
      grammar: 'root ::= "a"{5,2}',
    }),
    400,
  );
  match(error.message, /5.*2|minimum|maximum/i);
  ok(performance.now() - started < 1000);
  await errorOf(
    await postJson(`${server.url}/v1/completions`, {
      prompt: "hi",
      stream: true,
      grammar: "root ::= missing",
    }),
    400,
  );
  equal((await fetch(`${server.url}/health`)).status, 200);
});

Deno.test("2: a grammar nested 20,000 parentheses deep is a 400, not a stack overflow", async () => {
  await using server = await startServer();
  const grammar = "root ::= " + "(".repeat(20_000) + '"a"' + ")".repeat(20_000);
  await errorOf(await postJson(`${server.url}/v1/completions`, { prompt: "hi", grammar }), 400);
  equal((await fetch(`${server.url}/health`)).status, 200);
});

Deno.test("a body nested a million levels deep is a 400 at once: no stall copying it, no stack overflow", async () => {
  await using server = await startServer();
  const deep = (n: number) => JSON.parse("[".repeat(n) + "]".repeat(n));
  const bodies = [
    { messages: [{ role: "user", content: "hi" }], chat_template_kwargs: { x: deep(1_000_000) } },
    {
      messages: [{ role: "user", content: "hi" }],
      tools: [{
        type: "function",
        function: { name: "f", parameters: { type: "object", properties: { a: deep(100_000) } } },
      }],
      tool_choice: "required",
    },
  ];
  for (const body of bodies) {
    let error: { message: string } | undefined;
    const worst = await worstHealthLatency(
      server.url,
      postJson(`${server.url}/v1/chat/completions`, { ...body, max_tokens: 1 }).then(
        async (res) => error = await errorOf(res, 400),
      ),
    );
    match(error!.message, /more than 256 levels deep/);
    ok(worst < 500, `/health answered within ${Math.round(worst)} ms`);
  }
  // As deep as a real schema gets is served.
  const fine = await postJson(`${server.url}/v1/chat/completions`, {
    messages: [{ role: "user", content: "hi" }],
    chat_template_kwargs: { x: deep(100) },
    max_tokens: 1,
  });
  equal(fine.status, 200, await fine.text());
});

Deno.test("/detokenize of a million ids and /tokenize with pieces of 2 MB never hold the event loop", async () => {
  await using server = await startServer();
  await (await fetch(`${server.url}/health`)).body?.cancel();
  const tokens = Array.from({ length: 1_000_000 }, (_, i) => 100 + (i % 1000));
  let content = "";
  const detokenized = await longestLoopStall(
    postJson(`${server.url}/detokenize`, { tokens }).then(async (res) => {
      equal(res.status, 200);
      content = (await res.json()).content;
    }),
  );
  const alone =
    await (await postJson(`${server.url}/detokenize`, { tokens: tokens.slice(0, 1000) }))
      .json();
  ok(
    content.startsWith(alone.content.slice(0, -4)),
    "the same text as its first thousand ids alone",
  );
  ok(detokenized < 600, `the loop waited at most ${Math.round(detokenized)} ms (detokenize)`);
  let pieces = 0;
  const tokenized = await longestLoopStall(
    postJson(`${server.url}/tokenize`, { content: "word, ".repeat(350_000), with_pieces: true })
      .then(async (res) => {
        equal(res.status, 200);
        pieces = (await res.json()).tokens.length;
      }),
  );
  ok(pieces > 300_000, `${pieces} pieces`);
  ok(tokenized < 600, `the loop waited at most ${Math.round(tokenized)} ms (tokenize)`);
});

Deno.test("3: 40,000 chat messages never stall /health, and the answer is a clear error", async () => {
  await using server = await startServer();
  const messages = Array.from({ length: 40_000 }, () => ({ role: "user", content: "a" }));
  let status = 0;
  const worst = await worstHealthLatency(
    server.url,
    postJson(`${server.url}/v1/chat/completions`, { messages, max_tokens: 1 }).then(
      async (res) => {
        status = res.status;
        await res.body?.cancel();
      },
    ),
  );
  equal(status, 400);
  ok(worst < 500, `/health answered within ${Math.round(worst)} ms`);
});

Deno.test("3: an 8 MiB prompt is tokenized off the event loop", async () => {
  await using server = await startServer();
  const prompt = "word ".repeat(1_600_000).slice(0, 8 * 1024 * 1024 - 100);
  let status = 0;
  const worst = await worstHealthLatency(
    server.url,
    postJson(`${server.url}/v1/completions`, { prompt, max_tokens: 1 }).then(async (res) => {
      status = res.status;
      await res.body?.cancel();
    }),
  );
  equal(status, 400, "far beyond the context: context_length_exceeded");
  ok(worst < 1000, `/health answered within ${Math.round(worst)} ms`);
});

Deno.test("5: /api/lora refuses paths outside the model folders without opening them", async () => {
  const dir = await Deno.makeTempDir();
  const fifo = join(dir, "pipe.gguf");
  await new Deno.Command("mkfifo", { args: [fifo] }).output();
  const passwordLink = join(dir, "link.gguf");
  await Deno.symlink("/etc/passwd", passwordLink);
  const notGguf = join(dir, "text.gguf");
  await Deno.writeTextFile(notGguf, "root:x:0:0:secret");
  try {
    await using server = await startServer({ settings: { adapterDirs: [dir] } });
    for (const path of ["/etc/passwd", "../../../../etc/passwd", passwordLink, fifo, notGguf]) {
      const started = performance.now();
      const res = await postJson(`${server.url}/api/lora`, { adapters: [{ path }] });
      const text = await res.text();
      equal(res.status, 400, `${path}: ${text}`);
      ok(!text.includes("root:"), `${path}: no file content in ${text}`);
      ok(performance.now() - started < 2000, `${path} answered promptly`);
    }
    const adapter = await fixtureLora("tiny-f32-lora");
    const outside = await postJson(`${server.url}/api/lora`, { adapters: [{ path: adapter }] });
    equal(outside.status, 400, "a real adapter outside the folders is refused too");
    await outside.body?.cancel();
    const inside = join(dir, "adapter.gguf");
    await Deno.copyFile(adapter, inside);
    const ok200 = await postJson(`${server.url}/api/lora`, { adapters: [{ path: inside }] });
    equal(ok200.status, 200, await ok200.text());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("6: a foreign Host is refused (DNS rebinding); loopback names are served", async () => {
  await using server = await startServer();
  const port = new URL(server.url).port;
  const ask = (host: string) =>
    rawRequest(server.url, `GET /v1/models HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n`);
  const evil = await ask(`attacker.example:${port}`);
  equal(evil.status, 403);
  match(evil.text, /host_not_allowed/);
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]) {
    equal((await ask(host)).status, 200, host);
  }
  // A Host that makes no URL: Deno.serve's request, a 400 with an error body (not an empty 500).
  const invalid = await ask("a b");
  equal(invalid.status, 400, invalid.text);
  match(invalid.text, /invalid_host/);
});

Deno.test("6: a Host that would move part of itself into the path is 400, and routes nothing", async () => {
  await using server = await startServer();
  (await server.ctx.registry.acquire("tiny-f32")).release();
  const port = new URL(server.url).port;
  const body = JSON.stringify({ model: "tiny-f32" });
  // The URL is Host + target: "localhost:1/api/models/unload?" + "/health" would be an unload.
  for (const host of ["localhost:1/api/models/unload?", `localhost:${port}/v1`, "localhost#x"]) {
    const answer = await rawRequest(
      server.url,
      `POST /health HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\nConnection: close\r\n`,
      body,
    );
    equal(answer.status, 400, `${host}: ${answer.text}`);
    match(answer.text, /invalid_host/);
  }
  equal(server.ctx.registry.state("tiny-f32"), "loaded");
  const models = await rawRequest(
    server.url,
    `GET /models HTTP/1.1\r\nHost: localhost:${port}/v1\r\nConnection: close\r\n`,
  );
  equal(models.status, 400, models.text);
});

Deno.test("an id in the path that is not valid percent-encoding is 400, not a 500", async () => {
  await using server = await startServer();
  const asks: [string, string][] = [
    ["GET", "/v1/models/%ZZ"],
    ["GET", "/v1/responses/%ZZ"],
    ["GET", "/v1/responses/%ZZ/input_items"],
    ["DELETE", "/v1/responses/%ZZ"],
  ];
  for (const [method, path] of asks) {
    const res = await fetch(`${server.url}${path}`, { method });
    const body = await res.json();
    equal(res.status, 400, `${method} ${path}: ${JSON.stringify(body)}`);
    match(body.error.message, /percent-encoding/);
  }
  const encoded = await fetch(`${server.url}/v1/models/tiny%2Df32`);
  equal(encoded.status, 200, "a well-encoded id still names its model");
  await encoded.body?.cancel();
});

Deno.test("a prompt token id past 2^31 is 400 naming it as sent, not wrapped into the vocabulary", async () => {
  await using server = await startServer();
  for (const id of [2 ** 32 + 1, 2 ** 31]) {
    for (
      const [path, body] of [
        ["/v1/completions", { prompt: [id], max_tokens: 2 }],
        ["/completion", { prompt: [id], n_predict: 2 }],
      ] as const
    ) {
      const error = await errorOf(await postJson(`${server.url}${path}`, body), 400);
      match(error.message, new RegExp(`Prompt token ${id} is not in the vocabulary`), path);
    }
  }
});

Deno.test("a chunked body cut off by the client's half-close is 400, not a 500", async () => {
  await using server = await startServer();
  const { hostname, port } = new URL(server.url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  await conn.write(new TextEncoder().encode(
    "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
      'Transfer-Encoding: chunked\r\n\r\n5\r\n{"pro\r\n',
  ));
  await conn.closeWrite();
  const text = await new Response(conn.readable).text();
  match(text, /^HTTP\/1\.1 400 /, text);
  match(text, /incomplete_body/);
});

Deno.test("a chunked body whose framing breaks is a 400 with a JSON body, and one over 8 MiB a 413", async () => {
  await using server = await startServer();
  const { hostname, port } = new URL(server.url);
  const send = async (chunks: string) => {
    const conn = await Deno.connect({ hostname, port: Number(port) });
    const bytes = new TextEncoder().encode(
      "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
        `Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}`,
    );
    const writing = (async () => {
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
    })().catch(() => {}); // the server may close before the whole upload is in
    const text = await new Response(conn.readable).text(); // the server closes after its answer
    await writing;
    return text;
  };
  const badSize = await send('zz\r\n{"prompt":"x"}\r\n0\r\n\r\n');
  match(badSize, /^HTTP\/1\.1 400 /, badSize);
  match(badSize, /"code":"incomplete_body"/);
  match(badSize, /hexadecimal/);
  const wrongLength = await send('3\r\n{"prompt":"x"}\r\n0\r\n\r\n');
  match(wrongLength, /^HTTP\/1\.1 400 [^]*not followed by CRLF/, wrongLength);
  const chunk = "x".repeat(1024 * 1024);
  const huge = await send(`${chunk.length.toString(16)}\r\n${chunk}\r\n`.repeat(9));
  match(huge, /^HTTP\/1\.1 413 /, huge.slice(0, 300));
  const fine = await send(
    `${(14).toString(16)}\r\n{"prompt":"x",\r\n10\r\n"max_tokens": 1}\r\n0\r\n\r\n`,
  );
  match(fine, /^HTTP\/1\.1 200 /, fine);
});

Deno.test("HEAD answers as GET does, without the body, where a GET reads and upgrades nothing", async () => {
  await using server = await startServer();
  for (const path of ["/health", "/v1/models", "/metrics"]) {
    const res = await fetch(`${server.url}${path}`, { method: "HEAD" });
    equal(res.status, 200, path);
    equal(await res.text(), "", path);
  }
  const models = await fetch(`${server.url}/v1/models`, { method: "HEAD" });
  match(models.headers.get("content-type") ?? "", /application\/json/);
  await models.body?.cancel();
  for (const [path, allow] of [["/ws/generate", "GET"], ["/v1/completions", "POST"]]) {
    const res = await fetch(`${server.url}${path}`, { method: "HEAD" });
    equal(res.status, 405, path);
    equal(res.headers.get("allow"), allow, path);
    await res.body?.cancel();
  }
  const post = await fetch(`${server.url}/health`, { method: "POST" });
  equal(post.headers.get("allow"), "GET, HEAD");
  await post.body?.cancel();
});

Deno.test("a request whose lines end in bare LFs is answered at once, not after the header timeout", async () => {
  await using server = await startServer();
  const started = performance.now();
  const answer = await rawRequest(
    server.url,
    "GET /health HTTP/1.1\nHost: localhost\nConnection: close\n",
  );
  equal(answer.status, 200, answer.text);
  ok(performance.now() - started < 3000, `answered in ${performance.now() - started} ms`);
});

Deno.test("a head no server may take gets a JSON error body, not an empty 400", async () => {
  await using server = await startServer();
  const heads = [
    "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nContent-Length: 3\r\n",
    "GET /health HTTP/1.1\r\nHost: localhost\r\nX: 1\r\n folded\r\n",
    "GET /health HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n",
    "GET /health  HTTP/1.1\r\nHost: localhost\r\n",
    "GET * HTTP/1.1\r\nHost: localhost\r\n",
    "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n",
    "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n" +
    "Content-Length: 5\r\n",
  ];
  const answers = [...heads.map((head) => ({ head, status: 400, code: "malformed_request" })), {
    head: "GET /health HTTP/1.2\r\nHost: localhost\r\n",
    status: 505,
    code: "http_version_not_supported",
  }];
  for (const { head, status, code } of answers) {
    const answer = await rawRequest(server.url, head);
    equal(answer.status, status, answer.text);
    const body = JSON.parse(answer.text.slice(answer.text.indexOf("\r\n\r\n") + 4));
    equal(body.error.code, code, answer.text);
  }
  const health = await fetch(`${server.url}/health`);
  equal(health.status, 200, "the server goes on");
  await health.body?.cancel();
});

Deno.test("6: a cross-site form POST (text/plain) is 415 and changes nothing", async () => {
  await using server = await startServer();
  (await server.ctx.registry.acquire("tiny-f32")).release();
  const res = await fetch(`${server.url}/api/models/unload`, {
    method: "POST",
    headers: { "content-type": "text/plain" },
    body: JSON.stringify({ model: "tiny-f32" }),
  });
  await errorOf(res, 415, "unsupported_media_type");
  equal(server.ctx.registry.state("tiny-f32"), "loaded");
});

Deno.test("a compressed body is 415 naming its Content-Encoding, not 'not valid UTF-8'", async () => {
  await using server = await startServer();
  const body = new Response(
    new Blob([JSON.stringify({ prompt: "x", max_tokens: 1 })]).stream()
      .pipeThrough(new CompressionStream("gzip")),
  );
  const res = await fetch(`${server.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "content-encoding": "gzip" },
    body: await body.arrayBuffer(),
  });
  const error = await errorOf(res, 415, "unsupported_media_type");
  match(error.message, /Content-Encoding "gzip" is not supported/);
});

Deno.test("8: top_k beyond int32 is a 400; max_tokens 0 generates nothing", async () => {
  await using server = await startServer();
  const bad = await postJson(`${server.url}/v1/completions`, { prompt: "hi", top_k: 2 ** 31 });
  equal((await errorOf(bad, 400)).param, "top_k");
  for (const [field, value] of [["max_tokens", 1e300], ["n_predict", 2 ** 63]] as const) {
    const huge = await postJson(`${server.url}/api/generate`, { prompt: "hi", [field]: value });
    const error = await errorOf(huge, 400, "invalid_value");
    equal(error.param, field);
  }
  const none = await (await postJson(`${server.url}/v1/completions`, {
    prompt: "hi",
    max_tokens: 0,
  })).json();
  equal(none.choices[0].text, "");
  equal(none.usage.completion_tokens, 0);
  equal(none.choices[0].finish_reason, "length");
});

Deno.test("10: with an API key, unknown routes and wrong methods are 401 before 404/405", async () => {
  await using server = await startServer({ settings: { apiKey: "secret" } });
  await errorOf(await fetch(`${server.url}/no/such/route`), 401, "invalid_api_key");
  await errorOf(await fetch(`${server.url}/v1/chat/completions`), 401, "invalid_api_key");
  await errorOf(
    await fetch(`${server.url}/no/such/route`, { headers: { authorization: "Bearer secret" } }),
    404,
  );
});

Deno.test("10: a request with a bad field is a 400 before any model is loaded for it", async () => {
  await using server = await startServer({ fixtures: ["tiny-f32", "tiny-q8_0"] });
  const bad = [
    { max_tokens: "ten" },
    { temperature: "hot" },
    { logit_bias: { "0x1F": 1 } },
    { response_format: { type: "json_schema" } },
  ];
  for (const fields of bad) {
    const answer = await postJson(`${server.url}/v1/chat/completions`, {
      model: "tiny-q8_0",
      messages: [{ role: "user", content: "x" }],
      ...fields,
    });
    equal(answer.status, 400, JSON.stringify(fields));
    await answer.body?.cancel();
  }
  equal(server.ctx.registry.state("tiny-q8_0"), "available", "nothing was loaded");
  // A token id beyond the vocabulary is still refused once the model is there.
  const bias = await postJson(`${server.url}/v1/completions`, {
    model: "tiny-q8_0",
    prompt: "x",
    max_tokens: 1,
    logit_bias: { "99999999": 1 },
  });
  equal(bias.status, 400);
  match((await bias.json()).error.message, /not a token id of this model \(it has \d+\)/);
});

Deno.test("10: a WebSocket frame over the body limit is closed with 1009", async () => {
  await using server = await startServer();
  const ws = new WebSocket(`${server.url.replace("http", "ws")}/ws/generate`);
  const code = await new Promise<number>((resolve) => {
    ws.onopen = () => ws.send("x".repeat(20 * 1024 * 1024));
    ws.onclose = (event) => resolve(event.code);
    ws.onerror = () => {};
  });
  equal(code, 1009);
  equal((await fetch(`${server.url}/health`)).status, 200);
});

Deno.test("11: a leased model is never unloaded under its user", async () => {
  await using server = await startServer({ load: { keepAliveMs: 50 } });
  const lease = await server.ctx.registry.acquire("tiny-f32");
  await errorOf(
    await postJson(`${server.url}/api/models/unload`, { model: "tiny-f32" }),
    503,
    "model_unavailable",
  );
  await new Promise((r) => setTimeout(r, 300));
  equal(server.ctx.registry.state("tiny-f32"), "loaded", "keep-alive waits for the lease");
  lease.release();
  ok(await waitFor(() => server.ctx.registry.state("tiny-f32") === "available", 3000));
});

Deno.test("11: a step that throws fails its requests, and the scheduler keeps serving", async () => {
  await using server = await startServer();
  const sample = Sampler.prototype.sample;
  let throwOnce = true;
  Sampler.prototype.sample = function (...args) {
    if (throwOnce) {
      throwOnce = false;
      throw new RangeError("injected fault");
    }
    return sample.apply(this, args);
  };
  try {
    const failed = await postJson(`${server.url}/v1/completions`, { prompt: "a", max_tokens: 4 });
    ok(failed.status >= 500, `status ${failed.status}`);
    await failed.body?.cancel();
    equal(busySlots(server), 0, "the failed request's slot was freed");
    const next = await (await postJson(`${server.url}/v1/completions`, {
      prompt: "a",
      max_tokens: 4,
      ignore_eos: true,
    })).json();
    equal(next.usage.completion_tokens, 4);
  } finally {
    Sampler.prototype.sample = sample;
  }
});
