import { equal, match, ok, throws } from "node:assert/strict";
import { join } from "node:path";
import { Ollama } from "ollama";
import { parseServeArgs } from "../../src/cli/serve.ts";
import { fixtureModel, REPO_ROOT } from "../fixtures/models.ts";

const model = await fixtureModel("tiny-f32");

/** A loopback port nothing listens on (free when this returns). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

function shimmy(args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "main.ts"), "serve", "--model", model, ...args],
    cwd: REPO_ROOT,
    env: { SHIMMY_BIND_ADDRESS: "" },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  });
}

Deno.test("--ollama-bind and SHIMMY_OLLAMA_BIND name the Ollama listener; anything but HOST:PORT is a usage error", () => {
  equal(parseServeArgs([], () => undefined)?.ollamaBind, undefined, "off by default");
  equal(
    parseServeArgs(["--ollama-bind", "127.0.0.1:11434"], () => undefined)?.ollamaBind,
    "127.0.0.1:11434",
  );
  equal(
    parseServeArgs([], (n) => n === "SHIMMY_OLLAMA_BIND" ? "[::1]:11434" : undefined)?.ollamaBind,
    "[::1]:11434",
  );
  throws(
    () => parseServeArgs(["--ollama-bind", "auto"], () => undefined),
    /--ollama-bind must be HOST:PORT, e\.g\. 127\.0\.0\.1:11434, got "auto"/,
  );
});

Deno.test("shimmy serve --ollama-bind serves Ollama's API at that address's root until SIGTERM", async () => {
  const port = freePort();
  const process = shimmy(["--bind", "127.0.0.1:0", "--ollama-bind", `127.0.0.1:${port}`]).spawn();
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/tiny-f32\s+loaded/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`shimmy serve exited early:\n${seen}`);
    seen += value;
  }
  match(seen, new RegExp(`Ollama API on http://127\\.0\\.0\\.1:${port}`));
  const ollama = new Ollama({ host: `http://127.0.0.1:${port}` });
  equal((await ollama.list()).models[0]?.name, "tiny-f32");
  const reply = await ollama.chat({
    model: "tiny-f32:latest",
    messages: [{ role: "user", content: "hi" }],
    options: { num_predict: 3 },
  });
  equal(reply.eval_count, 3);
  // The main port serves the same API under /ollama.
  const main = (/listening on (http:\/\/\S+)/.exec(seen) as RegExpExecArray)[1];
  equal((await new Ollama({ host: `${main}/ollama` }).version()).version.split(".").length, 3);
  process.kill("SIGTERM");
  equal((await process.status).code, 0);
  await reader.cancel();
  await process.stderr.cancel();
  // Both listeners are closed.
  const again = Deno.listen({ hostname: "127.0.0.1", port });
  again.close();
});

Deno.test("an --ollama-bind address in use is a one-line error and exit 1", async () => {
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const out = await shimmy([
      "--bind",
      "127.0.0.1:0",
      "--ollama-bind",
      `127.0.0.1:${blocker.addr.port}`,
    ])
      .output();
    const stderr = new TextDecoder().decode(out.stderr);
    equal(out.code, 1);
    match(stderr, /--ollama-bind: the address is already in use \(is Ollama running\?\)/);
    ok(!stderr.includes("    at "), `no stack trace:\n${stderr}`);
  } finally {
    blocker.close();
  }
});
