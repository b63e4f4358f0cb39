/**
 * Every C struct Shimmy passes to or reads from libllama, laid out to match `llama.h` of
 * llama.cpp v0.5.0 (the version pinned by node-llama-cpp@3.22.1). Field order and kinds
 * follow the header exactly; `tests/ffi/abi_test.ts` checks each offset and size against the
 * C compiler. Enums are `i32`, `bool` is one byte, pointers and `size_t` are 64-bit.
 *
 * @module
 */

import { defineStruct } from "./struct.ts";

/** `struct llama_model_params`. */
export const LlamaModelParams = defineStruct("llama_model_params", {
  devices: "pointer",
  tensor_buft_overrides: "pointer",
  n_gpu_layers: "i32",
  split_mode: "i32",
  load_mode: "i32",
  lazy_mode: "i32",
  main_gpu: "i32",
  tensor_split: "pointer",
  progress_callback: "pointer",
  progress_callback_user_data: "pointer",
  kv_overrides: "pointer",
  vocab_only: "bool",
  check_tensors: "bool",
  use_extra_bufts: "bool",
  no_host: "bool",
  no_alloc: "bool",
  load_mtp: "bool",
});

/** `struct llama_context_params`. */
export const LlamaContextParams = defineStruct("llama_context_params", {
  n_ctx: "u32",
  n_batch: "u32",
  n_ubatch: "u32",
  n_seq_max: "u32",
  n_rs_seq: "u32",
  n_outputs_max: "u32",
  n_outputs_max_per_seq: "u32",
  n_threads: "i32",
  n_threads_batch: "i32",
  ctx_type: "i32",
  rope_scaling_type: "i32",
  pooling_type: "i32",
  attention_type: "i32",
  flash_attn_type: "i32",
  rope_freq_base: "f32",
  rope_freq_scale: "f32",
  yarn_ext_factor: "f32",
  yarn_attn_factor: "f32",
  yarn_beta_fast: "f32",
  yarn_beta_slow: "f32",
  yarn_orig_ctx: "u32",
  defrag_thold: "f32",
  cb_eval: "pointer",
  cb_eval_user_data: "pointer",
  type_k: "i32",
  type_v: "i32",
  abort_callback: "pointer",
  abort_callback_data: "pointer",
  embeddings: "bool",
  offload_kqv: "bool",
  no_perf: "bool",
  op_offload: "bool",
  swa_full: "bool",
  kv_unified: "bool",
  samplers: "pointer",
  n_samplers: "usize",
  ctx_other: "pointer",
});

/** `struct llama_batch`: arrays of `n_tokens` entries each. */
export const LlamaBatch = defineStruct("llama_batch", {
  n_tokens: "i32",
  token: "pointer",
  embd: "pointer",
  pos: "pointer",
  n_seq_id: "pointer",
  seq_id: "pointer",
  logits: "pointer",
});

/** `struct llama_token_data`. */
export const LlamaTokenData = defineStruct("llama_token_data", {
  id: "i32",
  logit: "f32",
  p: "f32",
});

/** `struct llama_token_data_array`. */
export const LlamaTokenDataArray = defineStruct("llama_token_data_array", {
  data: "pointer",
  size: "usize",
  selected: "i64",
  sorted: "bool",
});

/** `struct llama_chat_message`. */
export const LlamaChatMessage = defineStruct("llama_chat_message", {
  role: "pointer",
  content: "pointer",
});

/** `struct llama_logit_bias`. */
export const LlamaLogitBias = defineStruct("llama_logit_bias", {
  token: "i32",
  bias: "f32",
});

/** `struct llama_sampler_chain_params`. */
export const LlamaSamplerChainParams = defineStruct("llama_sampler_chain_params", {
  no_perf: "bool",
});

/** `struct llama_perf_context_data`. */
export const LlamaPerfContextData = defineStruct("llama_perf_context_data", {
  t_start_ms: "f64",
  t_load_ms: "f64",
  t_p_eval_ms: "f64",
  t_eval_ms: "f64",
  n_p_eval: "i32",
  n_eval: "i32",
  n_reused: "i32",
});

/** `GGML_MAX_N_THREADS`: length of `ggml_threadpool_params.cpumask`. */
export const GGML_MAX_N_THREADS = 512;

/**
 * `struct ggml_threadpool_params`, after its `bool cpumask[GGML_MAX_N_THREADS]` array (the
 * layout helper has no arrays, so offsets here are relative to the end of the mask).
 */
export const GgmlThreadpoolParamsTail = defineStruct("ggml_threadpool_params(tail)", {
  n_threads: "i32",
  prio: "i32",
  poll: "u32",
  strict_cpu: "bool",
  paused: "bool",
});

/** Every layout above, for the ABI test. */
export const ALL_LAYOUTS = [
  LlamaModelParams,
  LlamaContextParams,
  LlamaBatch,
  LlamaTokenData,
  LlamaTokenDataArray,
  LlamaChatMessage,
  LlamaLogitBias,
  LlamaSamplerChainParams,
  LlamaPerfContextData,
] as const;

/** `enum llama_split_mode`. */
export const SplitMode = { none: 0, layer: 1, row: 2, tensor: 3 } as const;

/** `enum ggml_backend_dev_type`. */
export const DeviceType = { cpu: 0, gpu: 1, igpu: 2, accel: 3, meta: 4 } as const;

/** `enum llama_flash_attn_type`. */
export const FlashAttnType = { auto: -1, disabled: 0, enabled: 1 } as const;

/**
 * `enum llama_pooling_type`: how an embeddings context turns a sequence's token states into one
 * vector (`rank`: a reranker's classification head, one score per sequence).
 */
export const PoolingType = { unspecified: -1, none: 0, mean: 1, cls: 2, last: 3, rank: 4 } as const;

/** `LLAMA_TOKEN_NULL`: no token (say, none sampled inside the graph for an output row). */
export const LLAMA_TOKEN_NULL = -1;
