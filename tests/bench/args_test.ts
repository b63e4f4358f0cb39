import { equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { scriptUsage } from "../../bench/lib/args.ts";
import { runScript } from "../helpers.ts";

Deno.test("scriptUsage() is the doc comment that opens a script, without its markers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const script = join(dir, "probe.ts");
    await Deno.writeTextFile(
      script,
      "/**\n * Probes a thing.\n *\n *   deno run -A probe.ts [--n 3]\n *\n * @module\n */\nexport {};\n",
    );
    equal(
      scriptUsage(pathToFileURL(script).href),
      "Probes a thing.\n\n  deno run -A probe.ts [--n 3]",
    );
    await Deno.writeTextFile(script, "export {};\n");
    match(scriptUsage(pathToFileURL(script).href), /probe\.ts \(no documentation\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a benchmark script answers --help with its usage and an unknown flag with exit 2", async () => {
  const help = await runScript("bench/burst_split.ts", ["--help"]);
  equal(help.code, 0, help.stderr);
  ok(help.stdout.startsWith("How often a burst's first step"), help.stdout.slice(0, 200));
  const unknown = await runScript("bench/burst_split.ts", ["--bogus"]);
  equal(unknown.code, 2);
  match(unknown.stderr, /^Unknown option '--bogus'/);
  ok(unknown.stderr.includes(help.stdout.trim().split("\n")[0]!), unknown.stderr);
  ok(!unknown.stderr.includes("    at "), "no stack trace");
});
