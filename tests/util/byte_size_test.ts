import { equal } from "node:assert/strict";
import { formatByteSize, parseByteSize } from "../../src/util/byte_size.ts";

Deno.test("byte sizes are read as bytes, binary units in 1024s and decimal units in 1000s", () => {
  const sizes: [string, number][] = [
    ["1048576", 1048576],
    ["0", 0],
    ["512MiB", 512 * 2 ** 20],
    ["4GiB", 4 * 2 ** 30],
    ["4gib", 4 * 2 ** 30],
    ["4G", 4 * 2 ** 30],
    ["10GB", 10e9],
    ["10 GB", 10e9],
    [" 2kb ", 2000],
    ["2K", 2048],
    ["1.5MiB", 1.5 * 2 ** 20],
    [".5KiB", 512],
    ["1TiB", 2 ** 40],
    ["3TB", 3e12],
    ["7B", 7],
    ["1.9B", 1],
  ];
  for (const [text, bytes] of sizes) equal(parseByteSize(text), bytes, text);
});

Deno.test("text that is not a byte size, or a size past 2^53 bytes, is read as none", () => {
  for (const text of ["", "GiB", "-1", "-1GiB", "1e9", "0x10", "10XB", "10 G B", "1,5GB", "ten"]) {
    equal(parseByteSize(text), undefined, text);
  }
  equal(parseByteSize("constructor"), undefined, "no prototype keys as units");
  equal(parseByteSize("9000TiB"), undefined, "beyond 2^53 bytes");
  equal(parseByteSize("99999999999999999999"), undefined);
});

Deno.test("byte counts are written in binary units with one decimal", () => {
  equal(formatByteSize(0), "0 B");
  equal(formatByteSize(1023), "1023 B");
  equal(formatByteSize(1536), "1.5 KiB");
  equal(formatByteSize(40 * 2 ** 20), "40.0 MiB");
  equal(formatByteSize(10 * 2 ** 30), "10.0 GiB");
  equal(formatByteSize(3 * 2 ** 50), "3072.0 TiB");
});
