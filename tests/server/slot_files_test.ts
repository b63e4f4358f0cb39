/**
 * `POST /slots/N?action=save|restore` through real HTTP and libllama: a slot's cache written to a
 * file in the `--slot-save-path` folder and read back into another slot serves the same prompt
 * without evaluating it again, with the same greedy answer; a busy slot is saved once its request
 * ends; names that leave the folder, files that are not there or not this model's, and unknown
 * fields are refused with the right status, and the server serves on.
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { postJson, startServer } from "./harness.ts";

const PROMPT = "the quick brown fox jumps over the lazy dog and runs into the woods ".repeat(3);

/** A greedy completion of `prompt`: its text and how many of its prompt tokens were cached. */
async function complete(url: string, prompt = PROMPT, model?: string) {
  const response = await postJson(`${url}/v1/completions`, {
    prompt,
    max_tokens: 8,
    temperature: 0,
    ...(model ? { model } : {}),
  });
  equal(response.status, 200);
  const body = await response.json();
  return {
    text: body.choices[0].text as string,
    promptTokens: body.usage.prompt_tokens as number,
    cached: body.usage.prompt_tokens_details.cached_tokens as number,
  };
}

/** Posts a slot action; the body is JSON unless a string is given. */
async function slotAction(url: string, path: string, body?: unknown) {
  const response = await postJson(`${url}${path}`, body ?? {});
  return { status: response.status, json: await response.json() };
}

