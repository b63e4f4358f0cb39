/**
 * llama-server's `samplers` field: which stages of the chain run, in which order, as names
 * (`["top_k", "top_p", "infill"]`, case-insensitive, with llama.cpp's spellings `top-k`, `topk`,
 * `nucleus`, `temp`, `typ`…) or as one letter each (`"kpit"`). A setting the request makes
 * whose stage the list leaves out would do nothing, so it is a 400, as are unknown names and
 * `samplers` with Mirostat (whose draw replaces the list). Two names of samplers that do nothing
 * here are accepted as no stage: `tfs_z` (dropped from llama.cpp; `tfs_z` itself is accepted
 * only as 1) and `adaptive_p` (without `adaptive_target`, llama.cpp's plain draw). `infill` gets
 * at most `INFILL_MAX_CANDIDATES` (1,000) candidates whatever the list: the chain puts a top-k of
 * that many right before it where no smaller top-k runs first (see `samplerStages`).
 *
 * @module
 */

import type { SamplerName, SamplingParams } from "../engine/sampling.ts";
import { badRequest } from "./http_error.ts";
import type { Fields } from "./request_body.ts";

/** Each stage's canonical name, and the letter llama.cpp gives it. */
const STAGE_LETTERS: Readonly<Record<SamplerName, string>> = {
  penalties: "e",
  dry: "d",
  top_n_sigma: "s",
  top_k: "k",
  typ_p: "y",
  top_p: "p",
  min_p: "m",
  xtc: "x",
  temperature: "t",
  infill: "i",
};

/** Names (and the letter) of samplers that do nothing here: accepted, no stage. */
const NO_STAGE = new Set(["tfs_z", "tfs", "adaptive_p", "adaptive-p", "adaptivep"]);
const NO_STAGE_LETTER = "a";

/** Every spelling llama.cpp accepts (and `typical_p`, Shimmy's field's name), lowercase. */
const SPELLINGS: ReadonlyMap<string, SamplerName> = new Map([
  ...(Object.keys(STAGE_LETTERS) as SamplerName[]).flatMap((name) =>
    [name, name.replaceAll("_", "-"), name.replaceAll("_", "")].map((s) => [s, name] as const)
  ),
  ["nucleus", "top_p"],
  ["temp", "temperature"],
  ["typ", "typ_p"],
  ["typical_p", "typ_p"],
]);

/** The request settings each stage reads: set to a value that acts, they need their stage. */
const STAGE_SETTINGS: readonly [SamplerName, string, (s: SamplingParams) => boolean][] = [
  ["penalties", "repeat_penalty", (s) => s.repeatPenalty !== undefined && s.repeatPenalty !== 1],
  ["penalties", "frequency_penalty", (s) => (s.frequencyPenalty ?? 0) !== 0],
  ["penalties", "presence_penalty", (s) => (s.presencePenalty ?? 0) !== 0],
  ["dry", "dry_multiplier", (s) => (s.dryMultiplier ?? 0) > 0],
  ["top_n_sigma", "top_n_sigma", (s) => (s.topNSigma ?? 0) > 0],
  ["top_k", "top_k", (s) => (s.topK ?? 0) > 0],
  ["typ_p", "typical_p", (s) => (s.typicalP ?? 1) < 1],
  ["top_p", "top_p", (s) => (s.topP ?? 1) < 1],
  ["min_p", "min_p", (s) => (s.minP ?? 0) > 0],
  ["xtc", "xtc_probability", (s) => (s.xtcProbability ?? 0) > 0],
  ["temperature", "temperature", (s) => (s.temperature ?? 0) > 0],
  ["temperature", "dynatemp_range", (s) => (s.dynatempRange ?? 0) > 0],
];

/**
 * Reads `samplers` and checks it against the request's other sampling settings.
 *
 * @param fields The body.
 * @param sampling The sampling settings read from it.
 * @returns The stages in order (each once), or undefined when the field is absent.
 * @throws {HttpError} 400 for an unknown name, `samplers` with Mirostat, or a setting whose
 *   stage the list leaves out.
 * @example
 * ```ts
 * samplerOrder(new Fields({ samplers: ["top_k", "infill"], top_k: 40 }), { topK: 40 });
 * // ["top_k", "infill"]
 * ```
 */
export function samplerOrder(
  fields: Fields,
  sampling: SamplingParams,
): SamplerName[] | undefined {
  const value = fields.raw("samplers");
  if (value === undefined || value === null) return undefined;
  const names = typeof value === "string" ? [...value] : value;
  if (!Array.isArray(names) || !names.every((name) => typeof name === "string")) {
    throw badRequest(
      '"samplers" must be an array of sampler names or a string of sampler letters',
      "samplers",
    );
  }
  const order: SamplerName[] = [];
  for (const written of names) {
    const letters = typeof value === "string";
    if (letters ? written === NO_STAGE_LETTER : NO_STAGE.has(written.toLowerCase())) continue;
    const stage = letters
      ? (Object.keys(STAGE_LETTERS) as SamplerName[]).find((s) => STAGE_LETTERS[s] === written)
      : SPELLINGS.get(written.toLowerCase());
    if (stage === undefined) {
      throw badRequest(
        `"samplers" names an unknown sampler "${written}"; known: ` +
          `${Object.keys(STAGE_LETTERS).join(", ")} (or their letters ` +
          `${Object.values(STAGE_LETTERS).join("")} in one string)`,
        "samplers",
      );
    }
    if (!order.includes(stage)) order.push(stage);
  }
  if ((sampling.mirostat ?? 0) !== 0) {
    throw badRequest(
      '"samplers" cannot be combined with "mirostat": Mirostat replaces the cut-offs with its own',
      "samplers",
    );
  }
  for (const [stage, field, acts] of STAGE_SETTINGS) {
    if (acts(sampling) && !order.includes(stage)) {
      throw badRequest(
        `"${field}" has no effect unless "samplers" lists "${stage}"; add it or leave ` +
          `"${field}" out`,
        field,
      );
    }
  }
  return order;
}
