/**
 * The chat page in a real browser: Debian's Chromium, driven by puppeteer-core, against a live
 * server over the generated tiny-f32 model (whose answers never end on their own, so a Stop
 * always lands mid-answer). One browser and one server serve every step, in order: the steps
 * share the page's localStorage as a person's browser would.
 */

import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import type { Browser, Dialog, Page } from "puppeteer-core";
import { buildWebui } from "../../scripts/build_webui.ts";
import { REPO_ROOT } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";
import { startServer, type TestServer, waitFor } from "../server/harness.ts";
import { findChromium, launchChromium } from "./browser.ts";

const chromium = findChromium();
const TEST = "the chat page in Chromium";
const ignore = !chromium &&
  skipBecause(TEST, "no Chromium found (apt-get install chromium, or set SHIMMY_CHROMIUM)");
const SCREENSHOTS = join(REPO_ROOT, "docs", "screenshots");

function busySlots(server: TestServer): number {
  return server.ctx.registry.loaded().get("tiny-f32")?.scheduler.stats().busySlots ?? 0;
}

/** The text of the last answer on the page. */
function lastAnswer(page: Page): Promise<string> {
  return page.$$eval(".msg.assistant .body", (all) => all.at(-1)?.textContent ?? "");
}

/** The value of a form field. */
function valueOf(page: Page, selector: string): Promise<unknown> {
  return page.evaluate(`document.querySelector(${JSON.stringify(selector)}).value`);
}

/** Waits until an element's text contains `text`. */
async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  await page.waitForFunction(
    `document.querySelector(${JSON.stringify(selector)})?.textContent?.includes(${
      JSON.stringify(text)
    })`,
  );
}

async function setSettings(page: Page, settings: Record<string, unknown>): Promise<void> {
  await page.evaluate((s) => localStorage.setItem("shimmy.settings", JSON.stringify(s)), settings);
}

async function send(page: Page, text: string): Promise<void> {
  await page.focus("#prompt");
  await page.keyboard.type(text);
  await page.keyboard.press("Enter");
}

/** A conversation as the page stores it, for the rendering and screenshot steps. */
function storedConversation(id: string, title: string, messages: unknown[]) {
  return { id, title, updated: Date.now(), messages };
}

const HOSTILE = [
  "Hostile output:",
  '<img src="x" onerror="window.__pwned = 1">',
  "<script>window.__pwned = 2</script>",
  "[click me](javascript:window.__pwned=3)",
  '<a href="#" onclick="window.__pwned = 4">link</a>',
  '<iframe src="data:text/html,<script>parent.__pwned=5</script>"></iframe>',
  "```html\n<script>window.__pwned = 6</script>\n```",
].join("\n\n");

const DEMO_ANSWER = [
  "Here is a small **Deno** server:",
  "",
  "```ts",
  'Deno.serve((req) => new Response("Hello from Shimmy"));',
  "```",
  "",
  "Run it with `deno run --allow-net server.ts`, then open the address it prints.",
].join("\n");

