/**
 * Fuzz: seeded bad requests across every route, method and field against a real `shimmy serve`.
 * Every answer must be 2xx (JSON or a well-formed SSE stream) or 4xx/5xx with the OpenAI error
 * body; a 500 is a bug, reported with its request. The process must stay alive, `/health` must
 * answer within 1 s all along, and RSS must stay under twice its size after warm-up.
 *
 * Reproduce a run with `SHIMMY_FUZZ_SEED=<seed printed>`; `SHIMMY_RELIABILITY=long` sends at
 * least 10,000 requests instead of 1,500.
 *
 * @module
 */

import { type FuzzCase, FuzzGenerator } from "./generators.ts";
import { byMode, Histogram, runPool, startShimmy, summary, waitIdle, Watch } from "./harness.ts";
import { answerProblem, buildRequest, errorShapeProblem, rawExchange, wsSession } from "./wire.ts";

const REQUESTS = byMode(1_500, 10_000);
const CONCURRENCY = 8;
/** Time bound of the request loop (it normally ends by count well before). */
const DEADLINE_MS = byMode(100_000, 1_800_000);
/** One WebSocket session per this many requests. */
const WS_EVERY = 25;
const MODEL = "tiny-f32";

function seedOf(): number {
  const fixed = Deno.env.get("SHIMMY_FUZZ_SEED");
  return fixed ? Number(fixed) : Math.floor(Math.random() * 2 ** 31);
}

/** A request and what was wrong with its answer. */
interface Finding {
  request: string;
  problem: string;
}

function requestText(c: FuzzCase): string {
  const body = c.rawBytes ?? c.body;
  const text = body ? new TextDecoder().decode(body.subarray(0, 300)) : "";
  const more = body && body.length > 300 ? `…(${body.length} bytes)` : "";
  return `${c.label}: ${c.method} ${c.path.slice(0, 120)} ${text}${more}`;
}

