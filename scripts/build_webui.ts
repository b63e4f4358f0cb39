/**
 * `deno task webui`: builds the chat page into `webui/dist/`. `deno bundle` turns
 * `webui/main.ts` and the npm libraries it imports (`marked`, `dompurify`) into one
 * minified browser module; the module and `webui/style.css` are written under names holding
 * a hash of their content, and `webui/index.html` is written with those names filled in.
 * The server serves `webui/dist/` (see `src/server/webui.ts`); `deno task compile` runs this
 * first and embeds the folder in the executable.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The page's sources and the build output, relative to the repository root. */
export const WEBUI_SOURCES = "webui";
/** The built page, relative to the repository root. */
export const WEBUI_DIST = "webui/dist";

/** What a build wrote. */
export interface WebuiBuild {
  /** The output folder. */
  dir: string;
  /** File names written, `index.html` first. */
  files: string[];
}

async function hashOf(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest.slice(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Builds the page.
 *
 * @param root Repository root. Default: this script's repository.
 * @returns The folder and the files written.
 * @throws {Error} When `deno bundle` fails.
 * @example
 * ```ts
 * const { files } = await buildWebui();
 * console.log(files[0]); // "index.html"
 * ```
 */
export async function buildWebui(
  root = fileURLToPath(new URL("..", import.meta.url)),
): Promise<WebuiBuild> {
  const sources = join(root, WEBUI_SOURCES);
  const dir = join(root, WEBUI_DIST);
  const tmp = await Deno.makeTempDir({ prefix: "shimmy-webui-" });
  try {
    const bundled = join(tmp, "app.js");
    const { success, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--platform",
        "browser",
        "--format",
        "esm",
        "--minify",
        "--output",
        bundled,
        join(sources, "main.ts"),
      ],
      cwd: root,
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    if (!success) {
      throw new Error(`Cannot bundle the web page: ${new TextDecoder().decode(stderr).trim()}`);
    }
    const js = await Deno.readFile(bundled);
    const css = await Deno.readFile(join(sources, "style.css"));
    const jsName = `app.${await hashOf(js)}.js`;
    const cssName = `app.${await hashOf(css)}.css`;
    const html = (await Deno.readTextFile(join(sources, "index.html")))
      .replace("{{JS}}", jsName)
      .replace("{{CSS}}", cssName);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(join(dir, "index.html"), html);
    await Deno.writeFile(join(dir, jsName), js);
    await Deno.writeFile(join(dir, cssName), css);
    return { dir, files: ["index.html", jsName, cssName] };
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log("Usage: deno task webui\n\nBuilds the chat page into webui/dist/.");
    return 0;
  }
  try {
    const { dir, files } = await buildWebui();
    console.error(`webui: wrote ${files.join(", ")} to ${dir}`);
    return 0;
  } catch (error) {
    console.error(`webui: ${(error as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
