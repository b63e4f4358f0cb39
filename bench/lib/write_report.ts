/**
 * Writes a benchmark's JSON report, compressed with gzip where the path ends in `.gz`: a run's
 * report holds every stream's token gaps (a megabyte of JSON for a full run), and a compressed one
 * keeps the results kept in `bench/results/` small (`zcat` or `gzip -dc` reads it).
 *
 * @param path Where to write: `r.json`, or `r.json.gz` for a compressed report.
 * @param report The report (see `jsonReport`).
 * @example
 * ```ts
 * await writeJsonReport("bench/results/run.json.gz", jsonReport(header, summary, rounds));
 * ```
 */
export async function writeJsonReport(path: string, report: unknown): Promise<void> {
  const text = JSON.stringify(report, null, 2) + "\n";
  if (!path.endsWith(".gz")) return await Deno.writeTextFile(path, text);
  const compressed = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  await Deno.writeFile(path, compressed);
}
