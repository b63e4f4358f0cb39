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
import { compileChatTemplate } from "../../src/engine/templates_llama.ts";
import { fixtureModel, llamaSourceDir } from "../fixtures/models.ts";
import {
  CONTINUATION_DIFFERENCES,
  ORACLE_CONVERSATIONS,
  type OracleConversation,
} from "../fixtures/template_fixtures.ts";
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

/**
 * Whether a continued conversation that Shimmy renders otherwise than llama-server does so for a
 * reason on record: `c` for a template in {@link CONTINUATION_DIFFERENCES} whose prompt still
 * ends with the continued text, `n` for thinking continued where the template has no `<think>`
 * block (Shimmy refuses; llama-server drops the thinking), or false.
 */
function knownContinuation(
  name: string,
  conversation: OracleConversation,
  status: number,
  ours: { prompt?: string; error?: { message: string } },
  template: string,
): "c" | "n" | false {
  if (
    status === 400 && !template.includes("<think>") &&
    /no thinking block/.test(ours.error?.message ?? "")
  ) {
    return "n";
  }
  const listed = name in CONTINUATION_DIFFERENCES;
  return listed && status === 200 && ours.prompt?.endsWith(conversation.continues ?? "")
    ? "c"
    : false;
}

/**
 * Whether a conversation with tools that Shimmy renders otherwise does so because the template
 * knows nothing of tools (`tool_polyfill.ts`): `p` when Shimmy's prompt holds what llama-server's
 * leaves out (the tool's name; the call's arguments and its result), or false.
 */
function knownPolyfill(
  conversation: OracleConversation,
  status: number,
  ours: { prompt?: string },
  template: string,
): "p" | false {
  const caps = compileChatTemplate(template).caps;
  if (conversation.body.tools === undefined || (caps.supportsTools && caps.supportsToolCalls)) {
    return false;
  }
  const shown = conversation.name === "tool-call"
    ? ['"name": "get_weather"', "Paris", '{"temperature": 22}']
    : ['"name": "get_weather"'];
  return status === 200 && shown.every((text) => ours.prompt?.includes(text)) ? "p" : false;
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
    const continuedSame = new Set<string>();
    const continuedOtherwise = new Set<string>();
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
        const source = "template" in override ? override.template : "";
        const known = !same &&
          (conversation.continues !== undefined
            ? knownContinuation(name, conversation, response.status, ours, source)
            : knownPolyfill(conversation, response.status, ours, source));
        if (same) {
          identical++;
          if (conversation.continues !== undefined) continuedSame.add(name);
          marks.push(theirs.status === 200 ? "=" : "r");
        } else if (known) {
          marks.push(known);
          if (known === "c") continuedOtherwise.add(name);
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
    for (const name of Object.keys(CONTINUATION_DIFFERENCES)) {
      if (!continuedOtherwise.has(name)) {
        failures.push(`${name}: listed in CONTINUATION_DIFFERENCES, but continues as llama-server`);
      }
    }
    const header = ORACLE_CONVERSATIONS.map((c) => c.name).join(", ");
    console.log(
      "\nTemplate oracle (= identical, r both refuse, c a continuation known to differ, n no " +
        "thinking to continue, p tools described for a template that knows none, X differs, " +
        `E error) — ${header}`,
    );
    for (const row of rows) console.log(row);
    console.log(`${identical}/${total} renders identical`);
    equal(failures.length, 0, failures.join("\n"));
  },
});
