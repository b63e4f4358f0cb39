/**
 * Oracle test: a chat completion whose last message is the assistant's continues that message
 * (prefill) as llama.cpp's own server built from the same source continues it, on the same model
 * with greedy sampling: the same text and prompt size, streamed or not, and with llama-server's
 * `continue_final_message` and `echo`. (Six greedy tokens: the two servers' numerics agree for
 * longer on this model.)
 */

import { equal, ok } from "node:assert/strict";
import { fixtureModel } from "../fixtures/models.ts";
import { referenceDir, skipBecause } from "../helpers.ts";
import { postJson, readSse, startServer } from "../server/harness.ts";
import { startReferenceServer } from "./reference_server.ts";

const reference = referenceDir();

const ignore = reference === undefined &&
  skipBecause(
    "prefill oracle",
    "reference tools not built: run scripts/build-libllama.sh --reference-tools --out lib/reference",
  );

const PREFILL = "The colour is";
const BODY = {
  messages: [
    { role: "user", content: "Name a colour." },
    { role: "assistant", content: PREFILL },
  ],
  max_tokens: 6,
  temperature: 0,
};

/** A chat completion's answer and prompt size. */
async function chat(url: string, body: Record<string, unknown>) {
  const response = await postJson(`${url}/v1/chat/completions`, body);
  const text = await response.text();
  equal(response.status, 200, text);
  const json = JSON.parse(text);
  return { content: json.choices[0].message.content as string, prompt: json.usage.prompt_tokens };
}

/** A streamed chat completion's text: its content deltas joined. */
async function streamed(url: string, body: Record<string, unknown>): Promise<string> {
  const response = await postJson(`${url}/v1/chat/completions`, { ...body, stream: true });
  equal(response.status, 200);
  const { events } = await readSse(response);
  return events.filter((e) => e !== "[DONE]")
    .map((e) => JSON.parse(e).choices[0]?.delta?.content ?? "").join("");
}

Deno.test({
  name: "a chat ending with the assistant's message continues it as llama-server does",
  ignore,
  fn: async () => {
    const model = await fixtureModel("qwen2");
    await using shimmy = await startServer({ fixtures: ["qwen2"] });
    await using server = await startReferenceServer(reference as string, model, ["--jinja"]);

    // Unasked (llama-server's default): the message's text comes back with what follows.
    const ours = await chat(shimmy.url, BODY);
    const theirs = await chat(server.url, BODY);
    equal(ours.content, theirs.content);
    ok(ours.content.startsWith(PREFILL) && ours.content.length > PREFILL.length, ours.content);
    equal(ours.prompt, theirs.prompt, "the same prompt: the turn left open after the text");
    equal(await streamed(shimmy.url, BODY), await streamed(server.url, BODY));
    equal(await streamed(shimmy.url, BODY), ours.content);

    // Asked with continue_final_message: only what the model adds, unless echo is true.
    const asked = { ...BODY, continue_final_message: true, add_generation_prompt: false };
    const added = ours.content.slice(PREFILL.length);
    equal(await streamed(shimmy.url, asked), added);
    equal(await streamed(server.url, asked), added);
    // llama-server's whole answer has the text all the same (its streamed one does not); Shimmy's
    // has what its streamed one has.
    equal((await chat(shimmy.url, asked)).content, added);
    equal((await chat(server.url, asked)).content, ours.content);
    const echoed = { ...asked, echo: true };
    equal((await chat(shimmy.url, echoed)).content, (await chat(server.url, echoed)).content);
    equal(await streamed(shimmy.url, echoed), ours.content);

    // Both refuse two assistant messages at the end.
    const twice = { ...BODY, messages: [...BODY.messages, { role: "assistant", content: "x" }] };
    for (const url of [shimmy.url, server.url]) {
      const response = await postJson(`${url}/v1/chat/completions`, twice);
      equal(response.status, 400, url);
      await response.body?.cancel();
    }
  },
});
