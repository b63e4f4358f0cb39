import { deepEqual, equal } from "node:assert/strict";
import { TextStream } from "../../src/engine/text_stream.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

function pushAll(stream: TextStream, pieces: Uint8Array[]): string[] {
  return pieces.map((p) => stream.push(p).text);
}

Deno.test("TextStream emits a multi-byte character only once its last byte arrives", () => {
  const euro = bytes("€"); // e2 82 ac
  const stream = new TextStream();
  deepEqual(pushAll(stream, [euro.subarray(0, 1), euro.subarray(1, 2), euro.subarray(2)]), [
    "",
    "",
    "€",
  ]);
  const emoji = bytes("a😀b");
  const split = new TextStream();
  equal(pushAll(split, [...emoji].map((b) => new Uint8Array([b]))).join(""), "a😀b");
});

Deno.test("TextStream holds back a possible stop-string prefix and never emits the stop string", () => {
  const stream = new TextStream(["</end>"]);
  equal(stream.push(bytes("hello </")).text, "hello ");
  equal(stream.push(bytes("en")).text, "");
  const last = stream.push(bytes("d> ignored"));
  deepEqual(last, { text: "", stop: "</end>", stopBytes: "</end> ignored".length });
  equal(stream.stoppedBy, "</end>");
  equal(stream.push(bytes("more")).text, "");
});

Deno.test("TextStream releases a held-back prefix when it turns out not to be a stop string", () => {
  const stream = new TextStream(["STOP"]);
  equal(stream.push(bytes("ST")).text, "");
  equal(stream.push(bytes("ART")).text, "START");
  equal(stream.push(bytes(" S")).text, " ");
  deepEqual(stream.flush(), { text: "S" });
});

Deno.test("TextStream stops at the earliest of several stop strings, even inside one piece", () => {
  const stream = new TextStream(["bb", "a"]);
  deepEqual(stream.push(bytes("xxbbya")), { text: "xx", stop: "bb", stopBytes: 4 });
  const cyrillic = new TextStream(["ж"]);
  // The bytes from the stop string on, in UTF-8: what the tokens that brought them spanned.
  deepEqual(cyrillic.push(bytes("сложно")), { text: "сло", stop: "ж", stopBytes: 6 });
});

Deno.test("TextStream.flush() turns an incomplete character into U+FFFD", () => {
  const stream = new TextStream();
  equal(stream.push(bytes("€").subarray(0, 2)).text, "");
  equal(stream.flush().text, "\uFFFD");
});

Deno.test("TextStream with minIndent ends where a later line is indented less, keeping its indentation", () => {
  const pieces = ["def f(x):", "\n    y = 1\n", "    ", "\t", "return y\n", "  ", "z = 2\n"];
  const stream = new TextStream([], { minIndent: 4 });
  const out = pieces.map((p) => stream.push(bytes(p)));
  equal(out.map((c) => c.text).join(""), "def f(x):\n    y = 1\n    \treturn y\n  ");
  deepEqual(out.at(-1), { text: "", underIndented: true });
  equal(stream.stoppedBy, undefined);
  deepEqual(stream.push(bytes("more")), { text: "" });
  deepEqual(stream.flush(), { text: "" });
});

Deno.test("TextStream with minIndent: the first line is free, an empty later line ends it, a stop string before the cut still stops", () => {
  const first = new TextStream([], { minIndent: 2 });
  deepEqual(first.push(bytes("x = 1")), { text: "x = 1" });
  deepEqual(first.push(bytes("\n\nmore")), { text: "\n", underIndented: true });
  const stopped = new TextStream(["STOP"], { minIndent: 2 });
  deepEqual(stopped.push(bytes("a\n  bSTOP\nc")), { text: "a\n  b", stop: "STOP", stopBytes: 6 });
  const cutFirst = new TextStream(["STOP"], { minIndent: 2 });
  deepEqual(cutFirst.push(bytes("a\nbSTOP")), { text: "a\n", underIndented: true });
  equal(cutFirst.stoppedBy, undefined);
  const none = new TextStream();
  equal(none.push(bytes("a\nb\n")).text, "a\nb\n");
});
