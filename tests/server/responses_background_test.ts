import { deepEqual, equal, match, ok } from "node:assert/strict";
import { postJson, startServer, type TestServer, waitFor } from "./harness.ts";
import { ResponseStore } from "../../src/server/response_store.ts";
import type { BackgroundRun } from "../../src/server/responses_background.ts";

const MODEL = "tiny-f32";

function serve(): Promise<TestServer> {
  return startServer({ load: { ctxSize: 16384, threads: 1, parallel: 2 } });
}

/** Starts a background response and answers its id. */
async function createBackground(
  server: TestServer,
  fields: Record<string, unknown>,
): Promise<string> {
  const created = await postJson(`${server.url}/v1/responses`, {
    model: MODEL,
    input: "Go on",
    temperature: 0,
    background: true,
    ...fields,
  });
  equal(created.status, 200);
  return (await created.json()).id;
}

/** The run of a stored background response. */
function runOf(server: TestServer, id: string): BackgroundRun {
  const run = server.ctx.responses?.get(id)?.run;
  if (!run) throw new Error(`No background run is stored for ${id}`);
  return run;
}

/** A Responses stream's events, parsed from its `data:` lines. */
async function eventsOf(response: Response): Promise<Record<string, unknown>[]> {
  const raw = await response.text();
  return raw.split("\n\n").filter((block) => block !== "").map((block) =>
    JSON.parse(block.split("\n").find((line) => line.startsWith("data: "))!.slice(6))
  );
}

/** The URL of a background response's events after one sequence number. */
function eventsUrl(server: TestServer, id: string, after: number): string {
  return `${server.url}/v1/responses/${id}?stream=true&starting_after=${after}`;
}

Deno.test("GETs waiting for an event not sent yet stop waiting when their clients hang up, and a live reader still gets every event", async () => {
  await using server = await serve();
  // Long enough to outlast the hang-ups by far, then cancelled.
  const id = await createBackground(server, { max_output_tokens: 15000 });
  const run = runOf(server, id);
  const live = fetch(eventsUrl(server, id, -1));
  const patient = fetch(eventsUrl(server, id, 999_999));

  // 200 GETs of an event the run has not sent, each hanging up once the server waits for it.
  const { port } = new URL(server.url);
  const head = new TextEncoder().encode(
    `GET /v1/responses/${id}?stream=true&starting_after=999999 HTTP/1.1\r\n` +
      `Host: 127.0.0.1:${port}\r\n\r\n`,
  );
  const conns = await Promise.all(
    Array.from({ length: 200 }, () => Deno.connect({ hostname: "127.0.0.1", port: Number(port) })),
  );
  await Promise.all(conns.map((conn) => conn.write(head)));
  ok(await waitFor(() => run.waiting >= 201, 10_000), `${run.waiting} waiting`);
  for (const conn of conns) conn.close();
  ok(
    await waitFor(() => run.waiting <= 2 && server.ctx.arrivals.count(60_000) <= 1, 2000),
    `${run.waiting} still waiting, ${server.ctx.arrivals.count(60_000)} handlers running`,
  );
  ok(!run.done, "the run was still going: the waits ended with their clients");
  // Stopped now: the live reader's stream ends with the run (a cancelled one has no last event).
  equal((await fetch(`${server.url}/v1/responses/${id}/cancel`, { method: "POST" })).status, 200);

  const events = await eventsOf(await live);
  deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
  ok(events.length > 3, `${events.length} events`);
  const done = await (await fetch(`${server.url}/v1/responses/${id}`)).json();
  equal(
    events.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join(""),
    done.output_text,
  );
  // A client that stays is answered once the run has ended short of its event.
  const late = await patient;
  equal(late.status, 400);
  equal((await late.json()).error.param, "starting_after");
  equal(run.waiting, 0);
});

Deno.test("a starting_after past the last event of an ended background response is a 400 at once; the last one streams nothing", async () => {
  await using server = await serve();
  const id = await createBackground(server, { max_output_tokens: 1 });
  const run = runOf(server, id);
  ok(await waitFor(() => run.done, 10_000));
  const events = await eventsOf(await fetch(eventsUrl(server, id, -1)));
  const last = events.length - 1;
  equal(events[last]?.sequence_number, last);

  const nothing = await fetch(eventsUrl(server, id, last));
  equal(nothing.status, 200);
  equal(await nothing.text(), "");
  const past = await fetch(eventsUrl(server, id, last + 1));
  equal(past.status, 400);
  const error = (await past.json()).error;
  equal(error.param, "starting_after");
  match(error.message, new RegExp(`"starting_after" must be at most ${last}`));
});

Deno.test("stored background responses count their kept events: large echoed tools push older ones out of the store", async () => {
  await using server = await serve();
  const maxBytes = 1_000_000;
  const store = new ResponseStore({ maxBytes });
  server.ctx.responses = store;
  // tool_choice "none": the tools are echoed in the response and its events, never prompted.
  const tools = [{
    type: "function",
    name: "big",
    description: "x".repeat(100_000),
    parameters: { type: "object", properties: {} },
  }];
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const id = await createBackground(server, { max_output_tokens: 1, tools, tool_choice: "none" });
    const run = runOf(server, id);
    ok(await waitFor(() => run.done, 10_000));
    ok(run.bytes > 3 * 100_000, `${run.bytes} bytes of events`);
    ids.push(id);
  }

  const kept = ids.filter((id) => store.get(id) !== undefined);
  ok(kept.length < ids.length, `all ${ids.length} kept`);
  equal(kept.at(-1), ids.at(-1), "the newest stays, the oldest go");
  const bytes = kept.reduce((sum, id) => {
    const stored = store.get(id)!;
    return sum + JSON.stringify(stored.response).length + stored.run!.bytes;
  }, 0);
  ok(bytes <= maxBytes, `${bytes} bytes kept, events included`);
  equal((await fetch(`${server.url}/v1/responses/${ids[0]}`)).status, 404);
  // What is kept still replays whole, ending with its last event.
  const events = await eventsOf(await fetch(eventsUrl(server, ids.at(-1)!, -1)));
  equal(events[0]?.type, "response.created");
  equal(events.at(-1)?.type, "response.incomplete");
});
