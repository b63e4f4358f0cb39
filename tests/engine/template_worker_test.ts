import assert from "node:assert/strict";
import { join } from "node:path";
import { GenerationError } from "../../src/engine/errors.ts";
import { chatPrompt, MAX_MESSAGES, rawPrompt } from "../../src/engine/prompt.ts";
import {
  keepTemplateWorkersWarm,
  renderChatOffThread,
  TEMPLATE_WORKERS,
  TemplateWorkerPool,
} from "../../src/engine/template_worker.ts";
import {
  FAMILY_NAMES,
  renderChat,
  TemplateError,
  type TemplateMessage,
} from "../../src/engine/templates.ts";
import { Llama, Model } from "../../src/ffi/mod.ts";
import { toHttpError } from "../../src/server/http_error.ts";
import { fixtureModel, llamaSourceDir, REPO_ROOT } from "../fixtures/models.ts";
import { CONVERSATION, templateFixture } from "../fixtures/template_fixtures.ts";
import { skipBecause, whileTicking } from "../helpers.ts";
import { threadsOf, TICKS_PER_SECOND } from "../../bench/lib/thread_stat.ts";

const REAL = ["qwen2", "phi-3", "command-r", "gemma-4"] as const;
const source = llamaSourceDir();

/** One-letter messages, alternating user and assistant. */
function manyMessages(count: number): TemplateMessage[] {
  return Array.from({ length: count }, (_, i) => ({
    role: i % 2 === 0 ? "user" : "assistant",
    content: "a",
  }));
}

/** CPU seconds of each live Web Worker thread (named `worker-N`), by thread id. */
function workerThreadCpu(): Map<string, number> {
  return new Map(
    threadsOf(Deno.pid).filter((thread) => thread.name.startsWith("worker-"))
      .map((thread) => [thread.tid, thread.ticks / TICKS_PER_SECOND]),
  );
}

/**
 * CPU time the process's Web Worker threads use while waiting `ms` milliseconds (Linux only:
 * `/proc/self/task`). Only workers count: in the whole suite the process's other threads (the
 * garbage collector, earlier tests' leftovers) took 0.53 s of a second on a 2-core machine.
 *
 * @returns Seconds of CPU, or undefined where it cannot be read.
 */
async function workerCpuSecondsDuring(ms: number): Promise<number | undefined> {
  let before: Map<string, number>;
  try {
    before = workerThreadCpu();
  } catch {
    return undefined;
  }
  await new Promise((resolve) => setTimeout(resolve, ms));
  let total = 0;
  for (const [thread, seconds] of workerThreadCpu()) total += seconds - (before.get(thread) ?? 0);
  return total;
}

/** A template that renders for minutes: 10⁸ loop iterations. */
const ENDLESS = "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}";

/** Longest pause of the event loop a test accepts while work runs elsewhere (ms). */
const MAX_STALL_MS = 100;

/**
 * Runs `work` while a 10 ms interval ticks on this thread, and measures the longest gap
 * between ticks. On a busy machine a garbage collection or the OS scheduler can pause the loop
 * once in a while, so the work runs up to three times and the calmest run counts; work that
 * blocks the loop stalls it every time.
 *
 * @returns The work's result, its duration and the longest gap between ticks (ms).
 */
async function calmestTicking<T>(work: () => Promise<T>) {
  let calmest: { value: T; elapsed: number; maxGap: number } | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const started = performance.now();
    const { value, longestGap: maxGap } = await whileTicking(work, 10);
    const elapsed = performance.now() - started;
    if (calmest === undefined || maxGap < calmest.maxGap) calmest = { value, elapsed, maxGap };
    if (calmest.maxGap < MAX_STALL_MS) break;
  }
  return calmest as { value: T; elapsed: number; maxGap: number };
}

