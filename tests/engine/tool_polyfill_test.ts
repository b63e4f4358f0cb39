import { deepEqual, equal, ok } from "node:assert/strict";
import {
  toolsSystemText,
  toolTurnsAsText,
  withToolsInSystem,
} from "../../src/engine/tool_polyfill.ts";

const TOOL = {
  type: "function",
  function: { name: "get_time", description: "The time", parameters: { type: "object" } },
};

Deno.test("the tools join the system message, parts and all, or come first as one", () => {
  const text = toolsSystemText([TOOL], true);
  ok(text.includes('"name": "get_time"') && text.includes('{"tool_calls": ['));
  ok(!toolsSystemText([TOOL], false).includes('{"tool_calls": ['), "no format taught");
  const user = { role: "user", content: "Hi" };
  deepEqual(withToolsInSystem([user], [TOOL], true), [{ role: "system", content: text }, user]);
  const parts = { role: "system", content: [{ type: "text", text: "Be brief." }] };
  deepEqual(withToolsInSystem([parts, user], [TOOL], true), [
    { role: "system", content: `Be brief.\n\n${text}` },
    user,
  ]);
});

Deno.test("calls become the JSON the model wrote, and results one user turn with the next", () => {
  const out = toolTurnsAsText([
    { role: "user", content: "Time in Tokyo and London?" },
    {
      role: "assistant",
      content: "",
      tool_calls: [
        { id: "a", type: "function", function: { name: "get_time", arguments: '{"tz":"JST"}' } },
        { id: "b", type: "function", function: { name: "get_time", arguments: '{"tz":"UTC"}' } },
      ],
    },
    { role: "tool", tool_call_id: "a", name: "get_time", content: "09:00" },
    { role: "tool", tool_call_id: "b", content: [{ type: "text", text: "00:00" }] },
    { role: "user", content: "Thanks. And Paris?" },
    { role: "assistant", content: "Let me see." },
    { role: "user", content: "Quick." },
  ]);
  deepEqual(out, [
    { role: "user", content: "Time in Tokyo and London?" },
    {
      role: "assistant",
      content:
        '{"tool_calls":[{"name":"get_time","arguments":{"tz":"JST"}},{"name":"get_time","arguments":{"tz":"UTC"}}]}',
    },
    {
      role: "user",
      // The second result names no tool: its call's id tells it.
      content:
        "Tool result of get_time: 09:00\n\nTool result of get_time: 00:00\n\nThanks. And Paris?",
    },
    { role: "assistant", content: "Let me see." },
    { role: "user", content: "Quick." },
  ]);
  equal(
    toolTurnsAsText([{ role: "user", content: "a" }, { role: "user", content: "b" }]).length,
    2,
  );
});