/** A temporary folder for slot files, removed with everything in it when disposed. */
async function tempFolder(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "shimmy-slots-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

Deno.test("a slot's cache saved to a file and restored into another slot serves its prompt again without evaluating it", async () => {
  await using temp = await tempFolder();
  const folder = temp.path;
  await using server = await startServer({
    load: { parallel: 2, ctxSize: 1024 },
    settings: { slotSavePath: folder },
  });
  const first = await complete(server.url);
  equal(first.cached, 0);

  const saved = await slotAction(server.url, "/slots/0?action=save", { filename: "fox.bin" });
  equal(saved.status, 200, JSON.stringify(saved.json));
  deepEqual(Object.keys(saved.json), ["id_slot", "filename", "n_saved", "n_written", "timings"]);
  equal(saved.json.id_slot, 0);
  equal(saved.json.filename, "fox.bin");
  ok(saved.json.n_saved >= first.promptTokens, JSON.stringify(saved.json));
  equal((await Deno.stat(join(folder, "fox.bin"))).size, saved.json.n_written);
  ok(saved.json.timings.save_ms >= 0);

  const erased = await slotAction(server.url, "/slots/0?action=erase");
  equal(erased.json.n_erased, saved.json.n_saved);
  const restored = await slotAction(server.url, "/slots/1?action=restore", {
    filename: "fox.bin",
  });
  equal(restored.status, 200, JSON.stringify(restored.json));
  deepEqual(restored.json, {
    id_slot: 1,
    filename: "fox.bin",
    n_restored: saved.json.n_saved,
    n_read: saved.json.n_written,
    timings: restored.json.timings,
  });

  // Slot 0 is empty now: only slot 1's restored cache can hold the prompt.
  const again = await complete(server.url);
  equal(again.cached, first.promptTokens - 1, "all but the last prompt token came from the file");
  equal(again.text, first.text);
});

Deno.test("a busy slot is saved once its request ends", async () => {
  await using temp = await tempFolder();
  const folder = temp.path;
  await using server = await startServer({
    load: { parallel: 1, ctxSize: 4096 },
    settings: { slotSavePath: folder },
  });
  const abort = new AbortController();
  const stream = await postJson(
    `${server.url}/completion`,
    { prompt: PROMPT, n_predict: 4000, ignore_eos: true, stream: true },
    {},
    abort.signal,
  );
  const reader = stream.body!.getReader();
  await reader.read(); // generating now
  let answered = false;
  const saving = slotAction(server.url, "/slots/0?action=save", { filename: "busy.bin" })
    .then((answer) => {
      answered = true;
      return answer;
    });
  await new Promise((resolve) => setTimeout(resolve, 200));
  equal(answered, false, "the save waits while the slot is busy");
  abort.abort();
  await reader.cancel().catch(() => {});
  const saved = await saving;
  equal(saved.status, 200, JSON.stringify(saved.json));
  ok(saved.json.n_saved > 0);
});

Deno.test("slot files: names outside the folder, missing or foreign files and unknown fields are refused, and the server serves on", async () => {
  await using temp = await tempFolder();
  const folder = temp.path;
  await using server = await startServer({
    fixtures: ["tiny-f32", "qwen2"],
    load: { parallel: 1, ctxSize: 1024 },
    settings: { slotSavePath: folder },
  });
  const first = await complete(server.url);
  for (const filename of ["", "../fox.bin", "a/b.bin", "a\\b.bin", "c:x", "x.", " x", ".."]) {
    const answer = await slotAction(server.url, "/slots/0?action=save", { filename });
    equal(answer.status, 400, JSON.stringify(filename));
    equal(answer.json.error.param, "filename");
  }
  const refusals: [string, unknown, number][] = [
    ["/slots/0?action=save", {}, 400],
    ["/slots/0?action=save", { filename: "a.bin", tokens: [1] }, 400],
    ["/slots/0?action=save", { filename: 7 }, 400],
    ["/slots/3?action=save", { filename: "a.bin" }, 400],
    ["/slots/0?action=restore", { filename: "none.bin" }, 404],
    ["/slots/0?action=load", { filename: "a.bin" }, 400],
  ];
  for (const [path, body, status] of refusals) {
    const answer = await slotAction(server.url, path, body);
    equal(
      answer.status,
      status,
      `${path} ${JSON.stringify(body)}: ${JSON.stringify(answer.json)}`,
    );
    ok(answer.json.error.message.length > 0);
  }
  const outside = await Array.fromAsync(Deno.readDir(join(folder, "..")));
  ok(!outside.some((entry) => entry.name === "fox.bin"), "nothing was written outside");

  // Not a slot file, then another model's: a 400, and the slot is left empty.
  await Deno.writeTextFile(join(folder, "garbage.bin"), "not a slot file at all");
  const garbage = await slotAction(server.url, "/slots/0?action=restore", {
    filename: "garbage.bin",
  });
  equal(garbage.status, 400, JSON.stringify(garbage.json));
  ok(garbage.json.error.message.includes("garbage.bin"), garbage.json.error.message);
  await complete(server.url, PROMPT, "qwen2");
  const other = await slotAction(server.url, "/slots/0?action=save&model=qwen2", {
    filename: "qwen2.bin",
  });
  equal(other.status, 200, JSON.stringify(other.json));
  // Qwen2's cells fit this model's (same shape), its tokens do not fit the vocabulary.
  const foreign = await slotAction(server.url, "/slots/0?action=restore", {
    filename: "qwen2.bin",
  });
  equal(foreign.status, 400, JSON.stringify(foreign.json));
  ok(foreign.json.error.message.includes("vocabulary"), foreign.json.error.message);

  const after = await complete(server.url);
  equal(after.cached, 0, "the failed restore left the slot empty");
  equal(after.text, first.text);
});

Deno.test("slot files: a link, a FIFO or a folder in the slot folder is refused, and nothing outside is touched", async () => {
  await using temp = await tempFolder();
  const folder = join(temp.path, "slots");
  await Deno.mkdir(folder);
  const victim = join(temp.path, "victim.txt");
  await Deno.writeTextFile(victim, "root:x:0:0 precious");
  await Deno.symlink(victim, join(folder, "link.bin"));
  await Deno.symlink(join(temp.path, "made-outside.bin"), join(folder, "dangling.bin"));
  await new Deno.Command("mkfifo", { args: [join(folder, "fifo.bin")] }).output();
  await Deno.mkdir(join(folder, "dir.bin"));
  await using server = await startServer({
    load: { parallel: 1 },
    settings: { slotSavePath: folder },
  });
  await complete(server.url);
  for (const filename of ["link.bin", "dangling.bin", "fifo.bin", "dir.bin"]) {
    for (const action of ["save", "restore"]) {
      const answer = await slotAction(server.url, `/slots/0?action=${action}`, { filename });
      equal(answer.status, 400, `${action} ${filename}: ${JSON.stringify(answer.json)}`);
      ok(!answer.json.error.message.includes("root"), answer.json.error.message);
    }
  }
  equal(await Deno.readTextFile(victim), "root:x:0:0 precious");
  ok(!(await Array.fromAsync(Deno.readDir(temp.path))).some((e) => e.name === "made-outside.bin"));
  ok((await complete(server.url)).text.length > 0, "the model still serves");
});

Deno.test("an idle slot is saved and restored while another streams, and the stream's tokens stay the same", async () => {
  await using temp = await tempFolder();
  const folder = temp.path;
  await using server = await startServer({
    load: { parallel: 2, ctxSize: 1024 },
    settings: { slotSavePath: folder },
  });
  const long = { prompt: "Once upon a time", n_predict: 300, ignore_eos: true, temperature: 0 };
  const alone = await (await postJson(`${server.url}/completion`, long)).json();
  await complete(server.url); // PROMPT's cache, in the other slot
  const stream = await postJson(`${server.url}/completion`, { ...long, stream: true });
  const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
  let events = (await reader.read()).value ?? "";
  const slots = await (await fetch(`${server.url}/slots`)).json();
  const idle = slots.find((slot: { is_processing: boolean }) => !slot.is_processing).id;
  const saved = await slotAction(server.url, `/slots/${idle}?action=save`, { filename: "a" });
  equal(saved.status, 200, JSON.stringify(saved.json));
  ok(saved.json.n_saved > 0);
  const restored = await slotAction(server.url, `/slots/${idle}?action=restore`, {
    filename: "a",
  });
  equal(restored.json.n_restored, saved.json.n_saved);
  const busy = await (await fetch(`${server.url}/slots`)).json();
  ok(busy.some((slot: { is_processing: boolean }) => slot.is_processing), "saved mid-stream");
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    events += read.value;
  }
  const text = events.split("\n").filter((line) => line.startsWith("data: "))
    .map((line) => JSON.parse(line.slice(6)).content ?? "").join("");
  equal(text, alone.content);
});