Deno.test("renderChatOffThread() renders the real templates exactly as renderChat()", async () => {
  const tools = [{ type: "function", function: { name: "get_weather", parameters: {} } }];
  for (const name of REAL) {
    const input = {
      template: templateFixture(name),
      messages: CONVERSATION,
      bosToken: "<BOS>",
      eosToken: "<EOS>",
    };
    assert.deepEqual(await renderChatOffThread(input), renderChat(input), name);
    const withTools = { ...input, messages: CONVERSATION.slice(1, 2), tools };
    assert.deepEqual(await renderChatOffThread(withTools), renderChat(withTools), `${name} tools`);
  }
  for (const family of FAMILY_NAMES) {
    const input = { family, messages: CONVERSATION };
    assert.deepEqual(await renderChatOffThread(input), renderChat(input), family);
  }
  // A template that does not parse falls back to a family, with the same warning.
  const broken = { template: "<|im_start|>{% if %}", messages: CONVERSATION };
  const fallback = await renderChatOffThread(broken);
  assert.deepEqual(fallback, renderChat(broken));
  assert.match(fallback.warning ?? "", /does not parse/);
});

Deno.test("A TemplateError crosses the worker boundary with its reason, detail and status 400", async () => {
  const messages = [{ role: "user", content: "Hi" }, { role: "user", content: "Again" }];
  const error = await renderChatOffThread({ template: templateFixture("command-r"), messages })
    .then(
      () => assert.fail("the template must raise"),
      (e: unknown) => e,
    );
  assert.ok(error instanceof TemplateError);
  assert.ok(error instanceof GenerationError);
  assert.equal(error.code, "invalid_request");
  assert.equal(error.reason, "render");
  assert.equal(error.detail, "Conversation roles must alternate user/assistant/user/assistant/...");
  assert.throws(
    () => renderChat({ template: templateFixture("command-r"), messages }),
    (e: unknown) => {
      assert.equal((e as Error).message, error.message);
      return true;
    },
  );
  const http = toHttpError(error);
  assert.equal(http.status, 400);
  assert.equal(http.message, error.message);
  await assert.rejects(
    renderChatOffThread({ template: "{{ messages[0].content | no_such_filter }}", messages }),
    (e: unknown) => e instanceof TemplateError && /no_such_filter/.test(e.message),
  );
});

Deno.test("TemplateWorkerPool keeps the event loop ticking while it renders 40,000 messages", async () => {
  const pool = new TemplateWorkerPool({ size: 1 });
  try {
    const input = { template: templateFixture("qwen2"), messages: manyMessages(40_000) };
    await pool.render({ ...input, messages: manyMessages(2) }); // a warm worker
    const { value, elapsed, maxGap } = await calmestTicking(() =>
      pool.render(input, { timeoutMs: 120_000 })
    );
    // Qwen2's template adds a system message when there is none.
    assert.equal(value.prompt.split("<|im_start|>user\n").length - 1, 20_000);
    assert.ok(elapsed > MAX_STALL_MS, `the render took ${elapsed} ms: too quick to show anything`);
    assert.ok(maxGap < MAX_STALL_MS, `the event loop stalled ${Math.round(maxGap)} ms`);
  } finally {
    pool.close();
  }
});

Deno.test("TemplateWorkerPool.render() stops a running render on abort and the next render works", async () => {
  const pool = new TemplateWorkerPool({ size: 1 });
  try {
    const abort = new AbortController();
    const running = pool.render({ template: ENDLESS, messages: [] }, { signal: abort.signal });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(pool.liveWorkers, 1);
    const reason = new DOMException("The client went away", "AbortError");
    const aborted = performance.now();
    abort.abort(reason);
    await assert.rejects(running, (e: unknown) => e === reason);
    assert.ok(performance.now() - aborted < 1_000, "the rejection is immediate");
    assert.equal(pool.liveWorkers, 0, "the busy worker was terminated");
    const cpu = await workerCpuSecondsDuring(1_000);
    if (cpu !== undefined) assert.ok(cpu < 0.5, `the render still runs: ${cpu} s of CPU in 1 s`);
    const input = { family: "chatml" as const, messages: CONVERSATION };
    assert.deepEqual(await pool.render(input), renderChat(input));
    assert.equal(pool.liveWorkers, 1);
  } finally {
    pool.close();
  }
});

