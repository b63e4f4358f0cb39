import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import { join } from "node:path";
import { parseBindAddress, parseLoraFlag, parseServeArgs } from "../../src/cli/serve.ts";
import { fixtureLora, fixtureModel, REPO_ROOT } from "../fixtures/models.ts";
import { spawnServe as serve, stopServe } from "../helpers.ts";

const model = await fixtureModel("tiny-f32");

/** Runs `shimmy serve` with `args` until it exits (as it does on a usage error). */
async function serveToExit(args: string[]): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "main.ts"), "serve", ...args],
    cwd: REPO_ROOT,
    stdin: "null",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("shimmy serve prints its URL and models, serves, and exits 0 on SIGTERM", async () => {
  const served = await serve(["--model", model, "--bind", "127.0.0.1:0", "--parallel", "2"]);
  const health = await (await fetch(`${served.url}/health`)).json();
  deepEqual(health.models, [{ name: "tiny-f32", state: "loaded" }]);
  const stream = await fetch(`${served.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
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

/** Serves tiny-f32 with room for a long stream, and `--shutdown-grace` when given. */
function serveLong(grace?: string) {
  return serve([
    "--model",
    model,
    "--bind",
    "127.0.0.1:0",
    "--ctx-size",
    "16384",
    ...(grace ? ["--shutdown-grace", grace] : []),
  ]);
}

/** Starts a stream of 16,000 tokens and reads its first event. */
async function longStream(url: string): Promise<ReadableStreamDefaultReader<Uint8Array>> {
  const stream = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "x", max_tokens: 16000, ignore_eos: true, stream: true }),
  });
  const reader = stream.body!.getReader();
  await reader.read();
  return reader;
}

Deno.test("on SIGTERM a stream longer than the grace period ends with an error event saying it was cut off, and the exit is still 0", async () => {
  const served = await serveLong();
  const reader = await longStream(served.url);
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
  ok(!/"finish_reason":"(length|stop)"/.test(text), "the stream was cut, not finished");
  // The client learns that its answer was cut off (OpenAI's SDKs raise on an error event).
  match(text, /data: \{"error":\{"message":"The model was closed \(the server is shutting down/);
  match(text, /"code":"shutting_down"/);
  await served.output;
  await served.process.stderr.cancel();
});

Deno.test("a second signal during the grace period exits at once, with 128 + its number", async () => {
  const served = await serveLong("60s");
  const reader = await longStream(served.url);
  served.process.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 500));
  const started = performance.now();
  served.process.kill("SIGINT");
  const status = await served.process.status;
  equal(status.code, 130);
  ok(performance.now() - started < 5000, `exited ${performance.now() - started} ms after`);
  await reader.cancel().catch(() => {});
  await served.output;
  match(await new Response(served.process.stderr).text(), /SIGINT again: exiting now/);
});

Deno.test("on SIGTERM past the grace a WebSocket stream gets an error frame saying it was cut off, a stalled upload does not hold the exit", async () => {
  const served = await serveLong("1s");
  const { hostname, port } = new URL(served.url);
  const stalled = await Deno.connect({ hostname, port: Number(port) });
  await stalled.write(new TextEncoder().encode(
    `POST /v1/completions HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
      `Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`,
  ));
  const frames: string[] = [];
  const ws = new WebSocket(`${served.url.replace("http", "ws")}/ws/generate`);
  const closed = new Promise<number>((resolve) => (ws.onclose = (event) => resolve(event.code)));
  const firstFrame = new Promise<void>((resolve) => {
    ws.onmessage = (event) => {
      frames.push(String(event.data));
      resolve();
    };
  });
  ws.onopen = () => ws.send(JSON.stringify({ prompt: "x", max_tokens: 16000, ignore_eos: true }));
  await firstFrame;
  const started = performance.now();
  served.process.kill("SIGTERM");
  const code = await closed;
  const status = await served.process.status;
  const elapsed = performance.now() - started;
  stalled.close();
  equal(status.code, 0);
  ok(elapsed < 6000, `exited ${Math.round(elapsed)} ms after SIGTERM`);
  const final = JSON.parse(frames[frames.length - 1] as string);
  equal(final.error.code, "shutting_down");
  match(final.error.message, /before the answer was complete/);
  equal(code, 1001); // going away
  ok(frames.length > 1, "pieces came before");
  await served.output;
  await served.process.stderr.cancel();
});