Deno.test("a slot file needs the same KV layout: another number of KV streams is a 400, one shared cache takes it", async () => {
  // Fused attention fixed for all three: it decides how V is stored, which must match too.
  await using temp = await tempFolder();
  const folder = temp.path;
  {
    await using one = await startServer({
      load: { parallel: 1, ctxSize: 1024, flashAttn: "off" },
      settings: { slotSavePath: folder },
    });
    await complete(one.url);
    equal((await slotAction(one.url, "/slots/0?action=save", { filename: "one.bin" })).status, 200);
  }
  {
    await using two = await startServer({
      load: { parallel: 2, ctxSize: 1024, flashAttn: "off" },
      settings: { slotSavePath: folder },
    });
    const refused = await slotAction(two.url, "/slots/1?action=restore", { filename: "one.bin" });
    equal(refused.status, 400, JSON.stringify(refused.json));
    ok(refused.json.error.message.includes("n_stream mismatch"), refused.json.error.message);
    equal((await complete(two.url)).cached, 0, "and the server serves on");
  }
  await using shared = await startServer({
    load: { parallel: 2, ctxSize: 1024, kvUnified: "on", flashAttn: "off" },
    settings: { slotSavePath: folder },
  });
  const restored = await slotAction(shared.url, "/slots/1?action=restore", { filename: "one.bin" });
  equal(restored.status, 200, JSON.stringify(restored.json));
  ok((await complete(shared.url)).cached > 0, "the restored cache serves the prompt");
});

