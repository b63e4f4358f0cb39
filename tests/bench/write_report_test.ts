import { deepEqual, equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { writeJsonReport } from "../../bench/lib/write_report.ts";

Deno.test("a report whose path ends in .gz is written compressed and reads back the same", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const report = { gaps: Array.from({ length: 5000 }, (_, i) => i % 17), name: "round" };
    const plain = join(dir, "r.json");
    const packed = join(dir, "r.json.gz");
    await writeJsonReport(plain, report);
    await writeJsonReport(packed, report);
    deepEqual(JSON.parse(await Deno.readTextFile(plain)), report);
    const bytes = await Deno.readFile(packed);
    deepEqual([...bytes.subarray(0, 2)], [0x1f, 0x8b], "a gzip header");
    ok(bytes.length * 10 < (await Deno.stat(plain)).size, "at least ten times smaller");
    const unpacked = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    deepEqual(JSON.parse(await new Response(unpacked).text()), report);
    equal(new TextDecoder().decode(await Deno.readFile(plain)).endsWith("}\n"), true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
