import { equal, match, ok } from "node:assert/strict";
import { buildWebui } from "../../scripts/build_webui.ts";
import { WEBUI_CSP } from "../../src/server/webui.ts";
import { startServer } from "./harness.ts";

const { files } = await buildWebui();
const [, script, style] = files;

Deno.test("GET / serves the chat page with a strict Content-Security-Policy and no caching", async () => {
  await using server = await startServer({ settings: { webui: true } });
  const response = await fetch(`${server.url}/`);
  equal(response.status, 200);
  equal(response.headers.get("content-type"), "text/html; charset=utf-8");
  equal(response.headers.get("content-security-policy"), WEBUI_CSP);
  match(WEBUI_CSP, /script-src 'self'(;|$)/);
  ok(!/unsafe|https?:|\*/.test(WEBUI_CSP), WEBUI_CSP);
  equal(response.headers.get("cache-control"), "no-cache");
  equal(response.headers.get("x-content-type-options"), "nosniff");
  const html = await response.text();
  ok(html.includes(`src="/webui/${script}"`), "the page loads its hashed script");
  ok(html.includes(`href="/webui/${style}"`), "the page loads its hashed style sheet");
  ok(!/<script>|<style>| on\w+=/i.test(html), "the page has no inline code");
});

Deno.test("the page's hashed assets have their content types and are cached for good", async () => {
  await using server = await startServer({ settings: { webui: true } });
  for (const [name, type] of [[script, "text/javascript"], [style, "text/css"]]) {
    const response = await fetch(`${server.url}/webui/${name}`);
    equal(response.status, 200, name);
    equal(response.headers.get("content-type"), `${type}; charset=utf-8`);
    equal(response.headers.get("cache-control"), "public, max-age=31536000, immutable");
    ok((await response.arrayBuffer()).byteLength > 100);
  }
});

Deno.test("the page answers 304 to a current ETag, HEAD without a body, and 404 to POST", async () => {
  await using server = await startServer({ settings: { webui: true } });
  const first = await fetch(`${server.url}/`);
  await first.body?.cancel();
  const etag = first.headers.get("etag")!;
  const again = await fetch(`${server.url}/`, { headers: { "if-none-match": etag } });
  equal(again.status, 304);
  await again.body?.cancel();
  const head = await fetch(`${server.url}/`, { method: "HEAD" });
  equal(head.status, 200);
  equal(await head.text(), "");
  const post = await fetch(`${server.url}/`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  equal(post.status, 404);
  await post.body?.cancel();
});

Deno.test("unknown files under /webui/ and the raw index.html are 404s", async () => {
  await using server = await startServer({ settings: { webui: true } });
  for (const path of ["/webui/nope.js", "/webui/index.html", "/webui/..%2Fdeno.json"]) {
    const response = await fetch(`${server.url}${path}`);
    equal(response.status, 404, path);
    await response.body?.cancel();
  }
});

Deno.test("with --no-webui, / is a 404 as before", async () => {
  await using server = await startServer({ settings: { webui: false } });
  const response = await fetch(`${server.url}/`);
  equal(response.status, 404);
  await response.body?.cancel();
});

Deno.test("with an API key the page loads without it, but the API it calls still needs it", async () => {
  await using server = await startServer({ settings: { webui: true, apiKey: "sekret" } });
  const page = await fetch(`${server.url}/`);
  equal(page.status, 200);
  await page.body?.cancel();
  for (const path of ["/v1/models", "/webui/nope.js"]) {
    const response = await fetch(`${server.url}${path}`);
    equal(response.status, 401, `${path} needs the key`);
    await response.body?.cancel();
  }
  const post = await fetch(`${server.url}/`, { method: "POST", body: "{}" });
  equal(post.status, 401, "only GET and HEAD of the page's files are public");
  await post.body?.cancel();
});

Deno.test("the page obeys the Host rule like every route", async () => {
  await using server = await startServer({ settings: { webui: true } });
  const { port } = new URL(server.url);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"));
  const buffer = new Uint8Array(256);
  const n = await conn.read(buffer);
  conn.close();
  match(new TextDecoder().decode(buffer.subarray(0, n ?? 0)), /^HTTP\/1\.1 403/);
});

Deno.test("the Ollama listener's root stays Ollama's liveness check", async () => {
  await using server = await startServer({ settings: { webui: true }, ollamaListener: true });
  const response = await fetch(`${server.ollamaUrl}/`);
  equal(response.status, 200);
  ok(!(await response.text()).includes("<html"), "not the chat page");
});
