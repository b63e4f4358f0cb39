/**
 * Reading the token a chain attached to a context sampled inside the decode graph, for the host
 * (`Sampler.sample`) and the decode thread's worker alike.
 *
 * @module
 */

import { LLAMA_TOKEN_NULL } from "./layouts.ts";

/** The two libllama calls {@link takeSampledInGraph} makes, from whichever library handle. */
export interface InGraphSamplingSymbols {
  llama_get_sampled_token_ith(context: Deno.PointerValue, index: number): number;
  llama_sampler_accept(sampler: Deno.PointerValue, token: number): void;
}

/**
 * The token the graph sampled for one output row, accepted by the chain, as
 * `llama_sampler_sample` does for such a token, without the debug line that call logs for each
 * one (a call into JavaScript through the log callback, from whichever thread samples).
 *
 * @param symbols The library's calls.
 * @param context `llama_context *` that decoded.
 * @param sampler `llama_sampler *` of the chain attached for the row's sequence.
 * @param index The row's index in the batch.
 * @returns The token, or `LLAMA_TOKEN_NULL` when the graph sampled none for that row.
 */
export function takeSampledInGraph(
  symbols: InGraphSamplingSymbols,
  context: Deno.PointerValue,
  sampler: Deno.PointerValue,
  index: number,
): number {
  const token = symbols.llama_get_sampled_token_ith(context, index);
  if (token !== LLAMA_TOKEN_NULL) symbols.llama_sampler_accept(sampler, token);
  return token;
}
