import { deepEqual, equal, ok } from "node:assert/strict";
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

/**
 * The stop-string rules spelled out naively: stop at the stop string that starts first in the
 * pending text (the first listed on a tie), else hold back the longest end of it that begins one.
 */
class NaiveStops {
  #pending = "";
  #done = false;
  constructor(readonly stops: string[]) {}

  push(piece: string, final = false): { text: string; stop?: string; stopBytes?: number } {
    if (this.#done) return { text: "" };
    this.#pending += piece;
    let first: { at: number; stop: string } | undefined;
    for (const stop of this.stops) {
      const at = this.#pending.indexOf(stop);
      if (at >= 0 && (first === undefined || at < first.at)) first = { at, stop };
    }
    if (first) {
      this.#done = true;
      const stopBytes = bytes(this.#pending.slice(first.at)).length;
      return { text: this.#pending.slice(0, first.at), stop: first.stop, stopBytes };
    }
    let hold = 0;
    for (const stop of this.stops) {
      for (let n = 1; n < stop.length && !final; n++) {
        if (this.#pending.endsWith(stop.slice(0, n))) hold = Math.max(hold, n);
      }
    }
    const text = this.#pending.slice(0, this.#pending.length - hold);
    this.#pending = this.#pending.slice(this.#pending.length - hold);
    return { text };
  }
}

/** A seeded generator of numbers in [0, 1) (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("TextStream releases and stops exactly like the naive rules on random texts and stop strings", () => {
  const next = random(20240611);
  const word = (max: number) => {
    let s = "";
    for (let n = Math.floor(next() * max); n >= 0; n--) s += "abé"[Math.floor(next() * 3)];
    return s;
  };
  for (let round = 0; round < 3000; round++) {
    const stops = Array.from({ length: 1 + Math.floor(next() * 4) }, () => word(5));
    const stream = new TextStream(stops);
    const naive = new NaiveStops(stops);
    for (let piece = 0; piece < 20; piece++) {
      const text = next() < 0.1 ? "" : word(4);
      deepEqual(stream.push(bytes(text)), naive.push(text), `stops ${stops}, round ${round}`);
    }
    deepEqual(stream.flush(), naive.push("", true), `stops ${stops}, round ${round}`);
  }
});

Deno.test("TextStream holds back 1,023 characters of 16 long stop strings at a constant cost a token", () => {
  // Finding the held-back length by comparing every stop-string prefix with the end of the text
  // cost 30 to 40 ms a token here; a matcher state per stop string makes it microseconds.
  const stops = [...Array(15).fill("x".repeat(512) + "z".repeat(512)), "x".repeat(1023) + "y"];
  const stream = new TextStream(stops);
  equal(stream.push(bytes("x".repeat(1023))).text, "");
  const started = performance.now();
  let released = "";
  for (let i = 0; i < 200; i++) released += stream.push(bytes("x")).text;
  const ms = performance.now() - started;
  ok(ms < 500, `200 tokens took ${Math.round(ms)} ms`);
  equal(released, "x".repeat(200));
  deepEqual(stream.push(bytes("y")), { text: "", stop: stops[15], stopBytes: 1024 });
});
