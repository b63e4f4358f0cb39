import { deepEqual, equal, rejects, strictEqual } from "node:assert/strict";
import { readJsonBody } from "../../src/server/request_body.ts";
import { IncomingRequest } from "../../src/server/served_request.ts";
import type { HttpError } from "../../src/server/http_error.ts";

const encoder = new TextEncoder();

function post(body: Uint8Array | (() => ReadableStream<Uint8Array>) | null): IncomingRequest {
  return new IncomingRequest({
    method: "POST",
    url: "http://t/v1/completions",
    headers: [["Content-Type", "application/json"], ["X-Tag", "a"], ["x-tag", "b"]],
    signal: new AbortController().signal,
    body,
  });
}

Deno.test("an IncomingRequest's headers are looked up in any case, repeated fields joined", () => {
  const request = post(null);
  equal(request.headers.get("content-type"), "application/json");
  equal(request.headers.get("CONTENT-TYPE"), "application/json");
  equal(request.headers.get("x-tag"), "a, b");
  equal(request.headers.has("X-Tag"), true);
  equal(request.headers.get("origin"), null);
  equal(request.headers.has("origin"), false);
  equal(request.body, null);
  equal(request.bodyUsed, false);
});

Deno.test("readJsonBody() takes a whole body's bytes as they are, once, without a stream", async () => {
  const bytes = encoder.encode('{"prompt":"hi","max_tokens":2}');
  const request = post(bytes);
  deepEqual(await readJsonBody(request), { prompt: "hi", max_tokens: 2 });
  equal(request.bodyUsed, true);
  equal(request.takeWholeBody(), undefined, "taken once");
  const other = post(bytes);
  strictEqual(other.takeWholeBody(), bytes, "the same bytes, not a copy");
});

Deno.test("a whole body keeps the size limit, and one read as a stream is not taken whole", async () => {
  const big = post(encoder.encode(`{"prompt":"${"x".repeat(100)}"}`));
  await rejects(readJsonBody(big, { maxBytes: 50 }), (error: unknown) => {
    equal((error as HttpError).status, 413);
    return true;
  });
  const streamed = post(encoder.encode('{"a":1}'));
  const reader = (streamed.body as ReadableStream<Uint8Array>).getReader();
  equal(streamed.bodyUsed, true);
  equal(streamed.takeWholeBody(), undefined);
  deepEqual(await reader.read(), { done: false, value: encoder.encode('{"a":1}') });
});

Deno.test("a body still to come opens its stream only when read", async () => {
  let opened = 0;
  const request = post(() => {
    opened++;
    return ReadableStream.from([encoder.encode('{"b":'), encoder.encode("2}")]);
  });
  equal(opened, 0);
  equal(request.takeWholeBody(), undefined);
  deepEqual(await readJsonBody(request), { b: 2 });
  equal(opened, 1);
  equal(request.bodyUsed, true);
  await rejects(request.text(), TypeError);
});

Deno.test("text() and arrayBuffer() read the whole body either way", async () => {
  equal(await post(encoder.encode("héllo")).text(), "héllo");
  const buffer = await post(() => ReadableStream.from([encoder.encode("ab")])).arrayBuffer();
  deepEqual(new Uint8Array(buffer), encoder.encode("ab"));
  equal(await post(null).text(), "");
});