Deno.test({
  name: TEST,
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await buildWebui();
    await using server = await startServer({ load: { ctxSize: 8192 }, settings: { webui: true } });
    const browser: Browser = await launchChromium(chromium!);
    try {
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (error) => pageErrors.push(String(error)));
      await page.setViewport({ width: 1280, height: 800 });

      await t.step("the page loads from the server with its CSP and lists the model", async () => {
        // The server answers each route's first request slower (its code is compiled then): that
        // is the server starting, not the page. Asked once from here, nothing is in the browser's
        // cache, and the paint below is the page's own.
        const html = await (await fetch(`${server.url}/`)).text();
        const assets = [...html.matchAll(/(?:href|src)="(\/webui\/[^"]+)"/g)].map((m) => m[1]);
        equal(assets.length, 2, "the page's stylesheet and script");
        for (const asset of assets) await (await fetch(`${server.url}${asset}`)).arrayBuffer();
        // Likewise Chromium's first page in a fresh process (its renderer starting, fonts and
        // code caches filled): one visit first, then a timed one that fetches and parses all
        // again with the browser's cache off. On a fresh 2-core CI machine the first visit had
        // its first paint after 304-424 ms where later ones take 160-250.
        await page.setCacheEnabled(false);
        await page.goto(`${server.url}/`, { waitUntil: "load" });
        const started = performance.now();
        const response = await page.goto(`${server.url}/`, { waitUntil: "load" });
        const loadMs = performance.now() - started;
        await page.setCacheEnabled(true);
        equal(response?.status(), 200);
        match(response?.headers()["content-security-policy"] ?? "", /script-src 'self'/);
        ok(loadMs < 2000, `loaded in ${Math.round(loadMs)} ms`);
        const paint = await page.waitForFunction(
          `performance.getEntriesByName("first-contentful-paint")[0]?.startTime`,
        );
        const paintMs = await paint.jsonValue() as number;
        ok(paintMs < 300, `first paint after ${paintMs} ms`);
        await page.waitForSelector("#model option[value='tiny-f32']");
        equal(await valueOf(page, "#model"), "tiny-f32");
        match(await page.$eval("#model-status", (e) => e.textContent ?? ""), /Loads|Loaded/);
        equal(
          await page.evaluate("document.activeElement?.id"),
          "prompt",
          "the message box has the focus",
        );
        const unnamed = await page.evaluate(
          `[...document.querySelectorAll("button, select, textarea, input")]
          .filter((e) => !(e.labels?.length || e.getAttribute("aria-label") || e.textContent.trim()))
          .map((e) => e.id || e.outerHTML)`,
        );
        equal((unnamed as string[]).length, 0, `every control has a name: ${unnamed}`);
      });

      await t.step("Shift+Enter adds a line; Enter sends and the answer streams in", async () => {
        await setSettings(page, { system: "", maxTokens: 8000, model: "tiny-f32" });
        await page.focus("#prompt");
        await page.keyboard.type("Hello");
        await page.keyboard.down("Shift");
        await page.keyboard.press("Enter");
        await page.keyboard.up("Shift");
        equal(await page.$$eval(".msg", (all) => all.length), 0, "nothing was sent");
        await page.keyboard.type("there");
        await page.keyboard.press("Enter");
        await page.waitForSelector(".msg.user");
        equal(await page.$eval(".msg.user .body", (e) => e.textContent), "Hello\nthere");
        const lengths: number[] = [];
        for (let i = 0; i < 200 && new Set(lengths.filter((n) => n > 0)).size < 3; i++) {
          lengths.push((await lastAnswer(page)).length);
          await new Promise((r) => setTimeout(r, 50));
        }
        const seen = [...new Set(lengths.filter((n) => n > 0))];
        ok(seen.length >= 3, `the answer grew while streaming: ${seen.join(" → ")}`);
        ok(seen.every((n, i) => i === 0 || n > seen[i - 1]!), "and only grew");
        equal(await page.$eval("#stop", (e) => e.hasAttribute("hidden")), false);
      });

      await t.step("Stop cancels the answer mid-way and the server frees the slot", async () => {
        equal(busySlots(server), 1, "the answer is still being generated");
        await page.click("#stop");
        ok(await waitFor(() => busySlots(server) === 0, 3000), "the slot is free");
        await page.waitForSelector("#send:not([hidden])");
        match(await page.$eval(".msg.assistant .error", (e) => e.textContent ?? ""), /Stopped/);
        ok((await lastAnswer(page)).length > 0, "what came before Stop is kept");
      });

      await t.step("a page reloaded mid-answer reads the answer on from the server", async () => {
        await setSettings(page, { system: "", maxTokens: 1200, model: "tiny-f32" });
        await page.click(".msg.assistant .regenerate");
        await page.waitForFunction(
          `document.querySelector(".msg.assistant .body")?.textContent.length > 20`,
        );
        equal(busySlots(server), 1);
        const before = (await lastAnswer(page)).length;
        await page.reload({ waitUntil: "load" });
        equal(busySlots(server), 1, "the answer went on while the page reloaded");
        await waitForText(page, ".msg.assistant .meta", "t/s");
        match(
          await page.$eval(".msg.assistant .meta", (e) => e.textContent ?? ""),
          /\d+ prompt \+ 1200 tokens/,
          "the whole answer, read again from its first byte",
        );
        ok((await lastAnswer(page)).length > before);
        equal(await page.$$eval(".msg.assistant .error", (all) => all.length), 0);
        equal(busySlots(server), 0);
      });

      await t.step("a finished answer shows its token counts and speed", async () => {
        await setSettings(page, { system: "", maxTokens: 12, model: "tiny-f32" });
        await page.click(".msg.assistant .regenerate");
        await waitForText(page, ".msg.assistant .meta", "t/s");
        const meta = await page.$eval(".msg.assistant .meta", (e) => e.textContent ?? "");
        match(meta, /\d+ prompt \+ 12 tokens/);
        match(meta, /[\d.]+ t\/s/);
        equal(await page.$$eval(".msg", (all) => all.length), 2, "Regenerate replaced the answer");
      });

      await t.step("reloading the page brings the conversation back", async () => {
        const answer = await lastAnswer(page);
        await page.reload({ waitUntil: "load" });
        await page.waitForSelector(".msg.assistant");
        equal(await page.$eval(".msg.user .body", (e) => e.textContent), "Hello\nthere");
        equal(await lastAnswer(page), answer);
        const titles = await page.$$eval(
          "#conversations .title",
          (all) => all.map((e) => e.textContent),
        );
        equal(titles[0], "Hello\nthere");
      });

      await t.step(
        "Edit puts a message back in the box and resending replaces the rest",
        async () => {
          await page.click(".msg.user .edit");
          equal(await valueOf(page, "#prompt"), "Hello\nthere");
          equal(await page.$$eval(".msg", (all) => all.length), 0);
          await page.evaluate(`document.querySelector("#prompt").value = ""`);
          await send(page, "Edited");
          await page.waitForSelector("#send:not([hidden])");
          await waitForText(page, ".msg.assistant .meta", "t/s");
          equal(await page.$eval(".msg.user .body", (e) => e.textContent), "Edited");
        },
      );

      await t.step("the settings panel sets max tokens and the system prompt", async () => {
        await page.click("#open-settings");
        await page.waitForSelector("#settings[open]");
        await page.evaluate(`document.querySelector("#set-max-tokens").value = ""`);
        await page.type("#set-max-tokens", "5");
        await page.type("#set-system", "Be brief.");
        await page.click("#save-settings");
        await page.waitForSelector("#settings:not([open])");
        await page.click(".msg.assistant .regenerate");
        await waitForText(page, ".msg.assistant .meta", "t/s");
        match(await page.$eval(".msg.assistant .meta", (e) => e.textContent ?? ""), /\+ 5 tokens/);
        const stored = await page.evaluate(`JSON.parse(localStorage.getItem("shimmy.settings"))`);
        equal((stored as { system: string }).system, "Be brief.");
      });

      await t.step(
        "a conversation too long for the context shows the error and the fix",
        async () => {
          await page.click("#new-chat");
          await page.evaluate(`document.querySelector("#prompt").value = "word ".repeat(9000)`);
          await page.focus("#prompt");
          await page.keyboard.press("Enter");
          await page.waitForSelector(".msg.assistant .error");
          const error = await page.$eval(".msg.assistant .error", (e) => e.textContent ?? "");
          match(error, /context/i);
          match(error, /Start a new chat, edit an earlier message .* larger --ctx-size/);
          equal(busySlots(server), 0);
        },
      );

      await t.step("conversations can be renamed, exported and deleted", async () => {
        const dialogs: string[] = [];
        const onDialog = (dialog: Dialog) => {
          dialogs.push(dialog.type());
          void (dialog.type() === "prompt" ? dialog.accept("Renamed chat") : dialog.accept());
        };
        page.on("dialog", onDialog);
        const titles = () =>
          page.$$eval("#conversations .title", (all) => all.map((e) => e.textContent));
        const before = await titles();
        equal(before.length, 2);
        await page.click("#conversations li:last-child .small");
        await page.waitForFunction(
          `[...document.querySelectorAll("#conversations .title")].some((e) => e.textContent === "Renamed chat")`,
        );
        const downloads = await Deno.makeTempDir({ prefix: "shimmy-webui-" });
        const cdp = await page.createCDPSession();
        await cdp.send("Browser.setDownloadBehavior", {
          behavior: "allow",
          downloadPath: downloads,
        });
        await page.click("#export");
        // Chromium can create the file before it has written it: wait until it parses.
        let exported: { title: string }[] | undefined;
        const readExport = () => {
          const file = [...Deno.readDirSync(downloads)].find((e) => e.name.endsWith(".json"));
          if (!file) return false;
          try {
            exported = JSON.parse(Deno.readTextFileSync(join(downloads, file.name)));
            return true;
          } catch {
            return false; // still being written
          }
        };
        ok(await waitFor(readExport, 5000), "the export was downloaded");
        if (!exported) throw new Error("unreachable: the export was read");
        equal(exported.length, 2);
        ok(exported.some((c) => c.title === "Renamed chat"));
        await Deno.remove(downloads, { recursive: true });
        await page.click("#conversations li:first-child .small:last-child");
        await page.waitForFunction(`document.querySelectorAll("#conversations li").length === 1`);
        deepEqual(dialogs, ["prompt", "confirm"]);
        page.off("dialog", onDialog);
      });

      await t.step("HTML and script in model output are rendered inert", async () => {
        await page.evaluate(
          (conversation) => {
            localStorage.setItem("shimmy.conversations", JSON.stringify([conversation]));
            localStorage.setItem("shimmy.current", conversation.id);
          },
          storedConversation("hostile", "Hostile", [
            { role: "user", content: '<b>bold?</b> <img src=x onerror="window.__pwned = 7">' },
            { role: "assistant", content: HOSTILE },
          ]),
        );
        await page.reload({ waitUntil: "load" });
        await page.waitForSelector(".msg.assistant");
        await new Promise((r) => setTimeout(r, 200));
        const found = await page.$eval("#messages", (root) => ({
          scripts: root.querySelectorAll("script, iframe").length,
          handlers: [...root.querySelectorAll("*")].flatMap((e) =>
            [...e.attributes].filter((a) => a.name.startsWith("on")).map((a) => a.name)
          ),
          jsLinks: [...root.querySelectorAll("a")].filter((a) =>
            a.getAttribute("href")?.startsWith("javascript:")
          ).length,
          links: [...root.querySelectorAll("a[href]")].map((a) =>
            a.getAttribute("rel")
          ),
          userImages: root.querySelectorAll(".msg.user img").length,
          userText: root.querySelector(".msg.user .body")?.textContent,
          code: root.querySelector(".msg.assistant pre code")?.textContent,
        }));
        equal(found.scripts, 0, "no script or iframe element");
        equal(found.handlers.length, 0, `no event handler attributes: ${found.handlers}`);
        equal(found.jsLinks, 0, "no javascript: links");
        ok(
          found.links.length > 0 && found.links.every((rel) => rel === "noopener noreferrer"),
          `links: ${found.links}`,
        );
        equal(found.userImages, 0, "the person's text is shown as text");
        match(found.userText ?? "", /<b>bold\?<\/b>/);
        match(found.code ?? "", /<script>window.__pwned = 6<\/script>/, "code shows as text");
        await page.click(".msg.assistant a").catch(() => {});
        // Even HTML put straight into the DOM cannot run: the CSP forbids inline code.
        await page.evaluate(
          `document.body.insertAdjacentHTML("beforeend", '<img src="x" onerror="window.__pwned=8">')`,
        );
        await new Promise((r) => setTimeout(r, 200));
        equal(await page.evaluate(() => (window as { __pwned?: number }).__pwned), undefined);
      });

      await t.step("screenshots: desktop and phone, light and dark", async () => {
        await page.evaluate((conversations) => {
          localStorage.setItem("shimmy.conversations", JSON.stringify(conversations));
          localStorage.setItem("shimmy.current", "demo");
        }, [
          storedConversation("demo", "A tiny web server", [
            { role: "user", content: "How do I write a tiny web server in Deno?" },
            {
              role: "assistant",
              content: DEMO_ANSWER,
              reasoning: "The person wants the shortest working example.",
              stats: { promptTokens: 31, completionTokens: 58, tokensPerSecond: 212.4 },
            },
          ]),
          storedConversation("older", "Explain KV caches", [
            { role: "user", content: "Explain KV caches" },
          ]),
        ]);
        await Deno.mkdir(SCREENSHOTS, { recursive: true });
        for (const scheme of ["light", "dark"] as const) {
          await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: scheme }]);
          for (const [device, width, height] of [["desktop", 1280, 800], ["phone", 390, 844]]) {
            await page.setViewport({ width: width as number, height: height as number });
            await page.reload({ waitUntil: "load" });
            await page.waitForSelector(".msg.assistant pre .copy");
            ok(await page.$(".msg.assistant details:not([open]) summary"), "reasoning is folded");
            await page.evaluate(`document.querySelector("#prompt").blur()`);
            const path = join(SCREENSHOTS, `chat-${device}-${scheme}.png`);
            await page.screenshot({ path: path as `${string}.png` });
            ok(Deno.statSync(path).size > 5000, path);
          }
        }
        // On a phone the conversation list folds behind the ☰ button.
        equal(await page.$eval("#sidebar", (e) => e.checkVisibility()), false);
        await page.click("#toggle-sidebar");
        equal(await page.$eval("#sidebar", (e) => e.checkVisibility()), true);
        await page.click("#conversations li:last-child .title");
        equal(await page.$eval("#sidebar", (e) => e.checkVisibility()), false);
        equal(await page.$eval(".msg.user .body", (e) => e.textContent), "Explain KV caches");
        await page.emulateMediaFeatures([]);
        await page.setViewport({ width: 1280, height: 800 });
      });

      await t.step("Copy puts a code block's text on the clipboard", async () => {
        await browser.defaultBrowserContext().overridePermissions(server.url, [
          "clipboard-read",
          "clipboard-write",
          "clipboard-sanitized-write",
        ]);
        await page.evaluate(`localStorage.setItem("shimmy.current", "demo")`);
        await page.reload({ waitUntil: "load" });
        await page.waitForSelector(".msg.assistant pre .copy");
        await page.click(".msg.assistant pre .copy");
        await waitForText(page, ".msg.assistant pre .copy", "Copied");
        equal(
          await page.evaluate("navigator.clipboard.readText()"),
          'Deno.serve((req) => new Response("Hello from Shimmy"));\n',
        );
      });

      equal(pageErrors.length, 0, `no errors on the page: ${pageErrors.join("; ")}`);
    } finally {
      await browser.close();
    }
  },
});