Deno.test("fuzz: bad requests on every route and field get JSON errors, never a 500 or a crash", async () => {
  const seed = seedOf();
  console.log(`fuzz seed=${seed} (reproduce with SHIMMY_FUZZ_SEED=${seed})`);
  const slotFolder = await Deno.makeTempDir({ prefix: "shimmy-fuzz-slots-" });
  await using _slotFolder = {
    [Symbol.asyncDispose]: () => Deno.remove(slotFolder, { recursive: true }),
  };
  await using server = await startShimmy({
    // A 96-token context bounds every generation, even those whose limit the fuzz removes.
    args: [
      "--parallel",
      "4",
      "--ctx-size",
      "96",
      "--max-queue",
      "256",
      "--slot-save-path",
      slotFolder,
    ],
  });
  const generator = new FuzzGenerator(seed, MODEL);
  const statuses = new Histogram();
  const problems: Finding[] = [];
  const serverErrors: Finding[] = [];
  const recent: string[] = [];

  // Warm-up: every generating route once, streamed and not, so the model and its slots exist.
  for (const path of ["/v1/chat/completions", "/v1/completions", "/api/generate"]) {
    for (const stream of [false, true]) {
      const body = { ...generator.base(path), max_tokens: 8, stream };
      const result = await rawExchange(
        server.port,
        buildRequest(server.port, {
          method: "POST",
          path,
          headers: [["Content-Type", "application/json"]],
          body: JSON.stringify(body),
        }),
      );
      if (result.response?.status !== 200) {
        throw new Error(`Warm-up ${path} failed: ${result.failure ?? result.response?.text}`);
      }
    }
  }
  const watch = new Watch(server);
  const started = performance.now();
  let wsSessions = 0;

  const sendCase = async (c: FuzzCase) => {
    const bytes = c.rawBytes ?? buildRequest(server.port, c);
    // Garbage may be held until the header timeout closes it (faults_test.ts checks that):
    // 3 s is enough to see an answer if one comes.
    const timeoutMs = c.expect === "protocol" ? 3_000 : 30_000;
    const result = await rawExchange(server.port, bytes, { head: c.method === "HEAD", timeoutMs });
    const response = result.response;
    statuses.add(response ? response.status : result.failure as string);
    if (c.expect === "protocol") {
      // Not valid HTTP, or an upgrade the HTTP layer handles: the answer may come from Deno's
      // HTTP layer (bare 400, or leniently accepted), or the connection closes; never a 5xx but
      // the 505 that answers a version the server does not speak.
      if (response && response.status >= 500 && response.status !== 505) {
        const problem = `HTTP-level request got ${response.status}: ${response.text.slice(0, 300)}`;
        (response.status === 500 ? serverErrors : problems).push({
          request: requestText(c),
          problem,
        });
      }
      return;
    }
    if (!response) {
      problems.push({
        request: requestText(c),
        problem: `no answer: connection ${result.failure}`,
      });
      return;
    }
    if (response.status === 500) {
      serverErrors.push({ request: requestText(c), problem: response.text.slice(0, 500) });
      return;
    }
    if (c.expect === "413" && response.status !== 413) {
      problems.push({ request: requestText(c), problem: `expected 413, got ${response.status}` });
      return;
    }
    const problem = answerProblem(c.method, c.path, response);
    if (problem) problems.push({ request: requestText(c), problem });
  };

  const sendWs = async () => {
    const { label: what, frame } = generator.wsFrame();
    const outcome = await wsSession(server.url, frame, { timeoutMs: 30_000 });
    wsSessions++;
    statuses.add(`ws${outcome.closeCode}`);
    const request = `${what}: ${frame.slice(0, 300)}`;
    const last = outcome.frames[outcome.frames.length - 1] ?? "";
    let problem: string | undefined;
    if (!outcome.opened) problem = "the WebSocket handshake failed";
    else if (outcome.timedOut) problem = "the session did not end in 30 s";
    else if (outcome.closeCode === 1000) {
      const final = JSON.parse(last.startsWith("{") ? last : "{}");
      if (final.done !== true) {
        problem = `closed 1000 without a done frame (last ${last.slice(0, 120)})`;
      }
    } else if ([1003, 1008, 1009, 1011, 1013].includes(outcome.closeCode)) {
      const shape = errorShapeProblem(last);
      if (shape) {
        problem = `close ${outcome.closeCode} after a frame that is not an error: ${shape}`;
      }
      if (/"code":"internal_error"/.test(last)) {
        serverErrors.push({
          request,
          problem: `close ${outcome.closeCode}: ${last.slice(0, 500)}`,
        });
        return;
      }
    } else problem = `unexpected close code ${outcome.closeCode} (${outcome.closeReason})`;
    if (problem) problems.push({ request, problem });
  };

  const task = async (i: number) => {
    if (i % WS_EVERY === WS_EVERY - 1) return await sendWs();
    const c = generator.next();
    recent.push(c.label.slice(0, 160));
    if (recent.length > 16) recent.shift();
    await sendCase(c);
  };
  // Warm-up: the coverage pass (every route × method, every field value, every kind of body
  // once), so each code path has run before RSS is taken as the reference; then random cases.
  const deadline = started + DEADLINE_MS;
  const warmCount = Math.ceil(generator.coverageSize * WS_EVERY / (WS_EVERY - 1));
  let sent = await runPool(warmCount, CONCURRENCY, deadline, task, () => !server.alive);
  if (server.alive) await waitIdle(server.url, 10_000).catch(() => []);
  const warm = watch.memory.mark("warm");
  sent += await runPool(
    REQUESTS - sent,
    CONCURRENCY,
    deadline,
    (i) => task(sent + i),
    () => !server.alive,
  );
  const elapsed = (performance.now() - started) / 1000;
  const alive = server.alive;
  if (alive) await waitIdle(server.url, 10_000).catch(() => []);
  const health = await watch.stop();
  const end = watch.memory.mark("end");
  summary("fuzz", {
    seed,
    requests: sent,
    time_bound_hit: sent < REQUESTS,
    coverage: generator.coverageSize,
    ws: wsSessions,
    seconds: elapsed.toFixed(1),
    statuses,
    ...watch.figures(),
    health_probes: health.probes,
    rss_after_coverage_mib: (warm / 1024).toFixed(1),
    "500s": serverErrors.length,
    problems: problems.length,
  });

  const failures: string[] = [];
  if (!alive) {
    failures.push(
      `The server died during the fuzz (seed ${seed}). Last requests sent:\n  ${
        recent.join("\n  ")
      }`,
    );
  }
  if (sent < warmCount && alive) {
    failures.push(
      `Only ${sent} requests fit in the time bound: the coverage pass (${warmCount}) did not finish`,
    );
  }
  if (serverErrors.length > 0) {
    failures.push(
      `${serverErrors.length} answers were 500 (bugs); the first 10:\n` +
        serverErrors.slice(0, 10).map((f) => `  REQUEST ${f.request}\n  ANSWER ${f.problem}`).join(
          "\n",
        ),
    );
  }
  if (problems.length > 0) {
    failures.push(
      `${problems.length} answers broke the rules; the first 20:\n` +
        problems.slice(0, 20).map((f) => `  ${f.problem}\n    for ${f.request}`).join("\n"),
    );
  }
  if (health.failures.length > 0) {
    failures.push(
      `/health failed or took over 1 s ${health.failures.length} times:\n  ${
        health.failures.slice(0, 10).join("\n  ")
      }`,
    );
  }
  if (alive && !(end < 2 * warm)) {
    failures.push(`RSS grew from ${warm} KiB after the coverage pass to ${end} KiB (limit 2x)`);
  }
  if (failures.length > 0) {
    throw new Error(`Fuzz seed ${seed}:\n${failures.join("\n\n")}\n\n${server.describe()}`);
  }
});
