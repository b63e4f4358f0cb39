import assert from "node:assert/strict";
import { type CpuProfile, summarizeProfile } from "../../bench/loop_profile.ts";

const frame = (functionName: string, lineNumber = 0) => ({
  functionName,
  url: functionName.startsWith("(") ? "" : "file:///app/work.ts",
  lineNumber,
});

Deno.test("summarizeProfile() sums each sample's time into its function and every caller once", () => {
  // root → outer → inner → outer again (recursion), and root → idle.
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame("(root)"), children: [2, 5] },
      { id: 2, callFrame: frame("outer", 9), children: [3] },
      { id: 3, callFrame: frame("inner", 19), children: [4] },
      { id: 4, callFrame: frame("outer", 9) },
      { id: 5, callFrame: frame("(idle)") },
    ],
    samples: [2, 3, 4, 5, 3],
    timeDeltas: [0, 10, 20, 30, 40],
  };
  const summary = summarizeProfile(profile);
  // Each sample lasts until the next: 2 → 10 µs, 3 → 20, 4 → 30, 5 (idle) → 40, the last 3 → 0.
  assert.equal(summary.busyUs, 60);
  assert.equal(summary.idleUs, 40);
  assert.deepEqual(summary.inclusive, [["outer work.ts:10", 60], ["inner work.ts:20", 50]]);
  assert.deepEqual(summary.self, [["outer work.ts:10", 40], ["inner work.ts:20", 20]]);
});

Deno.test("loop_profile.ts profiles a running Deno process through its inspector", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const busy = `
function spinsOnPurpose() { let x = 0; for (let i = 0; i < 2e5; i++) x += Math.sqrt(i); return x; }
const end = Date.now() + 15000;
const tick = () => { spinsOnPurpose(); if (Date.now() < end) setTimeout(tick, 1); };
tick();`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", `--inspect=127.0.0.1:${port}`, busy],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    let output = "";
    for (let attempt = 0; attempt < 50 && !output.includes("busy"); attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const run = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "bench/loop_profile.ts", "--inspector", `127.0.0.1:${port}`]
          .concat(["--seconds", "1", "--top", "5"]),
        stdout: "piped",
        stderr: "piped",
      }).output();
      output = new TextDecoder().decode(run.stdout);
    }
    assert.match(output, /^busy +\d+\.\d ms, idle +\d+\.\d ms$/m);
    assert.match(output, /spinsOnPurpose/);
  } finally {
    child.kill();
    await child.status;
  }
});
