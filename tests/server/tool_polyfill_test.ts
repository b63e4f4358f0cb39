/**
 * Tools with templates that know nothing of them (Gemma 2, Phi-3.5): the tools are described in
 * the prompt, the calls forced in the generic JSON format, and the conversation that comes back
 * with calls and results renders (Gemma 2's template refused the tool turn; Phi-3.5's left the
 * tools, calls and results out).
 */

import { equal, ok } from "node:assert/strict";
import OpenAI from "openai";
import { llamaSourceDir } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";
import { TIME_PARAMETERS } from "../fixtures/tool_fixtures.ts";
import { postJson, startServerWithTemplate } from "./harness.ts";

const source = llamaSourceDir();
const ignore = source === undefined &&
  skipBecause("tool polyfill", "llama.cpp's templates are not at hand (the llama.cpp source)");

const TOOLS = [{
  type: "function" as const,
  function: { name: "get_time", description: "The time in a zone", parameters: TIME_PARAMETERS },
}];

const serveWith = (template: string) =>
  startServerWithTemplate(template, { load: { ctxSize: 4096, threads: 1 } });

for (const template of ["google-gemma-2-2b-it", "microsoft-Phi-3.5-mini-instruct"]) {
  Deno.test({
    name: `${template}: tools reach the prompt, and a tool loop's second turn renders`,
    ignore,
    fn: async () => {
      await using server = await serveWith(template);
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
      const user = { role: "user" as const, content: "Time in Tokyo?" };
      const first = await client.chat.completions.create({
        model: "tiny-f32",
        messages: [user],
        tools: TOOLS,
        tool_choice: "required",
        parallel_tool_calls: false,
        max_tokens: 256,
        temperature: 0,
      });
      const calls = first.choices[0]!.message.tool_calls ?? [];
      equal(calls.length, 1, JSON.stringify(first.choices[0]));
      const call = calls[0]!;
      const followUp = [
        user,
        first.choices[0]!.message,
        { role: "tool" as const, tool_call_id: call.id, content: "MARK 09:00" },
      ];
      const rendered = await postJson(`${server.url}/apply-template`, {
        messages: followUp,
        tools: TOOLS,
      });
      const { prompt } = await rendered.json();
      equal(rendered.status, 200, prompt);
      ok(prompt.includes('"name": "get_time"'), "the tool is described");
      ok(prompt.includes('{"tool_calls":[{"name":"get_time"'), "the call is shown as written");
      ok(prompt.includes("MARK 09:00"), "the result is shown");
      const second = await client.chat.completions.create({
        model: "tiny-f32",
        messages: followUp,
        tools: TOOLS,
        max_tokens: 8,
      });
      equal(typeof second.choices[0]!.finish_reason, "string");
    },
  });
}
