import { equal, match } from "node:assert/strict";
import { plainFileNameProblem } from "../../src/util/plain_file_name.ts";

Deno.test("slot file names are plain names inside the folder, the same on every OS", () => {
  for (const name of ["chat.bin", "agent system prompt v2", "é-ü.cache", ".hidden", "a.b.c"]) {
    equal(plainFileNameProblem(name), undefined, name);
  }
  const refused: [string, RegExp][] = [
    ["", /empty/],
    ["a".repeat(256), /255 bytes/],
    ["é".repeat(128), /255 bytes/],
    ["../up", /"\/"/],
    ["a/b", /"\/"/],
    ["a\\b", /"\\\\"/],
    ["c:x", /":"/],
    ["what?", /"\?"/],
    ['say"', /"\\""/],
    ["a|b", /"\|"/],
    ["tab\there", /"\\t"/],
    ["nul\u0000", /"\\u0000"/],
    ["c1\u0085", /"\u0085"/],
    ["full\uff0estop", /"\uff0e"/],
    ["slash\u2215", /"\u2215"/],
    ["\ufeffbom", /"\ufeff"/],
    ["lone\ud800", /surrogate/],
    [" lead", /space/],
    ["trail ", /space/],
    ["trail.", /dot/],
    [".", /dot/],
    ["a..b", /"\.\."/],
  ];
  for (const [name, why] of refused) {
    const problem = plainFileNameProblem(name);
    match(problem ?? "accepted", why, JSON.stringify(name));
  }
});
