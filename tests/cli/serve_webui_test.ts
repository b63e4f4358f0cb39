import { equal, match } from "node:assert/strict";
import { join } from "node:path";
import { parseServeArgs } from "../../src/cli/serve.ts";
import { buildWebui } from "../../scripts/build_webui.ts";
import { fixtureModel, REPO_ROOT } from "../fixtures/models.ts";

const model = await fixtureModel("tiny-f32");
await buildWebui();

/** Runs `shimmy serve` until it listens, then returns what `GET /` answers and stops it. */
async function fetchRoot(flags: string[]): Promise<{ status: number; type: string | null }> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "main.ts"), "serve", "--model", model, ...flags],
    cwd: REPO_ROOT,
    env: { SHIMMY_BIND_ADDRESS: "127.0.0.1:0" },
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  let url: string | undefined;
  while (!(url = /listening on (http:\/\/\S+)/.exec(seen)?.[1])) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`shimmy serve exited early:\n${seen}`);
    seen += value;
  }
  try {
    const response = await fetch(`${url}/`);
    await response.body?.cancel();
    return { status: response.status, type: response.headers.get("content-type") };
  } finally {
    process.kill("SIGTERM");
    await reader.cancel();
    await process.status;
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
