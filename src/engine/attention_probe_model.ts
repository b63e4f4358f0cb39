/**
 * The model that the attention probe (`attention_probe.ts`) times: a llama with the served
 * model's attention heads and head sizes, two blocks, and everything else as small as llama.cpp
 * accepts (a 64-wide residual stream, a 32-wide feed-forward network, 64 dummy tokens), so that a
 * decode's time is mostly its attention. It is written to a file for `llama_model_load_from_file`
 * and weighs a few megabytes even for the heads of a 70B model.
 *
 * @module
 */

import { GgmlType } from "../gguf/types.ts";
import { GgufWriter } from "../gguf/writer.ts";

/** The attention dimensions a probe model copies from the served model. */
export interface AttentionDims {
  /** Query heads. */
  heads: number;
  /** Key/value heads (fewer with grouped-query attention). */
  headsKv: number;
  /** Size of a key head. */
  keyLength: number;
  /** Size of a value head. */
  valueLength: number;
}

/** Blocks of the probe model: the timings are per block and not multiplied by the real count. */
export const PROBE_BLOCKS = 2;
/** Tokens of the probe model's vocabulary (no tokenizer: the probe decodes token ids). */
export const PROBE_VOCAB = 64;
const RESIDUAL_WIDTH = 64;
const FEED_FORWARD_WIDTH = 32;

/**
 * Writes the probe model for a served model's attention.
 *
 * @param path Destination file; replaced if it exists.
 * @param dims The served model's heads and head sizes.
 * @returns The bytes written.
 * @example
 * ```ts
 * await writeAttentionProbeModel("/tmp/probe.gguf", {
 *   heads: 32,
 *   headsKv: 8,
 *   keyLength: 128,
 *   valueLength: 128,
 * });
 * ```
 */
export async function writeAttentionProbeModel(path: string, dims: AttentionDims): Promise<number> {
  const { heads, headsKv, keyLength, valueLength } = dims;
  const w = new GgufWriter();
  w.setString("general.architecture", "llama");
  w.setString("general.name", "shimmy-attention-probe");
  w.setUint32("llama.vocab_size", PROBE_VOCAB);
  w.setUint32("llama.context_length", 1 << 20);
  w.setUint32("llama.embedding_length", RESIDUAL_WIDTH);
  w.setUint32("llama.block_count", PROBE_BLOCKS);
  w.setUint32("llama.feed_forward_length", FEED_FORWARD_WIDTH);
  w.setUint32("llama.attention.head_count", heads);
  w.setUint32("llama.attention.head_count_kv", headsKv);
  w.setUint32("llama.attention.key_length", keyLength);
  w.setUint32("llama.attention.value_length", valueLength);
  w.setUint32("llama.rope.dimension_count", keyLength);
  w.setFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5);
  w.setString("tokenizer.ggml.model", "none");
  let seed = 1;
  const matrix = (name: string, rows: number, columns: number) => {
    const values = new Float32Array(rows * columns);
    // Small values of both signs, the same in every probe: the kernels' time does not depend on
    // them, but infinities or NaNs could take slower paths.
    for (let i = 0; i < values.length; i++) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      values[i] = (seed / 2147483648 - 0.5) / Math.sqrt(rows);
    }
    w.addTensor(name, [rows, columns], GgmlType.F32, values);
  };
  const norm = (name: string) =>
    w.addTensor(name, [RESIDUAL_WIDTH], GgmlType.F32, new Float32Array(RESIDUAL_WIDTH).fill(1));
  matrix("token_embd.weight", RESIDUAL_WIDTH, PROBE_VOCAB);
  for (let block = 0; block < PROBE_BLOCKS; block++) {
    const b = `blk.${block}`;
    norm(`${b}.attn_norm.weight`);
    matrix(`${b}.attn_q.weight`, RESIDUAL_WIDTH, heads * keyLength);
    matrix(`${b}.attn_k.weight`, RESIDUAL_WIDTH, headsKv * keyLength);
    matrix(`${b}.attn_v.weight`, RESIDUAL_WIDTH, headsKv * valueLength);
    matrix(`${b}.attn_output.weight`, heads * valueLength, RESIDUAL_WIDTH);
    norm(`${b}.ffn_norm.weight`);
    matrix(`${b}.ffn_gate.weight`, RESIDUAL_WIDTH, FEED_FORWARD_WIDTH);
    matrix(`${b}.ffn_up.weight`, RESIDUAL_WIDTH, FEED_FORWARD_WIDTH);
    matrix(`${b}.ffn_down.weight`, FEED_FORWARD_WIDTH, RESIDUAL_WIDTH);
  }
  norm("output_norm.weight");
  matrix("output.weight", RESIDUAL_WIDTH, PROBE_VOCAB);
  return await w.write(path);
}
