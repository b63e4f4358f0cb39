import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { ModelPulls } from "../../src/models/pull_tracker.ts";
import { fixtureModel, REPO_ROOT } from "../fixtures/models.ts";
import { startFakeHub } from "../models/fake_hub.ts";

const f32 = await Deno.readFile(await fixtureModel("tiny-f32"));
const q8 = await Deno.readFile(await fixtureModel("tiny-q8_0"));
const REPO = "tiny-org/Tiny-Instruct-GGUF";
const files = [
  { path: "tiny-instruct-Q4_K_M.gguf", bytes: f32 },
  { path: "tiny-instruct-Q8_0.gguf", bytes: q8 },
];

Deno.test("ModelPulls runs one pull for concurrent askers and shows its progress", async () => {
  await using hub = startFakeHub({ [REPO]: { files } });
  const cache = await Deno.makeTempDir();
  try {
    const seen: string[] = [];
    const pulls: ModelPulls = new ModelPulls({ hubCache: cache, endpoint: hub.url }, (_, p) => {
      if (p.status === "downloading") seen.push(JSON.stringify(pulls.status()));
    });
    const [a, b] = await Promise.all([pulls.pull(REPO), pulls.pull(REPO.toLowerCase())]);
    equal(a.path, b.path);
    equal(hub.requests.filter((r) => r.path.startsWith("/cdn/")).length, 1);
    ok(seen.some((s) => /"status":"downloading","file":"tiny-instruct-Q4_K_M.gguf"/.test(s)));
    deepEqual(pulls.status(), []);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("serve --allow-pull pulls its --model and a model a request names, then serves them", async () => {
  await using hub = startFakeHub({
    [REPO]: { files },
    "tiny-org/Other-GGUF": { files: [{ path: "other-Q4_K_M.gguf", bytes: f32 }] },
  });
  const cache = await Deno.makeTempDir();
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join(REPO_ROOT, "main.ts"),
      "serve",
      "--allow-pull",
      "--model",
      `hf.co/${REPO}`,
      "--bind",
      "127.0.0.1:0",
    ],
    cwd: cache,
    env: { SHIMMY_BIND_ADDRESS: "", HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HOME: cache },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const stderr = new Response(process.stderr).text();
  try {
    const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!/listening on (http:\/\/\S+)[^]*\n {2}\S/.test(seen)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`shimmy serve exited early:\n${seen}\n${await stderr}`);
      seen += value;
    }
    void (async () => {
      while (!(await reader.read()).done);
    })();
    const url = /listening on (http:\/\/\S+)/.exec(seen)![1]!;
    const complete = (body: Record<string, unknown>) =>
      fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "x", max_tokens: 4, ...body }),
      });
    const first = await complete({});
    equal(first.status, 200, await first.clone().text());
    const second = await complete({ model: `hf.co/${REPO}:Q8_0` });
    equal(second.status, 200, await second.clone().text());
    match((await second.json()).model, /q8_0/i);
    const health = await (await fetch(`${url}/health`)).json();
    deepEqual(health.pulls, []);
    equal(health.models.length, 2);
    const pull = await fetch(`${url}/ollama/api/pull`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "hf.co/tiny-org/Other-GGUF" }),
    });
    const lines = (await pull.text()).trim().split("\n").map((l) => JSON.parse(l));
    deepEqual(lines[0], { status: "pulling manifest" });
    const last = lines.findLast((l) => l.completed !== undefined);
    equal(last.completed, f32.length);
    equal(last.total, f32.length);
    match(last.digest, /^sha256:[0-9a-f]{64}$/);
    deepEqual(lines.at(-1), { status: "success" });
    const listed = await (await fetch(`${url}/v1/models`)).json();
    ok(listed.data.length === 3, JSON.stringify(listed));
    // A plain URL from a request is not fetched: it could reach any address the server can.
    const requestsBefore = hub.requests.length;
    const urlModel = `${hub.url}/files/internal.gguf`;
    const byUrl = await complete({ model: urlModel });
    equal(byUrl.status, 404, await byUrl.clone().text());
    await byUrl.body?.cancel();
    const pullUrl = await fetch(`${url}/ollama/api/pull`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: urlModel }),
    });
    equal(pullUrl.status, 403);
    match(JSON.stringify(await pullUrl.json()), /pulls models from the Hugging Face Hub only/);
    equal(hub.requests.length, requestsBefore, "no request reached the URL's host");
    const unknown = await complete({ model: "hf.co/tiny-org/Nope-GGUF" });
    equal(unknown.status, 404, await unknown.clone().text());
    match((await unknown.json()).error.message, /Nope-GGUF.*not found/);
  } finally {
    process.kill("SIGTERM");
    await process.status;
    await Deno.remove(cache, { recursive: true });
  }
  const log = await stderr;
  match(log, new RegExp(`Pulling hf\\.co/${REPO}…`));
  match(log, /Pulled hf\.co\/tiny-org\/Tiny-Instruct-GGUF:Q8_0/);
});
