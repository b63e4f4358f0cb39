/**
 * Resumable streams through real HTTP and libllama: a streamed answer asked with
 * `X-Conversation-Id` goes on when its client hangs up, and `GET /v1/stream` replays its bytes
 * from any offset, so the bytes read before the hang-up and those replayed after make the
 * whole answer; `POST /v1/streams/lookup` reports it, `DELETE /v1/stream` stops it and frees its
 * slot, a new request with the same id replaces it, and without the header a hang-up still
 * cancels the generation. Against llama-server: the same routes and shapes.
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import { fixtureModel } from "../fixtures/models.ts";
import { referenceDir } from "../helpers.ts";
import { startReferenceServer } from "../oracle/reference_server.ts";
import { postJson, startServer, type TestServer, waitFor } from "./harness.ts";
import { StreamSessions } from "../../src/server/stream_sessions.ts";
import { concat } from "../reliability/wire.ts";

/** A stream that runs for seconds on tiny-f32 unless it is stopped. */
const LONG = {
  prompt: "go",
  max_tokens: 3000,
  ignore_eos: true,
  temperature: 0,
  stream: true,
  stream_options: { include_usage: true },
};

function busySlots(server: TestServer): number {
  return server.ctx.registry.loaded().get("tiny-f32")?.scheduler.stats().busySlots ?? -1;
}

/** Starts a kept stream and reads its first `chunks` reads, then hangs up; returns those bytes. */
async function startThenHangUp(url: string, id: string, chunks: number): Promise<Uint8Array> {
  const abort = new AbortController();
  const response = await postJson(`${url}/v1/completions`, LONG, {
    "x-conversation-id": id,
  }, abort.signal);
  equal(response.status, 200);
  const reader = response.body!.getReader();
  const read: Uint8Array[] = [];
  for (let i = 0; i < chunks; i++) {
    const { value } = await reader.read();
    if (value) read.push(value);
  }
  abort.abort();
  await reader.cancel().catch(() => {});
  return concat(read);
}

async function lookup(url: string, ids: unknown) {
  const response = await postJson(`${url}/v1/streams/lookup`, { conversation_ids: ids });
  return { status: response.status, body: await response.json() };
}