Deno.test("TemplateWorkerPool.render() drops a queued job on abort without touching the running one", async () => {
  const pool = new TemplateWorkerPool({ size: 1 });
  try {
    const first = new AbortController();
    const running = pool.render({ template: ENDLESS, messages: [] }, { signal: first.signal });
    running.catch(() => {});
    const second = new AbortController();
    const queued = pool.render({ family: "chatml", messages: CONVERSATION }, {
      signal: second.signal,
    });
    second.abort();
    await assert.rejects(
      queued,
      (e: unknown) => e instanceof DOMException && e.name === "AbortError",
    );
    assert.equal(pool.liveWorkers, 1, "the running render goes on");
    first.abort();
    await assert.rejects(running);
    // An already aborted signal never starts anything.
    await assert.rejects(
      pool.render({ family: "chatml", messages: CONVERSATION }, { signal: AbortSignal.abort() }),
    );
    assert.equal(pool.liveWorkers, 0);
  } finally {
    pool.close();
  }
});

Deno.test("TemplateWorkerPool.render() rejects a render past its time limit with a clear 400 error", async () => {
  const pool = new TemplateWorkerPool({ size: 1 });
  try {
    const error = await pool.render({ template: ENDLESS, messages: [] }, { timeoutMs: 300 }).then(
      () => assert.fail("the render must time out"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof GenerationError);
    assert.ok(!(error instanceof TemplateError));
    assert.equal(error.code, "invalid_request");
    assert.equal(
      error.message,
      "The chat template took longer than 0.3 s to render; shorten the conversation or use a " +
        "simpler template (--chat-template)",
    );
    assert.equal(toHttpError(error).status, 400);
    assert.equal(pool.liveWorkers, 0);
    const input = { template: templateFixture("phi-3"), messages: CONVERSATION };
    assert.deepEqual(await pool.render(input), renderChat(input));
  } finally {
    pool.close();
  }
});

Deno.test("TemplateWorkerPool renders two conversations at once and stops idle workers", async () => {
  const pool = new TemplateWorkerPool({ size: 2, idleMs: 100 });
  try {
    const slow = new AbortController();
    const busy = pool.render({ template: ENDLESS, messages: [] }, { signal: slow.signal });
    busy.catch(() => {});
    const input = { template: templateFixture("qwen2"), messages: CONVERSATION };
    assert.deepEqual(await pool.render(input), renderChat(input), "not stuck behind the slow one");
    assert.equal(pool.liveWorkers, 2);
    slow.abort();
    await assert.rejects(busy);
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(pool.liveWorkers, 0, "the idle worker was terminated");
  } finally {
    pool.close();
  }
  await assert.rejects(
    pool.render({ family: "chatml", messages: CONVERSATION }),
    (e: unknown) => e instanceof GenerationError && e.code === "closed",
  );
});

Deno.test("TemplateWorkerPool.warm() starts its workers at once, and an infinite idle time keeps them", async () => {
  const pool = new TemplateWorkerPool({ size: 2, idleMs: Infinity });
  try {
    pool.warm();
    assert.equal(pool.liveWorkers, 2, "started before any render");
    const input = { family: "chatml", messages: CONVERSATION } as const;
    assert.deepEqual(await pool.render(input), renderChat(input));
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(pool.liveWorkers, 2, "still warm after an idle spell");
  } finally {
    pool.close();
  }
  assert.equal(pool.liveWorkers, 0);
});

Deno.test("keepTemplateWorkersWarm() keeps the shared pool's workers until it is disposed", async () => {
  const input = { family: "chatml", messages: CONVERSATION } as const;
  let kept: TemplateWorkerPool;
  {
    using pool = keepTemplateWorkersWarm();
    kept = pool;
    assert.equal(pool.liveWorkers, TEMPLATE_WORKERS, "started with the server");
    assert.deepEqual(await renderChatOffThread(input), renderChat(input));
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(pool.liveWorkers, TEMPLATE_WORKERS);
  }
  assert.ok(kept.closed);
  assert.equal(kept.liveWorkers, 0, "disposed: nothing keeps the process alive");
  // Renders go on in a pool of the usual kind.
  assert.deepEqual(await renderChatOffThread(input), renderChat(input));
});

Deno.test("A script that rendered a template exits by itself once the worker is idle", async () => {
  const script = `
    import { renderChatOffThread } from ${
    JSON.stringify(
      new URL("../../src/engine/template_worker.ts", import.meta.url).href,
    )
  };
    const out = await renderChatOffThread({ family: "chatml", messages: [{ role: "user", content: "Hi" }] });
    console.log(JSON.stringify(out.prompt));
  `;
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", join(REPO_ROOT, "deno.json"), "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script));
  await writer.close();
  const timer = setTimeout(() => child.kill(), 30_000);
  const out = await child.output();
  clearTimeout(timer);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(
    new TextDecoder().decode(out.stdout).trim(),
    JSON.stringify(
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    ),
  );
  assert.ok(performance.now() - started < 25_000, "it exited after the idle time, not when killed");
});