Deno.test("slot saves asked for while another save runs, with every slot idle, all finish", async () => {
  await using temp = await tempFolder();
  await using server = await startServer({
    load: { parallel: 2, ctxSize: 4096 },
    settings: { slotSavePath: temp.path },
  });
  await complete(server.url, PROMPT.repeat(20)); // a cache worth writing
  const scheduler = server.ctx.registry.loaded().get("tiny-f32")?.scheduler;
  ok(scheduler);
  // Each asked for a moment after the one before, so that most arrive while one is written.
  const saves: Promise<unknown>[] = [];
  for (let i = 0; i < 8; i++) {
    saves.push(scheduler.saveSlot(i % 2, join(temp.path, `save${i}.bin`)));
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  const late = new Promise((resolve) => setTimeout(() => resolve("late"), 10_000));
  equal(await Promise.race([Promise.all(saves).then(() => "done"), late]), "done");
});

/** The bytes of the regular files in a folder, by name. */
async function folderFiles(folder: string): Promise<Record<string, number>> {
  const files: Record<string, number> = {};
  for await (const entry of Deno.readDir(folder)) {
    if (entry.isFile) files[entry.name] = (await Deno.stat(join(folder, entry.name))).size;
  }
  return files;
}

/** The bytes of all the regular files in a folder. */
async function folderBytes(folder: string): Promise<number> {
  return Object.values(await folderFiles(folder)).reduce((sum, size) => sum + size, 0);
}

/** A bound for the slot folder tests, larger than two slot files of the tiny models. */
const SLOT_FOLDER_BOUND = 8 * 2 ** 20;

Deno.test("slot saves fill --slot-save-max-size to its last byte; one past it is a 507 that writes nothing and keeps the slot's cache, and it works once files are deleted", async () => {
  await using temp = await tempFolder();
  const folder = temp.path;
  await using server = await startServer({
    load: { parallel: 1, ctxSize: 1024 },
    settings: { slotSavePath: folder, slotSaveMaxBytes: SLOT_FOLDER_BOUND },
  });
  const first = await complete(server.url);
  const saved = await slotAction(server.url, "/slots/0?action=save", { filename: "a.bin" });
  equal(saved.status, 200, JSON.stringify(saved.json));
  const size = saved.json.n_written as number;
  ok(size > 0 && size < SLOT_FOLDER_BOUND / 2, `a slot file of ${size} bytes`);
  // Room for exactly one more file of the same size: the size checked is the size written.
  await Deno.writeFile(join(folder, "filler.bin"), new Uint8Array(SLOT_FOLDER_BOUND - 2 * size));
  const exact = await slotAction(server.url, "/slots/0?action=save", { filename: "b.bin" });
  equal(exact.status, 200, JSON.stringify(exact.json));
  equal(await folderBytes(folder), SLOT_FOLDER_BOUND);

  const before = await folderFiles(folder);
  const full = await slotAction(server.url, "/slots/0?action=save", { filename: "c.bin" });
  equal(full.status, 507, JSON.stringify(full.json));
  deepEqual(Object.keys(full.json.error).sort(), ["code", "message", "param", "type"]);
  equal(full.json.error.code, "slot_folder_full");
  equal(full.json.error.type, "server_error");
  match(
    full.json.error.message,
    /^The slot save folder holds 8\.0 MiB of files, and saving "c\.bin" \(\d+\.\d [KM]iB\) would take it to \d+\.\d MiB, over its bound of 8\.0 MiB: delete slot files there, or start the server with a larger --slot-save-max-size$/,
  );
  deepEqual(await folderFiles(folder), before, "no file written, none left behind");
  const again = await complete(server.url);
  equal(again.cached, first.promptTokens - 1, "the slot's cache is untouched");
  equal(again.text, first.text);

  await Deno.remove(join(folder, "filler.bin"));
  const after = await slotAction(server.url, "/slots/0?action=save", { filename: "c.bin" });
  equal(after.status, 200, JSON.stringify(after.json));
  equal((await Deno.stat(join(folder, "c.bin"))).size, after.json.n_written);
});

Deno.test("replacing a slot file counts only by how much it grows: the same size fits a full folder, a larger one past the bound is a 507 that keeps the old file", async () => {
  await using temp = await tempFolder();
  const folder = temp.path;
  await using server = await startServer({
    load: { parallel: 1, ctxSize: 1024 },
    settings: { slotSavePath: folder, slotSaveMaxBytes: SLOT_FOLDER_BOUND },
  });
  await complete(server.url);
  const saved = await slotAction(server.url, "/slots/0?action=save", { filename: "a.bin" });
  equal(saved.status, 200, JSON.stringify(saved.json));
  const size = saved.json.n_written as number;
  await Deno.writeFile(join(folder, "filler.bin"), new Uint8Array(SLOT_FOLDER_BOUND - size - 1));

  const same = await slotAction(server.url, "/slots/0?action=save", { filename: "a.bin" });
  equal(same.status, 200, JSON.stringify(same.json));
  equal(same.json.n_written, size);
  const other = await slotAction(server.url, "/slots/0?action=save", { filename: "b.bin" });
  equal(other.status, 507, "a new name needs the whole size");

  await complete(server.url, PROMPT.repeat(2)); // a longer cache: a larger file
  const grown = await slotAction(server.url, "/slots/0?action=save", { filename: "a.bin" });
  equal(grown.status, 507, JSON.stringify(grown.json));
  equal(grown.json.error.code, "slot_folder_full");
  match(grown.json.error.message, /saving "a\.bin" \([^)]*, in place of [^)]*\)/);
  equal((await Deno.stat(join(folder, "a.bin"))).size, size, "the old file is left whole");
  const restored = await slotAction(server.url, "/slots/0?action=restore", { filename: "a.bin" });
  equal(restored.json.n_restored, saved.json.n_saved);
});

