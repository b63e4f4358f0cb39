import { deepEqual, equal, rejects } from "node:assert/strict";
import { readJsonBody } from "../../src/server/request_body.ts";
import { noteWholeBody, takeWholeBody } from "../../src/server/whole_body.ts";
import type { HttpError } from "../../src/server/http_error.ts";

const encoder = new TextEncoder();

function postOf(text: string): { request: Request; bytes: Uint8Array } {
  const bytes = encoder.encode(text);
  const request = new Request("http://t/v1/completions", { method: "POST", body: bytes });
  return { request, bytes };
}

Deno.test("readJsonBody() takes a noted whole body as it is, leaving the stream unread", async () => {
  const { request, bytes } = postOf('{"prompt":"hi","max_tokens":2}');
  noteWholeBody(request, bytes);
  deepEqual(await readJsonBody(request), { prompt: "hi", max_tokens: 2 });
  equal(request.bodyUsed, false);
  equal(takeWholeBody(request), undefined, "taken once");
});

Deno.test("a noted whole body keeps the size limit, and a body already read is not taken", async () => {
  const big = postOf(`{"prompt":"${"x".repeat(100)}"}`);
  noteWholeBody(big.request, big.bytes);
  await rejects(readJsonBody(big.request, { maxBytes: 50 }), (error: unknown) => {
    equal((error as HttpError).status, 413);
    return true;
  });
  const read = postOf("{}");
  noteWholeBody(read.request, read.bytes);
  await read.request.arrayBuffer();
  equal(takeWholeBody(read.request), undefined);
});
