import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { parseBindAddress, parseLoraFlag, parseServeArgs } from "../../src/cli/serve.ts";
import { fixtureLora, fixtureModel, REPO_ROOT } from "../fixtures/models.ts";

const model = await fixtureModel("tiny-f32");

interface Served {
  url: string;
  process: Deno.ChildProcess;
  output: Promise<string>;
}

async function serve(args: string[], env: Record<string, string> = {}): Promise<Served> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "main.ts"), "serve", ...args],
    cwd: REPO_ROOT,
    env: { SHIMMY_BIND_ADDRESS: "", ...env },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/listening on (http:\/\/\S+)/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`shimmy serve exited early:\n${seen}`);
    seen += value;
  }
  const url = (/listening on (http:\/\/\S+)/.exec(seen) as RegExpExecArray)[1] as string;
  const output = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return seen;
      seen += value;
    }
  })();
  return { url, process, output };
}

Deno.test("shimmy serve prints its URL and models, serves, and exits 0 on SIGTERM", async () => {
  const served = await serve(["--model", model, "--bind", "127.0.0.1:0", "--parallel", "2"]);
  const health = await (await fetch(`${served.url}/health`)).json();
  deepEqual(health.models, [{ name: "tiny-f32", state: "loaded" }]);
  const stream = await fetch(`${served.url}/v1/completions`, {
    method: "POST",
    body: JSON.stringify({ prompt: "x", max_tokens: 200, ignore_eos: true, stream: true }),
  });
  served.process.kill("SIGTERM");
  const text = await stream.text();
  ok(text.endsWith("data: [DONE]\n\n"), "the in-flight stream finishes within the grace period");
  const status = await served.process.status;
  equal(status.code, 0);
  match(await served.output, /tiny-f32\s+loaded/);
  const stderr = await new Response(served.process.stderr).text();
  match(stderr, /SIGTERM: stopping/);
});

Deno.test("on SIGTERM a stream longer than the grace period is cancelled and the exit is still 0", async () => {
  const served = await serve(["--model", model, "--bind", "127.0.0.1:0", "--ctx-size", "16384"]);
  const stream = await fetch(`${served.url}/v1/completions`, {
    method: "POST",
    body: JSON.stringify({ prompt: "x", max_tokens: 16000, ignore_eos: true, stream: true }),
  });
  const reader = stream.body!.getReader();
  await reader.read();
  const started = performance.now();
  served.process.kill("SIGTERM");
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  const status = await served.process.status;
  equal(status.code, 0);
  const elapsed = performance.now() - started;
  ok(elapsed >= 4500 && elapsed < 20_000, `stopped after ${elapsed} ms`);
  ok(!text.includes('"finish_reason":"length"'), "the stream was cut, not finished");
  await served.output;
  await served.process.stderr.cancel();
});

Deno.test("--bind auto takes 11435, or the next free port when it is busy", async () => {
  let blocker: Deno.Listener | undefined;
  try {
    blocker = Deno.listen({ hostname: "127.0.0.1", port: 11435 });
  } catch {
    // already busy: auto must skip it all the same
  }
  const served = await serve(["--model", model]);
  try {
    const port = Number(new URL(served.url).port);
    ok(port > 11435 && port <= 11535, `port ${port}`);
  } finally {
    served.process.kill("SIGTERM");
    await served.process.status;
    await served.output;
    await served.process.stderr.cancel();
    blocker?.close();
  }
});

Deno.test("--lora and SHIMMY_LORA_GGUF attach adapters to the default model at load", async () => {
  const adapter = await fixtureLora("tiny-f32-lora");
  const served = await serve(["--model", model, "--bind", "127.0.0.1:0"], {
    SHIMMY_LORA_GGUF: `${adapter}:0.5`,
  });
  try {
    const lora = await (await fetch(`${served.url}/api/lora?model=tiny-f32`)).json();
    deepEqual(lora.attached, [{ path: adapter, scale: 0.5 }]);
  } finally {
    served.process.kill("SIGTERM");
    await served.process.status;
    await served.output;
    await served.process.stderr.cancel();
  }
});

Deno.test("serve flags parse as in the original Shimmy", () => {
  const args = parseServeArgs(
    ["--model-path", "/m/a.gguf", "--model", "b", "--parallel", "8", "--cors", "*"],
    () => undefined,
  );
  deepEqual(args?.models, ["b", "/m/a.gguf"]);
  equal(args?.parallel, 8);
  equal(args?.bind, "auto");
  equal(parseServeArgs([], (n) => (n === "SHIMMY_API_KEY" ? "k" : undefined))?.apiKey, "k");
  deepEqual(parseBindAddress("[::1]:8080"), { hostname: "::1", port: 8080 });
  deepEqual(parseBindAddress("0.0.0.0:11435"), { hostname: "0.0.0.0", port: 11435 });
  deepEqual(parseLoraFlag("/a/b.gguf:0.25"), { path: "/a/b.gguf", scale: 0.25 });
  deepEqual(parseLoraFlag("C:\\a\\b.gguf"), { path: "C:\\a\\b.gguf", scale: 1 });
  equal(parseServeArgs(["--keep-alive", "30s"], () => undefined)?.keepAliveMs, 30_000);
});