Deno.test("two slot saves at once, of two models, into a folder with room for one: one is written and the other is a 507", async () => {
  await using temp = await tempFolder();
  const folder = temp.path;
  await using server = await startServer({
    fixtures: ["tiny-f32", "qwen2"],
    load: { parallel: 1, ctxSize: 1024 },
    settings: { slotSavePath: folder, slotSaveMaxBytes: SLOT_FOLDER_BOUND },
  });
  const save = (filename: string, model: string) =>
    slotAction(server.url, `/slots/0?action=save&model=${model}`, { filename });
  await complete(server.url, PROMPT, "tiny-f32");
  await complete(server.url, PROMPT, "qwen2");
  const sizes = [(await save("a.bin", "tiny-f32")).json, (await save("b.bin", "qwen2")).json]
    .map((json) => json.n_written as number);
  await Deno.remove(join(folder, "a.bin"));
  await Deno.remove(join(folder, "b.bin"));
  // Either file fits beside the filler; both do not.
  await Deno.writeFile(
    join(folder, "filler.bin"),
    new Uint8Array(SLOT_FOLDER_BOUND - Math.max(...sizes)),
  );
  // A few rounds: without turns, both checks would pass in most (they did in 2 of 3 alone).
  for (let round = 0; round < 4; round++) {
    const answers = await Promise.all([save("a.bin", "tiny-f32"), save("b.bin", "qwen2")]);
    deepEqual(answers.map((a) => a.status).sort(), [200, 507], JSON.stringify(answers));
    ok(await folderBytes(folder) <= SLOT_FOLDER_BOUND);
    const files = Object.keys(await folderFiles(folder)).sort();
    equal(files.length, 2, `the filler and one slot file: ${files}`);
    await Deno.remove(join(folder, files[0] === "filler.bin" ? files[1]! : files[0]!));
  }
});
