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
  deepEqual(last, { text: "", stop: "</end>" });
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
  deepEqual(stream.push(bytes("xxbbya")), { text: "xx", stop: "bb" });
});

Deno.test("TextStream.flush() turns an incomplete character into U+FFFD", () => {
  const stream = new TextStream();
  equal(stream.push(bytes("€").subarray(0, 2)).text, "");
  equal(stream.flush().text, "\uFFFD");
});
