/**
 * Tool loops through the Anthropic and Ollama APIs on templates that pair calls and results by
 * id: Mistral's (ids of nine letters and digits, or the template raises) and Command R7B's. The
 * second turn, which sends the call and its result back, used to be a 400 on them.
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import { mistralToolId, withMistralToolIds } from "../../src/engine/tools/mistral_ids.ts";
import { llamaSourceDir } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";
import { TIME_PARAMETERS } from "../fixtures/tool_fixtures.ts";
import { postJson, startServerWithTemplate } from "./harness.ts";

const MODEL = "tiny-f32";
const source = llamaSourceDir();
const ignore = source === undefined &&
  skipBecause("tool ids", "llama.cpp's templates are not at hand (the llama.cpp source)");

const TOOL = { name: "get_time", description: "The time in a zone", parameters: TIME_PARAMETERS };

/** Command R7B's preamble is long in the tiny vocabulary's tokens. */
const serveWith = (template: string) =>
  startServerWithTemplate(template, { load: { ctxSize: 8192, threads: 1 } });

Deno.test("mistralToolId keeps a Mistral id and derives one, always the same, from any other", () => {
  equal(mistralToolId("Ab3dE6gH9"), "Ab3dE6gH9");
  const derived = mistralToolId("toolu_Ab3dE6gH9");
  match(derived, /^[A-Za-z0-9]{9}$/);
  equal(mistralToolId("toolu_Ab3dE6gH9"), derived);
  ok(mistralToolId("call_0_0") !== mistralToolId("call_1_0"));
  const [call, result] = withMistralToolIds([
    { role: "assistant", tool_calls: [{ id: "call_0_0", function: { name: "f" } }] },
    { role: "tool", tool_call_id: "call_0_0", content: "1" },
  ]);
  deepEqual(call!.tool_calls, [{ id: mistralToolId("call_0_0"), function: { name: "f" } }]);
  equal(result!.tool_call_id, mistralToolId("call_0_0"));
});

for (
  const template of ["mistralai-Mistral-Nemo-Instruct-2407", "Mistral-Small-3.2-24B-Instruct-2506"]
) {
  Deno.test({
    name: `${template}: the Anthropic tool loop's second turn renders the tool_use ids it gave`,
    ignore,
    fn: async () => {
      await using server = await serveWith(template);
      const ask = {
        model: MODEL,
        max_tokens: 256,
        temperature: 0,
        tools: [{ name: TOOL.name, description: TOOL.description, input_schema: TOOL.parameters }],
        tool_choice: { type: "tool", name: TOOL.name },
        messages: [{ role: "user", content: "Time in Tokyo?" }],
      };
      const first = await (await postJson(`${server.url}/v1/messages`, ask)).json();
      const use = first.content.find((block: { type: string }) => block.type === "tool_use");
      ok(use, JSON.stringify(first));
      match(use.id, /^toolu_/);
      const second = await postJson(`${server.url}/v1/messages`, {
        ...ask,
        tool_choice: { type: "auto" },
        messages: [
          ...ask.messages,
          { role: "assistant", content: first.content },
          {
            role: "user",
            content: [{ type: "tool_result", tool_use_id: use.id, content: "09:00" }],
          },
        ],
      });
      const body = await second.json();
      equal(second.status, 200, JSON.stringify(body));
    },
  });
}

for (
  const template of [
    "mistralai-Mistral-Nemo-Instruct-2407",
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use",
  ]
) {
  Deno.test({
    name:
      `${template}: an Ollama tool loop (calls without ids, results named by tool_name) renders`,
    ignore,
    fn: async () => {
      await using server = await serveWith(template);
      const tools = [{ type: "function", function: TOOL }];
      const turn = (messages: unknown[]) =>
        postJson(`${server.url}/ollama/api/chat`, {
          model: MODEL,
          stream: false,
          options: { num_predict: 48 },
          tools,
          messages,
        });
      const user = { role: "user", content: "Time in Tokyo and in London?" };
      // What an Ollama client sends back: its own calls, no ids, and results by tool name.
      const call = { function: { name: TOOL.name, arguments: { tz: "JST" } } };
      const again = { function: { name: TOOL.name, arguments: { tz: "UTC" } } };
      const response = await turn([
        user,
        { role: "assistant", content: "", tool_calls: [call, again] },
        { role: "tool", content: "09:00", tool_name: TOOL.name },
        { role: "tool", content: "00:00", tool_name: TOOL.name },
      ]);
      const body = await response.json();
      equal(response.status, 200, JSON.stringify(body));
      equal(body.done, true);
      // A result that answers no call (another tool's name, one too many) still renders.
      const stray = await turn([
        user,
        { role: "assistant", content: "", tool_calls: [call] },
        { role: "tool", content: "09:00", tool_name: "other_tool" },
        { role: "tool", content: "00:00", tool_name: TOOL.name },
        { role: "tool", content: "extra", tool_name: TOOL.name },
      ]);
      const strayBody = await stray.json();
      equal(stray.status, 200, JSON.stringify(strayBody));
    },
  });
}