Deno.test("chatPrompt() refuses more than MAX_MESSAGES messages before rendering them", async () => {
  const llama = Llama.open();
  using model = await Model.load(llama, await fixtureModel("tiny-f32"), { vocabOnly: true });
  const tooMany = manyMessages(MAX_MESSAGES + 1);
  await assert.rejects(chatPrompt(model, tooMany), (e: unknown) => {
    assert.ok(e instanceof GenerationError);
    assert.equal(e.code, "invalid_request");
    assert.match(e.message, new RegExp(`${MAX_MESSAGES + 1} messages.*limit of ${MAX_MESSAGES}`));
    return true;
  });
  // Refused before any work: even with an endless template.
  const endless = { template: ENDLESS, path: "endless.jinja" };
  await assert.rejects(chatPrompt(model, manyMessages(3), endless, undefined, { maxMessages: 2 }));
  const prepared = await chatPrompt(model, tooMany, undefined, undefined, {
    maxMessages: MAX_MESSAGES + 1,
  });
  const rendered = renderChat({ template: model.chatTemplate() as string, messages: tooMany });
  assert.deepEqual(prepared.tokens, await model.tokenizeAsync(rendered.prompt));
});

Deno.test("chatPrompt() and rawPrompt() stop with the signal's reason", async () => {
  const llama = Llama.open();
  using model = await Model.load(llama, await fixtureModel("tiny-f32"), { vocabOnly: true });
  const reason = new Error("gone");
  await assert.rejects(
    chatPrompt(model, CONVERSATION, undefined, undefined, { signal: AbortSignal.abort(reason) }),
    (e: unknown) => e === reason,
  );
  await assert.rejects(
    rawPrompt(model, "Hi", { signal: AbortSignal.abort(reason) }),
    (e: unknown) => e === reason,
  );
  const abort = new AbortController();
  const endless = { template: ENDLESS, path: "endless.jinja" };
  const pending = chatPrompt(model, CONVERSATION, endless, undefined, { signal: abort.signal });
  setTimeout(() => abort.abort(reason), 200);
  await assert.rejects(pending, (e: unknown) => e === reason);
  const timedOut = chatPrompt(model, CONVERSATION, endless, undefined, { templateTimeoutMs: 200 });
  await assert.rejects(timedOut, /took longer than 0.2 s to render/);
});

