/**
 * A server's pulls (`ModelPulls`) against a loopback fake hub: one pull per reference however it
 * is spelled, failures kept few and not for long, and followers that stop when their request does.
 */

import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { FAILED_PULL_MS, MAX_FAILED_PULLS, ModelPulls } from "../../src/models/pull_tracker.ts";
import { fixtureModel } from "../fixtures/models.ts";
import { startFakeHub } from "./fake_hub.ts";

const f32 = await Deno.readFile(await fixtureModel("tiny-f32"));
const REPO = "tiny-org/Tiny-Instruct-GGUF";
const files = [{ path: "tiny-instruct-Q4_K_M.gguf", bytes: f32 }];

async function withCache(fn: (cache: string) => Promise<void>) {
  const cache = await Deno.makeTempDir({ prefix: "shimmy-pulls-" });
  try {
    await fn(cache);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
}

Deno.test("ModelPulls runs one pull for every spelling of a reference asked for at once", async () => {
  await using hub = startFakeHub({ [REPO]: { files } });
  await withCache(async (cache) => {
    const pulls = new ModelPulls({ hubCache: cache, endpoint: hub.url });
    const spellings = [
      `hf.co/${REPO}`,
      `hf.co/${REPO}/`,
      ` ${REPO} `,
      `https://huggingface.co/${REPO}//`,
      `hf.co/${REPO}:latest`,
    ];
    const pulled = await Promise.all(spellings.map((spelling) => pulls.pull(spelling)));
    ok(pulled.every((p) => p.path === pulled[0]!.path));
    equal(hub.requests.filter((r) => r.path.startsWith("/api/")).length, 1, "one listing");
    equal(hub.requests.filter((r) => r.path.startsWith("/cdn/")).length, 1, "one download");
    deepEqual(pulls.status(), []);
  });
});

Deno.test("ModelPulls shows the latest failed pulls, at most 64, for an hour", async () => {
  await using hub = startFakeHub({});
  await withCache(async (cache) => {
    let now = 0;
    const pulls = new ModelPulls({ hubCache: cache, endpoint: hub.url, now: () => now });
    for (let i = 0; i < MAX_FAILED_PULLS + 6; i++) {
      await rejects(pulls.pull(`hf.co/tiny-org/Missing-${i}`), /not found/);
    }
    const failed = pulls.status();
    equal(failed.length, MAX_FAILED_PULLS);
    ok(failed.every((s) => s.status === "failed"));
    equal(failed[0]!.model, "hf.co/tiny-org/Missing-6", "the oldest six went");
    equal(failed.at(-1)!.model, `hf.co/tiny-org/Missing-${MAX_FAILED_PULLS + 5}`);
    now = FAILED_PULL_MS;
    deepEqual(pulls.status(), [], "an hour later");
  });
});

Deno.test("ModelPulls.follow() stops calling a follower once its signal aborts or it unfollows", async () => {
  await using hub = startFakeHub({ [REPO]: { files } });
  await withCache(async (cache) => {
    const pulls = new ModelPulls({ hubCache: cache, endpoint: hub.url });
    // The first follower's client hangs up at the first progress report.
    const gone = new AbortController();
    let afterAbort = 0;
    pulls.follow(REPO, () => {
      if (gone.signal.aborted) afterAbort++;
      else gone.abort();
    }, gone.signal);
    let staying = 0;
    const unfollow = pulls.follow(`hf.co/${REPO}/`, () => staying++);
    await pulls.pull(REPO);
    ok(gone.signal.aborted);
    equal(afterAbort, 0, "no report after the abort");
    ok(staying > 2, `the other follower heard ${staying} reports`);
    unfollow();
    const heard = staying;
    await pulls.pull(REPO); // present now: still reports
    equal(staying, heard, "no report after unfollowing");
  });
});
