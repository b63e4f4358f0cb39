import { equal, match, ok } from "node:assert/strict";
import { fixtureModel } from "../fixtures/models.ts";
import { runShimmy } from "../helpers.ts";

Deno.test("shimmy gpu-info --json lists every device and what auto picks", async () => {
  const run = await runShimmy(["gpu-info", "--json"]);
  equal(run.code, 0, run.stderr);
  const info = JSON.parse(run.stdout);
  ok(info.devices.length >= 1);
  const cpu = info.devices.find((d: { type: string }) => d.type === "cpu");
  ok(cpu, "the CPU is a device");
  for (
    const key of ["index", "name", "backend", "type", "description", "free_bytes", "total_bytes"]
  ) {
    ok(key in cpu, key);
  }
  ok(cpu.total_bytes > 0);
  equal(typeof info.auto.backend, "string");
  const table = await runShimmy(["gpu-info"]);
  match(table.stdout, /--gpu-backend auto uses: /);
});

/** Runs `shimmy bench --json` on the tiny model: one rep of 16 generated tokens. */
async function tinyBench(promptTokens: number, flags: string[] = []) {
  const run = await runShimmy([
    "bench",
    await fixtureModel("tiny-f32"),
    "--prompt-tokens",
    String(promptTokens),
    "--gen-tokens",
    "16",
    "--reps",
    "1",
    "--json",
    ...flags,
  ]);
  equal(run.code, 0, run.stderr);
  return { report: JSON.parse(run.stdout), stderr: run.stderr };
}

Deno.test("shimmy bench reports prompt and generation speed", async () => {
  // Steps through the event loop: on the decode thread a step's decode overlaps the loop's wait
  // for the one before, so the wait (`decode`) can sum to less than `llama_decode`.
  const { report, stderr } = await tinyBench(64, ["--no-decode-thread"]);
  ok(report.pp_tokens_per_second > 0);
  ok(report.tg_tokens_per_second > 0);
  equal(report.backend, "cpu");
  // Where a step's time went: the native calls' share of each decode is part of it.
  const { decode, llama_decode, device_wait } = report.step_us;
  ok(llama_decode > 0 && llama_decode + device_wait <= decode, JSON.stringify(report.step_us));
  // Progress goes to stderr while it works, so a long bench is never silent.
  match(stderr, /Loaded tiny-f32\.gguf in [\d.]+s; warm-up run…\nRun 1\/1: pp [\d.]+ tok\/s/);
});

Deno.test("shimmy bench counts every step of the runs on the decode thread", async () => {
  const { report } = await tinyBench(16);
  // A run reports its decodes when it halts, after its last token was taken: the report waits.
  equal(
    report.decodes_on_event_loop + report.decodes_on_worker,
    report.steps,
    JSON.stringify(report),
  );
});