/** About `size` characters of chat markup, with long messages so the sync path stays fast. */
function bigChat(size: number): string {
  const words = "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs. ";
  const content = words.repeat(24);
  let out = "";
  for (let i = 0; out.length < size; i++) {
    out += `<|im_start|>${i % 2 ? "assistant" : "user"}\n${i} ${content}<|im_end|>\n`;
  }
  return out;
}

for (const name of ["tiny-f32", "qwen2", "phi-3"]) {
  Deno.test({
    name: `Model.tokenizeAsync() gives tokenize()'s tokens with the ${name} vocabulary`,
    ignore: name !== "tiny-f32" && !source &&
      skipBecause("tokenizeAsync", "llama.cpp source missing"),
    async fn() {
      const llama = Llama.open();
      using model = await Model.load(llama, await fixtureModel(name), { vocabOnly: true });
      const texts = [
        "",
        "Hello world",
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        // phi-3's markers strip the whitespace after them (RSTRIP)
        "<|user|>\n  Hi  <|end|>\n<|assistant|>\n".repeat(2_000),
        bigChat(100_000),
      ];
      for (const text of texts) {
        for (const addSpecial of [true, false]) {
          assert.deepEqual(
            await model.tokenizeAsync(text, { addSpecial }),
            model.tokenize(text, { addSpecial }),
            `${text.length} chars, addSpecial ${addSpecial}`,
          );
        }
      }
    },
  });
}

for (const name of ["tiny-f32", "qwen2"]) {
  Deno.test({
    name: `Model.tokenizeAsync() tokenizes 2 MiB (${name}) while the event loop keeps ticking`,
    ignore: name !== "tiny-f32" && !source &&
      skipBecause("tokenizeAsync", "llama.cpp source missing"),
    async fn() {
      const llama = Llama.open();
      using model = await Model.load(llama, await fixtureModel(name), { vocabOnly: true });
      const big = bigChat(2 * 1024 * 1024);
      const { value, elapsed, maxGap } = await calmestTicking(() => model.tokenizeAsync(big));
      assert.deepEqual(value, model.tokenize(big));
      assert.ok(
        elapsed > MAX_STALL_MS,
        `tokenizing took ${elapsed} ms: too quick to show anything`,
      );
      assert.ok(maxGap < MAX_STALL_MS, `the event loop stalled ${Math.round(maxGap)} ms`);
    },
  });
}

Deno.test("Model.tokenizeAsync() stops between pieces when the signal aborts", async () => {
  const llama = Llama.open();
  using model = await Model.load(llama, await fixtureModel("tiny-f32"), { vocabOnly: true });
  const big = bigChat(2 * 1024 * 1024);
  const full = performance.now();
  await model.tokenizeAsync(big);
  const fullMs = performance.now() - full;
  // Aborted a fifth of the way through, it stops within the round of pieces in flight, well
  // before the end (timed against this machine's own full run, whatever its speed).
  const abort = new AbortController();
  const reason = new Error("stop");
  const started = performance.now();
  const pending = model.tokenizeAsync(big, { signal: abort.signal });
  setTimeout(() => abort.abort(reason), fullMs / 5);
  await assert.rejects(pending, (e: unknown) => e === reason);
  const stoppedMs = performance.now() - started;
  assert.ok(stoppedMs < fullMs * 0.7, `stopped after ${stoppedMs} ms of ${fullMs} ms`);
});

Deno.test("rawPrompt() gives the same tokens on a worker thread (offThread) as inline", async () => {
  const llama = Llama.open();
  using model = await Model.load(llama, await fixtureModel("tiny-f32"), { vocabOnly: true });
  const text = "7 Describe how a lighthouse keeper spends a long winter night.";
  const inline = await rawPrompt(model, text);
  const offThread = await rawPrompt(model, text, { offThread: true });
  assert.deepEqual(offThread.tokens, inline.tokens);
  assert.ok(inline.tokens.length > 5);
});
