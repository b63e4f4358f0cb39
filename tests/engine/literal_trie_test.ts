import { equal, ok } from "node:assert/strict";
import { validateGrammar } from "../../src/engine/gbnf.ts";
import { literalTrie } from "../../src/engine/structured/literal_trie.ts";
import { GbnfMatcher } from "./gbnf_matcher.ts";

/** A grammar whose root is the trie of `entries`, with its branch rules. */
function trieGrammar(entries: { text: string; tail: string }[]): string {
  const rules: string[] = [];
  const addRule = (body: string) => {
    rules.push(`b${rules.length} ::= ${body}`);
    return `b${rules.length - 1}`;
  };
  return [`root ::= ${literalTrie(entries, addRule)}`, ...rules].join("\n") + "\n";
}

Deno.test("literalTrie matches each text with its own tail, and nothing else", () => {
  const grammar = trieGrammar([
    { text: "get_weather(", tail: '[a-z]+ ")"' },
    { text: "get_time(", tail: '")"' },
    { text: "get", tail: '"!"' },
    { text: "set_x", tail: "" },
    { text: 'ünï"\\', tail: '"."' },
  ]);
  validateGrammar(grammar);
  const matcher = new GbnfMatcher(grammar);
  for (const text of ["get_weather(paris)", "get_time()", "get!", "set_x", 'ünï"\\.']) {
    ok(matcher.matches(text), text);
  }
  for (const text of ["get_weather()", "get_time(x)", "get", "get_", "set_x!", "ünï", "get!)"]) {
    ok(!matcher.matches(text), text);
  }
});

Deno.test("literalTrie spells a shared beginning once", () => {
  const grammar = trieGrammar(
    Array.from({ length: 100 }, (_, i) => ({ text: `{"name": "tool_${i}", `, tail: '"}"' })),
  );
  equal(grammar.split("tool_").length - 1, 1, grammar.slice(0, 200));
  // A stack per next character where the names part (eleven), where a stack per name made 100.
  equal(validateGrammar(grammar).stackFanout, 11);
  ok(new GbnfMatcher(grammar).matches('{"name": "tool_42", }'));
  ok(!new GbnfMatcher(grammar).matches('{"name": "tool_100", }'));
});