Deno.test({
  name: "the chat page asks for the API key, keeps it in the browser and then chats",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await buildWebui();
    await using server = await startServer({ settings: { webui: true, apiKey: "sekret" } });
    const browser = await launchChromium(chromium!);
    try {
      const page = await browser.newPage();
      await page.goto(`${server.url}/`, { waitUntil: "load" });
      await page.waitForSelector("#key-dialog[open]");
      equal(await page.$$eval("#model option", (all) => all.length), 0, "no models without it");
      await page.type("#key-input", "wrong");
      await page.keyboard.press("Enter");
      await waitForText(page, "#key-error", "refused");
      ok(await page.$("#key-dialog[open]"), "a wrong key asks again");
      await page.type("#key-input", "sekret");
      await page.keyboard.press("Enter");
      await page.waitForSelector("#model option[value='tiny-f32']");
      equal(await page.$("#key-dialog[open]"), null);
      equal(await page.evaluate(() => localStorage.getItem("shimmy.apiKey")), "sekret");
      await setSettings(page, { system: "", maxTokens: 8, model: "tiny-f32" });
      await send(page, "Hi");
      await waitForText(page, ".msg.assistant .meta", "8 tokens");
      equal(await page.$(".msg.assistant .error"), null, "the answer came with the key");
      await page.reload({ waitUntil: "load" });
      await page.waitForSelector("#model option[value='tiny-f32']");
      equal(await page.$("#key-dialog[open]"), null, "the kept key is used after a reload");
    } finally {
      await browser.close();
    }
  },
});
