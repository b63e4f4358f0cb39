/**
 * Grammar benchmark: decode tokens per second with and without a grammar, on the same model,
 * prompt and sampler settings, greedy and sampled. The engine runs in-process (a model
 * registry and its scheduler, no HTTP). The constrained runs use a JSON schema converted by
 * the structured-output converter (an array of records with strings, enums, integer ranges,
 * dates and a pattern), `json_object` (any JSON object), a grammar of any text (whose every
 * pick is allowed, like a model that follows the format it is asked for), and one of lowercase
 * words (many picks refused, the best allowed token near each). A constrained run ends
 * when its grammar is complete, so its token count varies; the table shows the tokens each run
 * made, and the share of picks the grammar refused (each narrowed every candidate for a second
 * pick, see `src/ffi/grammar_check.ts`). This is a benchmark, not a test: it asserts nothing
 * about speed.
 *
 * ```sh
 * deno run -A bench/grammar_bench.ts                      # bench-125m, 128 tokens, 3 rounds
 * deno run -A bench/grammar_bench.ts --model m.gguf --tokens 256 --reps 5
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { basename } from "node:path";
import { ModelRegistry } from "../src/models/registry.ts";
import { rawPrompt } from "../src/engine/prompt.ts";
import type { SamplingParams } from "../src/engine/sampling.ts";
import { jsonObjectGrammar, jsonSchemaToGrammar } from "../src/engine/structured/json_schema.ts";
import { fixtureModel } from "../tests/fixtures/models.ts";

/** Usage text of the benchmark. */
export const GRAMMAR_BENCH_USAGE = `Usage: deno run -A bench/grammar_bench.ts [options]

Prints decode tok/s of one model with no grammar, with a JSON schema, with json_object, with a
grammar of any text and with one of lowercase words, greedy and sampled, the ratio to the unconstrained run, and the share of
picks the grammar refused.

Options:
  --model PATH   GGUF model (default: the generated bench-125m fixture)
  --tokens N     most tokens per generation (default 128)
  --reps N       generations per case; the table shows the median (default 3)
  --help         this text

Examples:
  deno run -A bench/grammar_bench.ts
  deno run -A bench/grammar_bench.ts --model ./models/qwen2.5-0.5b-q8_0.gguf --tokens 256`;

/** The schema of the constrained runs: long enough to take many tokens, bounded to end. */
export const BENCH_SCHEMA = {
  type: "array",
  minItems: 4,
  maxItems: 8,
  items: {
    type: "object",
    properties: {
      name: { type: "string", maxLength: 24 },
      kind: { enum: ["book", "film", "song", "game"] },
      year: { type: "integer", minimum: 1900, maximum: 2030 },
      released: { type: "string", format: "date" },
      code: { type: "string", pattern: "^[A-Z]{2}-\\d{4}$" },
      score: { type: "number", minimum: 0, maximum: 10 },
    },
    required: ["name", "kind", "year", "released", "code", "score"],
    additionalProperties: false,
  },
};

const PROMPT = "Here is a list of things, as JSON:";

/** Any text: the grammar allows every pick but those of tokens with no text. */
const ANY_TEXT_GRAMMAR = "root ::= [\\x01-\\U0010FFFF]*";

/**
 * Lowercase words: many tokens allowed, many not, so a model with random weights strays often
 * while its best allowed token is close to its pick (as a model that mostly follows a format).
 */
const WORDS_GRAMMAR = "root ::= [a-z ]*";

/** One measured case. */
interface Case {
  label: string;
  grammar: string | undefined;
  sampling: SamplingParams;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/**
 * Runs the benchmark.
 *
 * @param args Command-line arguments.
 * @returns The exit code.
 */
export async function main(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        model: { type: "string" },
        tokens: { type: "string", default: "128" },
        reps: { type: "string", default: "3" },
        help: { type: "boolean", default: false },
      },
    }));
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : error}\n\n${GRAMMAR_BENCH_USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(GRAMMAR_BENCH_USAGE);
    return 0;
  }
  const maxTokens = Number(values.tokens);
  const reps = Number(values.reps);
  if (!Number.isInteger(maxTokens) || maxTokens < 1 || !Number.isInteger(reps) || reps < 1) {
    console.error("--tokens and --reps must be positive integers");
    return 1;
  }
  const path = values.model ?? await fixtureModel("bench-125m");
  const registry = new ModelRegistry([
    { name: "bench", path, source: "bench", sizeBytes: Deno.statSync(path).size },
  ], { parallel: 1 });
  try {
    using lease = await registry.acquire("bench");
    const loaded = lease.model;
    const prompt = (await rawPrompt(loaded.model, PROMPT)).tokens;
    const schema = jsonSchemaToGrammar(BENCH_SCHEMA);
    const object = jsonObjectGrammar();
    const greedy: SamplingParams = { temperature: 0 };
    const sampled: SamplingParams = { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, seed: 1 };
    const cases: Case[] = [
      { label: "free, greedy", grammar: undefined, sampling: greedy },
      { label: "schema, greedy", grammar: schema, sampling: greedy },
      { label: "json_object, greedy", grammar: object, sampling: greedy },
      { label: "any text, greedy", grammar: ANY_TEXT_GRAMMAR, sampling: greedy },
      { label: "words, greedy", grammar: WORDS_GRAMMAR, sampling: greedy },
      { label: "free, sampled", grammar: undefined, sampling: sampled },
      { label: "schema, sampled", grammar: schema, sampling: sampled },
      { label: "json_object, sampled", grammar: object, sampling: sampled },
      { label: "any text, sampled", grammar: ANY_TEXT_GRAMMAR, sampling: sampled },
      { label: "words, sampled", grammar: WORDS_GRAMMAR, sampling: sampled },
    ];
    console.log(`model ${basename(path)}, up to ${maxTokens} tokens, median of ${reps}\n`);
    const rows: string[][] = [["case", "tokens", "tok/s", "vs free", "refused"]];
    const free = new Map<string, number>();
    for (const c of cases) {
      const speeds: number[] = [];
      const counts: number[] = [];
      const before = loaded.scheduler.stats();
      for (let i = 0; i < reps + 1; i++) {
        const generation = loaded.scheduler.submit({
          prompt,
          maxTokens,
          sampling: { ...c.sampling, ...(c.grammar ? { grammar: c.grammar } : {}) },
          ignoreEos: c.grammar === undefined,
        });
        for await (const _ of generation) { /* the result has the timings */ }
        const result = await generation.result;
        if (i === 0) continue; // warm-up
        speeds.push(result.timings.generatePerSecond);
        counts.push(result.completionTokens);
      }
      const after = loaded.scheduler.stats();
      const picks = after.grammarTokens - before.grammarTokens;
      const refused = after.grammarRefusals - before.grammarRefusals;
      const speed = median(speeds);
      const kind = c.label.split(", ")[1]!;
      if (c.grammar === undefined) free.set(kind, speed);
      const base = free.get(kind);
      rows.push([
        c.label,
        String(median(counts)),
        speed > 0 ? speed.toFixed(1) : "-",
        base && speed > 0 ? `${(speed / base).toFixed(2)}x` : "",
        picks > 0 ? `${Math.round((100 * refused) / picks)}%` : "",
      ]);
    }
    const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => r[col]!.length)));
    for (const row of rows) {
      console.log(
        row.map((cell, col) => col === 0 ? cell.padEnd(widths[col]!) : cell.padStart(widths[col]!))
          .join("  "),
      );
    }
    return 0;
  } finally {
    await registry.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
