/**
 * Flags of the benchmark scripts: `node:util`'s `parseArgs`, plus `--help` (`-h`), which prints the
 * script's own documentation (the doc comment that opens its file), and a clear answer to a flag the
 * script does not know: the reason and that documentation on stderr and exit status 2, instead of a
 * stack trace.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { fileURLToPath } from "node:url";

/**
 * Parses a benchmark script's flags (`config.args`, else `Deno.args`); exits on `--help` (status 0)
 * and on flags it cannot parse (status 2).
 *
 * @param config `parseArgs`'s configuration, without `help`.
 * @param scriptUrl The script's `import.meta.url`, whose opening doc comment is its usage.
 * @returns What `parseArgs` returns.
 */
export function benchArgs<T extends ParseArgsConfig>(
  config: T,
  scriptUrl: string,
): ReturnType<typeof parseArgs<T>> {
  const withHelp = {
    ...config,
    args: config.args ?? Deno.args,
    options: { ...config.options, help: { type: "boolean", short: "h" } },
  } as const satisfies ParseArgsConfig;
  let parsed;
  try {
    parsed = parseArgs(withHelp);
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : error}\n\n${scriptUsage(scriptUrl)}`);
    Deno.exit(2);
  }
  const values = parsed.values as Record<string, unknown>;
  if (values.help) {
    console.log(scriptUsage(scriptUrl));
    Deno.exit(0);
  }
  delete values.help;
  return parsed as ReturnType<typeof parseArgs<T>>;
}

/**
 * The doc comment that opens a script's file, without its comment markers and `@module` tag.
 *
 * @param scriptUrl The script's `import.meta.url`.
 * @returns The text, or a line naming the script where it has none.
 * @example
 * ```ts
 * scriptUsage(import.meta.url); // "Flags of the benchmark scripts: ..."
 * ```
 */
export function scriptUsage(scriptUrl: string): string {
  const path = fileURLToPath(scriptUrl);
  const comment = /^\/\*\*([\s\S]*?)\*\//.exec(Deno.readTextFileSync(path));
  if (!comment) return `Usage: deno run -A ${path} (no documentation)`;
  return comment[1]!.split("\n")
    .map((line) => line.replace(/^\s*\* ?/, ""))
    .filter((line) => !line.startsWith("@module"))
    .join("\n")
    .trim();
}
