/**
 * Oracle test: every real chat template in llama.cpp's source (`models/templates/*.jinja`)
 * renders in Shimmy exactly as in llama.cpp's own server built from the same source. For each
 * template, Shimmy serves one generated model with `--chat-template FILE` (the same override
 * the CLI flag sets) and `llama-server --jinja --chat-template-file FILE` serves the same
 * model; both render the same conversations through `POST /apply-template`. The prompts must
 * be byte-identical, or both must refuse (Shimmy with a 400). One reference server per
 * template serves all its conversations; a few start at once. Both read today's date from the
 * same clock, so `strftime_now` agrees.
 */

import { equal } from "node:assert/strict";
import { join } from "node:path";
import { loadTemplateOverride } from "../../src/engine/templates.ts";
import { fixtureModel, llamaSourceDir } from "../fixtures/models.ts";
import { ORACLE_CONVERSATIONS } from "../fixtures/template_fixtures.ts";
import { referenceDir, skipBecause } from "../helpers.ts";
import { postJson, startServer } from "../server/harness.ts";
import { startReferenceServer } from "./reference_server.ts";

const reference = referenceDir();
const source = llamaSourceDir();
const FIXTURE = "tiny-f32";
/** Reference servers started at once. */
const PARALLEL = 4;
interface Answer {
  status: number;
  prompt?: string;
  error?: string;
}

/** Starts llama-server on a template, renders every conversation, stops it. */
async function referenceRenders(model: string, template: string): Promise<Answer[] | string> {
  let server;
  try {
    server = await startReferenceServer(reference as string, model, [
      "--jinja",
      "--chat-template-file",
      template,
      "-c",
      "256",
    ]);
  } catch (error) {
    return (error as Error).message;
  }
  await using _server = server;
  const answers: Answer[] = [];
  for (const conversation of ORACLE_CONVERSATIONS) {
    const response = await postJson(`${server.url}/apply-template`, conversation.body);
    const json = await response.json();
    answers.push({ status: response.status, prompt: json.prompt, error: json.error?.message });
  }
  return answers;
}

Deno.test({
  name: "every real chat template renders in Shimmy exactly as llama-server renders it",
  ignore: (reference === undefined &&
    skipBecause(
      "template oracle",
      "reference tools not built: run scripts/build-libllama.sh --reference-tools --out lib/reference",
    )) ||
    (source === undefined &&
      skipBecause(
        "template oracle",
        "llama.cpp source not unpacked: run scripts/build-libllama.sh --source-only",
      )),
  async fn() {
    const folder = join(source as string, "models", "templates");
    const templates = [...Deno.readDirSync(folder)]
      .filter((e) => e.isFile && e.name.endsWith(".jinja"))
      .map((e) => e.name)
      .sort();
    const model = await fixtureModel(FIXTURE);

    // Reference renders, a few servers at a time.
    const references = new Map<string, Answer[] | string>();
    let next = 0;
    await Promise.all(Array.from({ length: PARALLEL }, async () => {
      while (next < templates.length) {
        const name = templates[next++] as string;
        references.set(name, await referenceRenders(model, join(folder, name)));
      }
    }));

    // Shimmy renders, one in-process server, its --chat-template switched per template.
    await using server = await startServer({ fixtures: [FIXTURE] });
    const rows: string[] = [];
    const failures: string[] = [];
    let identical = 0;
    let total = 0;
    for (const name of templates) {
      const ref = references.get(name);
      const marks: string[] = [];
      let override;
      try {
        override = await loadTemplateOverride(join(folder, name));
      } catch (error) {
        override = undefined;
        failures.push(`${name}: Shimmy cannot load it: ${(error as Error).message}`);
      }
      for (const [i, conversation] of ORACLE_CONVERSATIONS.entries()) {
        total++;
        if (typeof ref === "string" || ref === undefined || override === undefined) {
          marks.push("E");
          if (typeof ref === "string") failures.push(`${name}: ${ref}`);
          continue;
        }
        server.ctx.settings.chatTemplate = override;
        const response = await postJson(`${server.url}/apply-template`, conversation.body);
        const ours = await response.json() as { prompt?: string; error?: { message: string } };
        const theirs = ref[i] as Answer;
        const same = theirs.status === 200
          ? response.status === 200 && ours.prompt === theirs.prompt
          : response.status === 400;
        if (same) {
          identical++;
          marks.push(theirs.status === 200 ? "=" : "r");
        } else {
          marks.push("X");
          failures.push(
            `${name} [${conversation.name}]: llama-server ${theirs.status} ${
              JSON.stringify(theirs.prompt ?? theirs.error)
            }\n  shimmy ${response.status} ${JSON.stringify(ours.prompt ?? ours.error?.message)}`,
          );
        }
      }
      rows.push(`${marks.join(" ")}  ${name}`);
    }
    const header = ORACLE_CONVERSATIONS.map((c) => c.name).join(", ");
    console.log(`\nTemplate oracle (= identical, r both refuse, X differs, E error) — ${header}`);
    for (const row of rows) console.log(row);
    console.log(`${identical}/${total} renders identical`);
    equal(failures.length, 0, failures.join("\n"));
  },
});
