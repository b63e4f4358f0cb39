/**
 * `shimmy init --template T [--output DIR] [--name NAME] [--force]`: writes a deployment or
 * integration template (see `init_templates.ts`), as the original Shimmy's `init` did with the
 * same flags. Files that exist are not overwritten without `--force`. The image templates need
 * the Linux x64 executable beside their Dockerfile: a compiled shimmy for Linux x64 copies
 * itself there.
 *
 * @module
 */

import { basename, join } from "node:path";
import type { GlobalFlags } from "./global_flags.ts";
import { parseFlags } from "./flags.ts";
import { closestMatch } from "./suggest.ts";
import { UsageError } from "./usage_error.ts";
import { TEMPLATE_NAMES, templateFiles, type TemplateName } from "./init_templates.ts";
import { pathExists } from "../util/fs.ts";

/** Usage text of `shimmy init`. */
export const INIT_USAGE = `Usage: shimmy init --template T [--output DIR] [--name NAME] [--force]

Writes the files that deploy Shimmy, or an app that uses it:
  docker       Dockerfile and docker-compose.yml (models from ./models)
  kubernetes   Dockerfile and NAME.yaml: a Deployment, its Service and a volume for models (k8s too)
  railway      Dockerfile and railway.json
  fly          Dockerfile and fly.toml
  fastapi      A Python FastAPI app that answers through Shimmy's OpenAI API
  express      A Node.js Express app that does the same

Options:
  -t, --template T   One of the above
  -o, --output DIR   Where to write (default: the current folder)
  -n, --name NAME    The project's name: lowercase letters, digits and '-' (default: shimmy)
  --force            Overwrite files that exist

Examples:
  shimmy init -t docker -o deploy
  shimmy init --template kubernetes --name llm`;

/** A DNS label: the name becomes a Compose service, a Kubernetes object and a Fly app. */
const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Runs `shimmy init`.
 *
 * @param args Arguments after the command name.
 * @param _globals Global flags (none apply).
 * @returns The exit code.
 * @throws {UsageError} For a missing or unknown template, a bad name, or files in the way.
 */
export async function initMain(args: string[], _globals: GlobalFlags): Promise<number> {
  const { values } = parseFlags(args, {
    template: { type: "string", short: "t" },
    output: { type: "string", short: "o", default: "." },
    name: { type: "string", short: "n", default: "shimmy" },
    force: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  });
  if (values.help) {
    console.log(INIT_USAGE);
    return 0;
  }
  const template = templateOf(values.template);
  const name = values.name;
  if (!NAME.test(name)) {
    throw new UsageError(
      `--name "${name}" is not a valid name: use lowercase letters, digits and '-' (at most ` +
        "63, not starting or ending with '-'), since it names services and apps",
    );
  }
  const { files, needsExecutable, next } = templateFiles(template, name);
  const output = values.output;
  if (!values.force) {
    const existing = [];
    for (const file of files) if (pathExists(join(output, file.path))) existing.push(file.path);
    if (existing.length > 0) {
      const verb = existing.length > 1 ? "exist" : "exists";
      throw new UsageError(
        `${existing.join(", ")} already ${verb} in ${output}: pass --force to overwrite, or ` +
          "--output another folder",
      );
    }
  }
  for (const file of files) {
    const path = join(output, file.path);
    await Deno.mkdir(join(path, ".."), { recursive: true });
    await Deno.writeTextFile(path, file.text);
    console.log(`wrote ${path}`);
  }
  if (needsExecutable) await placeExecutable(output);
  console.log(`Next: ${next.join("\n      ")}`);
  return 0;
}

function templateOf(value: string | undefined): TemplateName {
  if (value === undefined) {
    throw new UsageError(`shimmy init needs --template: one of ${TEMPLATE_NAMES.join(", ")}`);
  }
  const wanted = value.toLowerCase();
  const known = TEMPLATE_NAMES.find((name) => name === wanted);
  if (known !== undefined) return known;
  const suggestion = closestMatch(wanted, [...TEMPLATE_NAMES]);
  throw new UsageError(
    `Unknown template "${value}"${suggestion ? ` (did you mean ${suggestion}?)` : ""}; ` +
      `templates: ${TEMPLATE_NAMES.join(", ")}`,
  );
}

/**
 * Puts the Linux x64 executable beside the Dockerfile: this one, when it is that executable;
 * otherwise says where to get it.
 */
async function placeExecutable(output: string): Promise<void> {
  const target = join(output, "shimmy");
  if (pathExists(target)) return console.log(`kept ${target}`);
  const self = Deno.execPath();
  if (Deno.build.standalone && Deno.build.os === "linux" && Deno.build.arch === "x86_64") {
    await Deno.copyFile(self, target);
    await Deno.chmod(target, 0o755);
    return console.log(`copied this executable (${basename(self)}) to ${target}`);
  }
  console.log(
    `Put the Linux x64 shimmy executable at ${target} (the release's shimmy-linux-x64 archive, ` +
      `or deno task compile --target x86_64-unknown-linux-gnu --output ${target}).`,
  );
}
