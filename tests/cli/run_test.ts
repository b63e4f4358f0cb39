import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { ChatSession } from "../../src/cli/chat_session.ts";
import { fixtureAvailable, fixtureModel, REPO_ROOT } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";

// qwen2 has a chat template and rarely ends an answer early; tiny-f32 (no vocab files needed)
// falls back to a built-in template.
const chatModel = fixtureAvailable("qwen2") ? await fixtureModel("qwen2") : undefined;
const model = chatModel ?? await fixtureModel("tiny-f32");
const noPython = await new Deno.Command("python3", { args: ["-c", "import pty"] }).output()
  .then((o) => !o.success, () => true);
const ptyIgnore = noPython && skipBecause("shimmy run under a terminal", "python3 is missing");

/** Runs `shimmy run ARGS` under a pseudo-terminal, following send/expect steps. */
async function underPty(steps: ({ send: string } | { expect: string })[], args: string[]) {
  const out = await new Deno.Command("python3", {
    args: [
      join(REPO_ROOT, "tests", "cli", "pty_driver.py"),
      JSON.stringify(steps),
      Deno.execPath(),
      "run",
      "-A",
      join(REPO_ROOT, "main.ts"),
      "run",
      ...args,
    ],
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(text) as { transcript: string; code: number; failed: number | null };
}

Deno.test("ChatSession keeps the conversation, the system message and the settings", () => {
  const session = new ChatSession({ system: "Be brief" });
  deepEqual(session.input("Hi"), { kind: "ask", text: "Hi" });
  session.answered("Hello!");
  deepEqual(session.input("/set temperature 0.2"), {
    kind: "say",
    text: "Set temperature to 0.2",
  });
  equal(session.temperature, 0.2);
  equal(session.input("/set temperature hot").kind, "say");
  equal(session.temperature, 0.2);
  session.input("And you?");
  deepEqual(session.messages().map((m) => `${m.role}:${m.content}`), [
    "system:Be brief",
    "user:Hi",
    "assistant:Hello!",
    "user:And you?",
  ]);
  session.input("/clear");
  deepEqual(session.messages().map((m) => m.role), ["system"]);
  session.input("/system Talk like a pirate");
  equal(session.messages()[0]!.content, "Talk like a pirate");
  equal(session.input("/bye").kind, "bye");
  match((session.input("/nope") as { text: string }).text, /Unknown command \/nope; type \/help/);
});

Deno.test('ChatSession reads """ blocks and lines ending in \\ as one message', () => {
  const session = new ChatSession();
  equal(session.input('"""first').kind, "more");
  ok(session.continuing);
  equal(session.input("/not a command").kind, "more");
  deepEqual(session.input('last"""'), { kind: "ask", text: "first\n/not a command\nlast" });
  equal(session.input("one \\").kind, "more");
  deepEqual(session.input("two"), { kind: "ask", text: "one \ntwo" });
  deepEqual(session.input('"""inline"""'), { kind: "ask", text: "inline" });
  ok(!session.continuing);
});

Deno.test({
  name:
    "shimmy run chats under a terminal: settings, a multi-line message, Ctrl-C stops an answer, two Ctrl-C leave",
  ignore: ptyIgnore ||
    (!chatModel &&
      skipBecause("shimmy run Ctrl-C", "the qwen2 fixture needs the llama.cpp source")),
}, async () => {
  const run = await underPty([
    { expect: ">>> " },
    { send: "/set temperature 0\r" },
    { expect: "Set temperature to 0" },
    { send: "/set max-tokens 12\r" },
    { expect: "Set max-tokens to 12" },
    { send: '"""first line\r' },
    { expect: "\\.\\.\\. " },
    { send: 'second line"""\r' },
    { expect: ">>> " },
    { send: "/set max-tokens 8000\r" },
    { send: "Tell me a long story\r" },
    { expect: "\\S{20}" },
    { send: "\u0003" },
    { expect: "\\[stopped\\]\\r?\\n>>> " },
    { send: "/clear\r" },
    { expect: "Cleared the conversation" },
    { expect: ">>> " },
    { send: "\u0003" },
    { expect: "Ctrl-C again" },
    { send: "\u0003" },
  ], [chatModel!, "--max-tokens", "8000", "--ctx-size", "8192"]);
  equal(run.failed, null, run.transcript);
  equal(run.code, 0, run.transcript);
});

Deno.test({
  name: "shimmy run MODEL PROMPT answers once and exits; /bye leaves a chat",
  ignore: ptyIgnore,
}, async () => {
  const once = await underPty([{ expect: "\\S" }], [
    model,
    "Say hi",
    "--max-tokens",
    "8",
    "--temperature",
    "0",
  ]);
  equal(once.code, 0, once.transcript);
  ok(!once.transcript.includes(">>>"), once.transcript);
  const chat = await underPty([{ expect: ">>> " }, { send: "/bye\r" }], [model]);
  equal(chat.failed, null, chat.transcript);
  equal(chat.code, 0, chat.transcript);
});

Deno.test("shimmy run refuses more than 8 MiB piped to stdin instead of reading forever", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "main.ts"), "run", model, "--max-tokens", "2"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const block = new Uint8Array(1024 * 1024).fill(0x61);
  try {
    for (let i = 0; i < 9; i++) await writer.write(block);
    await writer.close();
  } catch {
    // The command stopped reading: it refused the rest.
  }
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr);
  ok(out.code !== 0 && out.code < 128, `exit ${out.code}: ${stderr}`);
  match(stderr, /longer than 8388608 bytes/);
});

Deno.test("shimmy run takes piped stdin as the prompt", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "main.ts"), "run", model, "--max-tokens", "6"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode("Summarise this text\n"));
  await writer.close();
  const out = await child.output();
  const stdout = new TextDecoder().decode(out.stdout);
  equal(out.code, 0, new TextDecoder().decode(out.stderr));
  ok(stdout.trim().length > 0);
  ok(!stdout.includes(">>>"));
});