/** The completion's text and usage out of its SSE bytes. */
function answerOf(bytes: Uint8Array) {
  const events = new TextDecoder().decode(bytes).split("\n\n").filter((e) => e.startsWith("data: "))
    .map((e) => e.slice(6));
  equal(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  return {
    text: chunks.map((c) => c.choices?.[0]?.text ?? "").join(""),
    usage: chunks.at(-1).usage,
  };
}

Deno.test("a kept stream goes on after its client hangs up, and replays from any byte", async () => {
  await using server = await startServer({ load: { ctxSize: 4096 } });
  const before = await startThenHangUp(server.url, "conv-a", 2);
  ok(before.length > 0);
  // The generation runs on: the slot stays busy, then the answer ends in full.
  equal(busySlots(server), 1, "the gone client's generation runs on");
  ok(await waitFor(async () => (await lookup(server.url, ["conv-a"])).body[0]?.is_done, 20_000));
  const [found] = (await lookup(server.url, ["conv-a", "other"])).body;
  equal(found.conversation_id, "conv-a");
  ok(found.total_bytes > before.length);
  ok(found.completed_at >= found.started_at && found.started_at > 1_700_000_000);

  const rest = await fetch(`${server.url}/v1/stream?conv_id=conv-a&from=${before.length}`);
  equal(rest.status, 200);
  match(rest.headers.get("content-type") ?? "", /^text\/event-stream/);
  const whole = concat([before, new Uint8Array(await rest.arrayBuffer())]);
  equal(whole.length, found.total_bytes);
  const all = new Uint8Array(
    await (await fetch(`${server.url}/v1/stream?conv_id=conv-a`)).arrayBuffer(),
  );
  deepEqual(all, whole, "what was read, then the replay from there, is the whole stream");
  const answer = answerOf(whole);
  equal(answer.usage.completion_tokens, 3000);
  // The same text as an answer nobody hung up on.
  const { stream_options: _streamOnly, ...unstreamed } = LONG;
  const plain = await (await postJson(`${server.url}/v1/completions`, {
    ...unstreamed,
    stream: false,
  })).json();
  equal(answer.text, plain.choices[0].text);

  // Refusals.
  const status = async (path: string, init?: RequestInit) => {
    const response = await fetch(`${server.url}${path}`, init);
    await response.body?.cancel();
    return response.status;
  };
  deepEqual(
    await Promise.all([
      status("/v1/stream?conv_id=conv-a&from=-1"),
      status("/v1/stream?conv_id=conv-a&from=x"),
      status("/v1/stream"),
      status("/v1/stream?conv_id=unknown"),
      status("/v1/stream", { method: "DELETE" }),
      status("/v1/stream?conv_id=unknown", { method: "DELETE" }),
    ]),
    [400, 400, 400, 404, 400, 204],
  );
  deepEqual((await lookup(server.url, "conv-a")).status, 400);
  deepEqual((await lookup(server.url, [1])).status, 400);
  const bad = await postJson(`${server.url}/v1/completions`, { ...LONG, max_tokens: 1 }, {
    "x-conversation-id": "x".repeat(513),
  });
  equal(bad.status, 400);
  await bad.body?.cancel();
});

Deno.test("POST /v1/streams/lookup refuses a field it does not read", async () => {
  await using server = await startServer();
  const response = await postJson(`${server.url}/v1/streams/lookup`, {
    conversation_ids: [],
    conversation_id: "a",
  });
  equal(response.status, 400);
  match((await response.json()).error.message, /Unknown field "conversation_id"/);
});

Deno.test("DELETE /v1/stream stops a kept stream and frees its slot; a new request with the id replaces it", async () => {
  await using server = await startServer({ load: { ctxSize: 4096 } });
  await startThenHangUp(server.url, "conv-b", 1);
  equal(busySlots(server), 1);
  const deleted = await fetch(`${server.url}/v1/stream?conv_id=conv-b`, { method: "DELETE" });
  equal(deleted.status, 204);
  ok(await waitFor(() => busySlots(server) === 0, 2000), "the slot is freed");
  deepEqual((await lookup(server.url, ["conv-b"])).body, []);
  const gone = await fetch(`${server.url}/v1/stream?conv_id=conv-b`);
  equal(gone.status, 404);
  await gone.body?.cancel();

  // A reader following the first stream sees it end when a new request takes the id, and the
  // first generation stops: one slot is busy, the new one's.
  await startThenHangUp(server.url, "conv-c", 1);
  const follower = fetch(`${server.url}/v1/stream?conv_id=conv-c`).then((r) => r.text());
  await new Promise((r) => setTimeout(r, 100));
  await startThenHangUp(server.url, "conv-c", 1);
  const followed = await follower;
  ok(followed.length > 0 && !followed.includes("[DONE]"), "the first stream ended unfinished");
  ok(await waitFor(() => busySlots(server) === 1, 2000), "only the new generation runs");
  const [now] = (await lookup(server.url, ["conv-c"])).body;
  equal(now.is_done, false);
  const stopped = await fetch(`${server.url}/v1/stream?conv_id=conv-c`, { method: "DELETE" });
  await stopped.body?.cancel();
  ok(await waitFor(() => busySlots(server) === 0, 2000));
});

Deno.test("without X-Conversation-Id a hang-up still cancels, and a JSON answer keeps no session", async () => {
  await using server = await startServer({ load: { ctxSize: 4096 } });
  const abort = new AbortController();
  const response = await postJson(`${server.url}/v1/completions`, LONG, {}, abort.signal);
  const reader = response.body!.getReader();
  await reader.read();
  abort.abort();
  await reader.cancel().catch(() => {});
  ok(await waitFor(() => busySlots(server) === 0, 2000), "the generation stopped");

  const json = await postJson(`${server.url}/v1/completions`, { prompt: "go", max_tokens: 2 }, {
    "x-conversation-id": "conv-json",
  });
  equal(json.status, 200);
  equal((await json.json()).usage.completion_tokens, 2);
  deepEqual((await lookup(server.url, ["conv-json"])).body, []);
});

const reference = referenceDir();

Deno.test({
  name: "the stream routes answer as llama-server's do",
  ignore: reference === undefined,
  fn: async () => {
    await using shimmy = await startServer({ fixtures: ["tiny-f32"], load: { ctxSize: 4096 } });
    await using server = await startReferenceServer(
      reference as string,
      await fixtureModel("tiny-f32"),
      ["-c", "4096"],
    );
    const short = { ...LONG, max_tokens: 8 };
    for (const url of [shimmy.url, server.url]) {
      const response = await postJson(`${url}/v1/completions`, short, {
        "x-conversation-id": "conv-o::tiny",
      });
      await response.arrayBuffer();
      ok(await waitFor(async () => (await lookup(url, ["conv-o"])).body[0]?.is_done, 5000), url);
    }
    const ours = (await lookup(shimmy.url, ["conv-o"])).body;
    const theirs = (await lookup(server.url, ["conv-o"])).body;
    deepEqual(
      ours.map((s: object) => Object.keys(s).sort()),
      theirs.map((s: object) => Object.keys(s).sort()),
    );
    equal(ours[0].conversation_id, "conv-o::tiny", "an id matches its id::model sessions");
    equal(theirs[0].conversation_id, "conv-o::tiny");
    for (const url of [shimmy.url, server.url]) {
      const replay = await fetch(`${url}/v1/stream?conv_id=conv-o::tiny&from=0`);
      equal(replay.status, 200, url);
      equal(answerOf(new Uint8Array(await replay.arrayBuffer())).usage.completion_tokens, 8, url);
      const gone = await fetch(`${url}/v1/stream?conv_id=conv-o::tiny`, { method: "DELETE" });
      equal(gone.status, 204, url);
      await gone.body?.cancel();
      const missing = await fetch(`${url}/v1/stream?conv_id=conv-o::tiny`);
      equal(missing.status, 404, url);
      await missing.body?.cancel();
    }
  },
});

Deno.test("StreamSessions keeps a stream's last 4 MiB, and drops the oldest ended ones past 128 or 64 MiB", () => {
  const sessions = new StreamSessions();
  const open = (id: string) => sessions.open(id, new AbortController(), () => {});
  const one = open("big");
  const mib = new Uint8Array(1024 * 1024).fill(65);
  for (let i = 0; i < 6; i++) one.append(mib);
  equal(one.total, 6 * 1024 * 1024);
  equal(one.dropped, 2 * 1024 * 1024, "the oldest whole chunks beyond 4 MiB are dropped");
  equal(one.bytesFrom(5 * 1024 * 1024 + 10).reduce((n, b) => n + b.length, 0), 1024 * 1024 - 10);
  one.end();
  // 20 more ended streams of 4 MiB: over 64 MiB together, the oldest go.
  for (let i = 0; i < 20; i++) {
    const s = open(`s${i}`);
    for (let j = 0; j < 4; j++) s.append(mib);
    s.end();
  }
  equal(sessions.get("big"), undefined);
  equal(sessions.size, 16, "16 of 4 MiB fill the 64 MiB");
  ok(sessions.get("s19") && !sessions.get("s3"));
  // Past 128 ended small ones, the oldest go; a live one is never dropped.
  const live = open("live");
  for (let i = 0; i < 200; i++) open(`t${i}`).end();
  equal(sessions.size, 129);
  equal(sessions.get("live"), live);
  ok(sessions.get("t199") && !sessions.get("t71"));
});