Deno.test("the original Shimmy's model routes: discover finds new files, load, unload and status by name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shimmy-serve-discover-" });
  try {
    await Deno.copyFile(model, join(dir, "First_Model.gguf"));
    const served = await serve(["--model-dirs", dir, "--bind", "127.0.0.1:0"]);
    try {
      const listed = (await (await fetch(`${served.url}/api/models`)).json()).models;
      equal(listed.length, 1);
      // The original's fields and values, with this server's beside them.
      equal(listed[0].name, "first_model");
      equal(listed[0].model_type, "Llama"); // from the architecture, the file name saying none
      match(listed[0].parameter_count, /^\d+(\.\d)?[KMB]$/); // 234K for the tiny model
      equal(listed[0].source, "discovered");
      match(listed[0].source_detail, /--model-dirs/);
      // A file added after the start is found by a new search, and served.
      await Deno.copyFile(model, join(dir, "Qwen_Late.gguf"));
      const post = (path: string) => fetch(`${served.url}${path}`, { method: "POST" });
      const found = await (await post("/api/models/discover")).json();
      equal(found.discovered, 2);
      deepEqual(found.added, ["qwen_late"]);
      equal(found.models[1].model_type, "Qwen"); // from the file name, as the original did
      const status = async (name: string) =>
        await (await fetch(`${served.url}/api/models/${name}/status`)).json();
      deepEqual(await status("qwen-late"), {
        model: "qwen_late",
        status: "available",
        loaded: false,
      });
      const loaded = await (await post("/api/models/qwen-late/load")).json();
      equal(loaded.status, "loaded");
      deepEqual(await status("qwen_late"), { model: "qwen_late", status: "loaded", loaded: true });
      const unloaded = await (await post("/api/models/qwen_late/unload")).json();
      equal(unloaded.unloaded, true);
      equal((await status("qwen_late")).loaded, false);
      // A request that names no model still gets the only model it got before the search.
      const answer = await fetch(`${served.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "x", max_tokens: 1 }),
      });
      equal((await answer.json()).model, "first_model");
      const missing = await fetch(`${served.url}/api/models/nope/status`);
      equal(missing.status, 404);
      await missing.body?.cancel();
      // A file deleted after it was found: a 404 that says so (it was a 502 "load failed"),
      // and the model is no longer listed.
      await Deno.remove(join(dir, "Qwen_Late.gguf"));
      const gone = await post("/api/models/qwen_late/load");
      equal(gone.status, 404);
      const goneError = (await gone.json()).error;
      equal(goneError.code, "model_not_found");
      match(
        goneError.message,
        /"qwen_late" is gone: its file .*Qwen_Late.gguf was deleted or moved/,
      );
      const names = async () =>
        (await (await fetch(`${served.url}/api/models`)).json()).models.map((m: { name: string }) =>
          m.name
        );
      deepEqual(await names(), ["first_model"]);
      // A new search forgets a file deleted since the last one.
      await Deno.copyFile(model, join(dir, "Third.gguf"));
      deepEqual((await (await post("/api/models/discover")).json()).added, ["third"]);
      await Deno.remove(join(dir, "Third.gguf"));
      const pruned = await (await post("/api/models/discover")).json();
      deepEqual(pruned.removed, ["third"]);
      deepEqual(pruned.added, []);
      deepEqual(await names(), ["first_model"]);
    } finally {
      served.process.kill("SIGTERM");
      await served.process.status;
      await served.output;
      await served.process.stderr.cancel();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--load-wait bounds how long a load waits for a busy model before its 503", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shimmy-serve-load-wait-" });
  try {
    await Deno.copyFile(model, join(dir, "first.gguf"));
    await Deno.copyFile(model, join(dir, "second.gguf"));
    const served = await serve([
      ...["--model-dirs", dir, "--bind", "127.0.0.1:0", "--max-models", "1"],
      ...["--load-wait", "300ms", "--ctx-size", "16384", "--default-model", "first"],
    ]);
    try {
      const post = (body: Record<string, unknown>) =>
        fetch(`${served.url}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ prompt: "x", ...body }),
        });
      // A long stream keeps the only loaded model busy.
      const busy = await post({
        model: "first",
        max_tokens: 12000,
        ignore_eos: true,
        stream: true,
      });
      const reader = busy.body!.getReader();
      await reader.read();
      const started = performance.now();
      const refused = await post({ model: "second", max_tokens: 1 });
      equal(refused.status, 503);
      match((await refused.json()).error.message, /all are busy \(waited 0\.\d s\)/);
      ok(performance.now() - started < 5_000);
      await reader.cancel();
    } finally {
      await stopServe(served);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("llama-server's -m, --host and --port work as they do there", async () => {
  const served = await serve(["-m", model, "--host", "127.0.0.1", "--port", "0"]);
  const health = await (await fetch(`${served.url}/health`)).json();
  deepEqual(health.models, [{ name: "tiny-f32", state: "loaded" }]);
  served.process.kill("SIGTERM");
  equal((await served.process.status).code, 0);
  await served.output;
  await served.process.stderr.cancel();
  const none = () => undefined;
  equal(parseServeArgs(["--port", "8080"], none)?.bind, "127.0.0.1:8080");
  equal(parseServeArgs(["--host", "0.0.0.0"], none)?.bind, "0.0.0.0:11435");
  equal(parseServeArgs(["--host", "::1", "--port", "9"], none)?.bind, "[::1]:9");
  throws(() => parseServeArgs(["--port", "80a"], none), /--port must be a port number/);
  throws(
    () => parseServeArgs(["--bind", "127.0.0.1:1", "--port", "2"], none),
    /--bind and --host\/--port name the address twice/,
  );
});

Deno.test("a port in use is a one-line error and exit 1, before any model loads", async () => {
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const out = await serveToExit(["--model", model, "--bind", `127.0.0.1:${blocker.addr.port}`]);
    const stderr = out.stderr;
    equal(out.code, 1);
    match(stderr, /already in use/);
    ok(!stderr.includes("    at "), `no stack trace:\n${stderr}`);
    ok(!/Loading tiny-f32/.test(stderr), "the model was not loaded first");
  } finally {
    blocker.close();
  }
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

Deno.test("SHIMMY_SLOT_SAVE_PATH (or --slot-save-path) is where slots are saved, SHIMMY_SLOT_SAVE_MAX_SIZE bounds it; a folder that is not there is a usage error", async () => {
  const folder = await Deno.makeTempDir({ prefix: "shimmy-serve-slots-" });
  try {
    const served = await serve(["--model", model, "--bind", "127.0.0.1:0"], {
      SHIMMY_SLOT_SAVE_PATH: folder,
      SHIMMY_SLOT_SAVE_MAX_SIZE: "4MiB",
    });
    try {
      await (await fetch(`${served.url}/completion`, {
        method: "POST",
        body: JSON.stringify({ prompt: "Once upon a time", n_predict: 2 }),
      })).body?.cancel();
      const saved = await fetch(`${served.url}/slots/0?action=save`, {
        method: "POST",
        body: JSON.stringify({ filename: "start.bin" }),
      });
      equal(saved.status, 200, await saved.clone().text());
      const size = (await saved.json()).n_written;
      equal((await Deno.stat(join(folder, "start.bin"))).size, size);
      await Deno.writeFile(join(folder, "filler.bin"), new Uint8Array(4 * 2 ** 20 - size));
      const full = await fetch(`${served.url}/slots/0?action=save`, {
        method: "POST",
        body: JSON.stringify({ filename: "more.bin" }),
      });
      equal(full.status, 507, await full.clone().text());
      match((await full.json()).error.message, /over its bound of 4\.0 MiB/);
    } finally {
      served.process.kill("SIGTERM");
      await served.process.status;
      await served.output;
      await served.process.stderr.cancel();
    }
    const out = await serveToExit([
      "--model",
      model,
      "--bind",
      "127.0.0.1:0",
      "--slot-save-path",
      join(folder, "missing"),
    ]);
    equal(out.code, 1);
    match(out.stderr, /--slot-save-path: .*missing is not a folder/);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("--slot-save-max-size (or SHIMMY_SLOT_SAVE_MAX_SIZE) takes bytes or a size with a unit, or unlimited; other values are usage errors", () => {
  const maxBytes = (args: string[], envValue?: string) =>
    parseServeArgs(args, (n) => n === "SHIMMY_SLOT_SAVE_MAX_SIZE" ? envValue : undefined)
      ?.slotSaveMaxBytes;
  equal(maxBytes([]), undefined, "unset: the server's default bound");
  equal(maxBytes(["--slot-save-max-size", "512MiB"]), 512 * 2 ** 20);
  equal(maxBytes(["--slot-save-max-size", "4GiB"]), 4 * 2 ** 30);
  equal(maxBytes(["--slot-save-max-size", "10GB"]), 10e9);
  equal(maxBytes(["--slot-save-max-size", "1048576"]), 1048576);
  equal(maxBytes(["--slot-save-max-size", "unlimited"]), Infinity);
  equal(maxBytes(["--slot-save-max-size", "Unlimited"]), Infinity);
  equal(maxBytes([], "2GiB"), 2 * 2 ** 30);
  equal(maxBytes(["--slot-save-max-size", "1GiB"], "2GiB"), 2 ** 30, "the flag wins");
  for (const value of ["10XB", "-1", "ten", "", "1e9", "none"]) {
    throws(
      () => maxBytes(["--slot-save-max-size", value]),
      new RegExp(
        `^UsageError: --slot-save-max-size must be bytes or a size such as 512MiB, 4GiB or 10GB, ` +
          `or unlimited, got "${value}"$`,
      ),
    );
  }
  throws(() => maxBytes([], "lots"), /--slot-save-max-size must be bytes .*got "lots"/);
  for (const value of ["0", "0GiB", "0.5B"]) {
    throws(
      () => maxBytes(["--slot-save-max-size", value]),
      /--slot-save-max-size must be more than 0 bytes \(unlimited lifts the bound\)/,
    );
  }
});

Deno.test("a bad --slot-save-max-size is a one-line error and exit 1, before any model loads", async () => {
  const out = await serveToExit(["--model", model, "--slot-save-max-size", "10XB"]);
  equal(out.code, 1);
  match(out.stderr.trim(), /^[^\n]*--slot-save-max-size must be bytes or a size .*got "10XB"$/);
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
  const lora = new URL("../fixtures/generated/tiny-f32-lora.gguf", import.meta.url).pathname;
  throws(() => parseLoraFlag(`${lora}:abc`), /the scale after ":" must be a number, got "abc"/);
  deepEqual(parseLoraFlag("/no/such:abc"), { path: "/no/such:abc", scale: 1 });
  equal(parseServeArgs(["--keep-alive", "30s"], () => undefined)?.keepAliveMs, 30_000);
  equal(parseServeArgs(["--keep-alive", "-1"], () => undefined)?.keepAliveMs, -1);
  equal(parseServeArgs(["--load-wait", "2m"], () => undefined)?.loadWaitMs, 120_000);
  throws(() => parseServeArgs(["--load-wait", "-1"], () => undefined), /cannot be negative/);
  // Every --model is loaded at start: --max-models makes room for them all.
  const three = ["-m", "a", "-m", "b", "--model-path", "c"];
  equal(parseServeArgs(three, () => undefined)?.maxModels, 3);
  equal(parseServeArgs(["-m", "a"], () => undefined)?.maxModels, undefined);
  equal(parseServeArgs([...three, "--max-models", "4"], () => undefined)?.maxModels, 4);
  throws(
    () => parseServeArgs([...three, "--max-models", "2"], () => undefined),
    /--max-models 2 leaves no room for the 3 models named with --model/,
  );
  deepEqual(
    parseServeArgs(
      ["--cors", "https://a.example,https://b.example", "--cors", "*"],
      (n) => n === "SHIMMY_ORIGINS" ? "https://c.example" : undefined,
    )?.origins,
    ["https://a.example", "https://b.example", "*", "https://c.example"],
  );
  deepEqual(
    parseServeArgs(
      ["--cors", "HTTP://LocalHost:3000/,https://a.example:443,chrome-extension://abc"],
      () => undefined,
    )?.origins,
    ["http://localhost:3000", "https://a.example", "chrome-extension://abc"],
  );
  for (
    const cors of ["not an origin", "https://a.example/page", "a.example", "https://a.example?x"]
  ) {
    throws(() => parseServeArgs(["--cors", cors], () => undefined), /--cors takes origins/);
  }
  equal(parseServeArgs(["--shutdown-grace", "2s"], () => undefined)?.shutdownGraceMs, 2000);
  equal(parseServeArgs([], () => undefined)?.kvUnified, "auto");
  equal(parseServeArgs(["--kv-unified", "off"], () => undefined)?.kvUnified, "off");
  throws(() => parseServeArgs(["--kv-unified", "no"], () => undefined), /--kv-unified must be/);
  equal(parseServeArgs([], () => undefined)?.shutdownGraceMs, 5000);
  throws(
    () => parseServeArgs(["--parallel", "8", "--batch-size", "4"], () => undefined),
    /--batch-size \(4\) must be at least --parallel \(8\)/,
  );
});
