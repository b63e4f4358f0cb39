import { equal, match } from "node:assert/strict";
import { parseServeArgs } from "../../src/cli/serve.ts";
import { buildWebui } from "../../scripts/build_webui.ts";
import { fixtureModel } from "../fixtures/models.ts";
import { spawnServe, stopServe } from "../helpers.ts";

const model = await fixtureModel("tiny-f32");
await buildWebui();

/** Runs `shimmy serve` until it listens, then returns what `GET /` answers and stops it. */
async function fetchRoot(flags: string[]): Promise<{ status: number; type: string | null }> {
  const served = await spawnServe(["--model", model, ...flags], {
    SHIMMY_BIND_ADDRESS: "127.0.0.1:0",
  });
  try {
    const response = await fetch(`${served.url}/`);
    await response.body?.cancel();
    return { status: response.status, type: response.headers.get("content-type") };
  } finally {
    await stopServe(served);
  }
}

Deno.test("shimmy serve serves the chat page at /, and --no-webui turns it off", async () => {
  const page = await fetchRoot([]);
  equal(page.status, 200);
  match(page.type ?? "", /^text\/html/);
  equal((await fetchRoot(["--no-webui"])).status, 404);
});

Deno.test("--no-webui parses; the page is on by default", () => {
  equal(parseServeArgs([], () => undefined)?.noWebui, false);
  equal(parseServeArgs(["--no-webui"], () => undefined)?.noWebui, true);
});
