/**
 * The symbol tables Shimmy binds with `Deno.dlopen`: libllama, libggml (backend registry) and
 * libggml-base (devices). C signatures from llama.cpp v0.5.0 are in the comment beside each.
 * Calls that can take long (model load, context creation, decode, tokenizing big texts) are
 * `nonblocking`, so the event loop keeps serving while they run on a worker thread.
 *
 * @module
 */

import {
  LlamaBatch,
  LlamaContextParams,
  LlamaModelParams,
  LlamaPerfContextData,
  LlamaSamplerChainParams,
} from "./layouts.ts";

const ptr = "pointer" as const;
const buf = "buffer" as const;

/** libllama's symbols. */
export const LLAMA_SYMBOLS = {
  // const char * llama_print_system_info(void)
  llama_print_system_info: { parameters: [], result: ptr },
  // void llama_backend_init(void)
  llama_backend_init: { parameters: [], result: "void" },
  // void llama_backend_free(void)
  llama_backend_free: { parameters: [], result: "void" },
  // void llama_log_set(ggml_log_callback cb, void * user_data)
  llama_log_set: { parameters: ["function", ptr], result: "void" },
  // bool llama_supports_gpu_offload(void)
  llama_supports_gpu_offload: { parameters: [], result: "bool" },
  // bool llama_supports_mmap(void)
  llama_supports_mmap: { parameters: [], result: "bool" },
  // size_t llama_max_devices(void)
  llama_max_devices: { parameters: [], result: "usize" },
  // size_t llama_max_parallel_sequences(void)
  llama_max_parallel_sequences: { parameters: [], result: "usize" },
  // int64_t llama_time_us(void)
  llama_time_us: { parameters: [], result: "i64" },
  // the same, as a nonblocking call: a cheap, real yield to the event loop's I/O tasks
  llama_time_us_nonblocking: {
    name: "llama_time_us",
    parameters: [],
    result: "i64",
    nonblocking: true,
  },

  // struct llama_model_params llama_model_default_params(void)
  llama_model_default_params: { parameters: [], result: LlamaModelParams.ffi },
  // struct llama_context_params llama_context_default_params(void)
  llama_context_default_params: { parameters: [], result: LlamaContextParams.ffi },
  // struct llama_sampler_chain_params llama_sampler_chain_default_params(void)
  llama_sampler_chain_default_params: { parameters: [], result: LlamaSamplerChainParams.ffi },

  // struct llama_model * llama_model_load_from_file(const char * path, struct llama_model_params)
  llama_model_load_from_file: {
    parameters: [buf, LlamaModelParams.ffi],
    result: ptr,
    nonblocking: true,
  },
  // struct llama_model * llama_model_load_from_splits(const char ** paths, size_t n, params)
  llama_model_load_from_splits: {
    parameters: [buf, "usize", LlamaModelParams.ffi],
    result: ptr,
    nonblocking: true,
  },
  // void llama_model_free(struct llama_model * model)
  llama_model_free: { parameters: [ptr], result: "void" },
  // struct llama_context * llama_init_from_model(struct llama_model *, struct llama_context_params)
  llama_init_from_model: {
    parameters: [ptr, LlamaContextParams.ffi],
    result: ptr,
    nonblocking: true,
  },
  // void llama_free(struct llama_context * ctx)
  llama_free: { parameters: [ptr], result: "void" },
  // void llama_attach_threadpool(struct llama_context *, ggml_threadpool_t, ggml_threadpool_t batch)
  llama_attach_threadpool: { parameters: [ptr, ptr, ptr], result: "void" },
  // void llama_detach_threadpool(struct llama_context *)
  llama_detach_threadpool: { parameters: [ptr], result: "void" },

  // model introspection
  // const struct llama_vocab * llama_model_get_vocab(const struct llama_model *)
  llama_model_get_vocab: { parameters: [ptr], result: ptr },
  // int32_t llama_model_n_ctx_train(const struct llama_model *)
  llama_model_n_ctx_train: { parameters: [ptr], result: "i32" },
  // int32_t llama_model_n_embd(const struct llama_model *)
  llama_model_n_embd: { parameters: [ptr], result: "i32" },
  // int32_t llama_model_n_embd_out(const struct llama_model *)
  llama_model_n_embd_out: { parameters: [ptr], result: "i32" },
  // int32_t llama_model_n_layer(const struct llama_model *)
  llama_model_n_layer: { parameters: [ptr], result: "i32" },
  // int32_t llama_model_n_head(const struct llama_model *)
  llama_model_n_head: { parameters: [ptr], result: "i32" },
  // int32_t llama_model_n_head_kv(const struct llama_model *)
  llama_model_n_head_kv: { parameters: [ptr], result: "i32" },
  // uint64_t llama_model_size(const struct llama_model *)
  llama_model_size: { parameters: [ptr], result: "u64" },
  // uint64_t llama_model_n_params(const struct llama_model *)
  llama_model_n_params: { parameters: [ptr], result: "u64" },
  // int32_t llama_model_desc(const struct llama_model *, char * buf, size_t buf_size)
  llama_model_desc: { parameters: [ptr, buf, "usize"], result: "i32" },
  // const char * llama_model_chat_template(const struct llama_model *, const char * name)
  llama_model_chat_template: { parameters: [ptr, ptr], result: ptr },
  // bool llama_model_has_encoder(const struct llama_model *)
  llama_model_has_encoder: { parameters: [ptr], result: "bool" },
  // bool llama_model_is_recurrent(const struct llama_model *)
  llama_model_is_recurrent: { parameters: [ptr], result: "bool" },
  // int32_t llama_model_meta_count(const struct llama_model *)
  llama_model_meta_count: { parameters: [ptr], result: "i32" },
  // int32_t llama_model_meta_key_by_index(const struct llama_model *, int32_t i, char *, size_t)
  llama_model_meta_key_by_index: { parameters: [ptr, "i32", buf, "usize"], result: "i32" },
  // int32_t llama_model_meta_val_str_by_index(const struct llama_model *, int32_t i, char *, size_t)
  llama_model_meta_val_str_by_index: { parameters: [ptr, "i32", buf, "usize"], result: "i32" },
  // int32_t llama_model_meta_val_str(const struct llama_model *, const char * key, char *, size_t)
  llama_model_meta_val_str: { parameters: [ptr, buf, buf, "usize"], result: "i32" },

  // vocabulary
  // int32_t llama_vocab_n_tokens(const struct llama_vocab *)
  llama_vocab_n_tokens: { parameters: [ptr], result: "i32" },
  // enum llama_vocab_type llama_vocab_type(const struct llama_vocab *)
  llama_vocab_type: { parameters: [ptr], result: "i32" },
  // llama_token llama_vocab_bos(const struct llama_vocab *)
  llama_vocab_bos: { parameters: [ptr], result: "i32" },
  // llama_token llama_vocab_eos(const struct llama_vocab *)
  llama_vocab_eos: { parameters: [ptr], result: "i32" },
  // llama_token llama_vocab_eot(const struct llama_vocab *)
  llama_vocab_eot: { parameters: [ptr], result: "i32" },
  // bool llama_vocab_is_eog(const struct llama_vocab *, llama_token)
  llama_vocab_is_eog: { parameters: [ptr, "i32"], result: "bool" },
  // bool llama_vocab_is_control(const struct llama_vocab *, llama_token)
  llama_vocab_is_control: { parameters: [ptr, "i32"], result: "bool" },
  // bool llama_vocab_get_add_bos(const struct llama_vocab *)
  llama_vocab_get_add_bos: { parameters: [ptr], result: "bool" },
  // bool llama_vocab_get_add_eos(const struct llama_vocab *)
  llama_vocab_get_add_eos: { parameters: [ptr], result: "bool" },
  // llama_token llama_vocab_sep(const struct llama_vocab *)
  llama_vocab_sep: { parameters: [ptr], result: "i32" },
  // bool llama_vocab_get_add_sep(const struct llama_vocab *)
  llama_vocab_get_add_sep: { parameters: [ptr], result: "bool" },
  // llama_token llama_vocab_fim_pre(const struct llama_vocab *)
  llama_vocab_fim_pre: { parameters: [ptr], result: "i32" },
  // llama_token llama_vocab_fim_suf(const struct llama_vocab *)
  llama_vocab_fim_suf: { parameters: [ptr], result: "i32" },
  // llama_token llama_vocab_fim_mid(const struct llama_vocab *)
  llama_vocab_fim_mid: { parameters: [ptr], result: "i32" },
  // llama_token llama_vocab_fim_rep(const struct llama_vocab *)
  llama_vocab_fim_rep: { parameters: [ptr], result: "i32" },
  // llama_token llama_vocab_fim_sep(const struct llama_vocab *)
  llama_vocab_fim_sep: { parameters: [ptr], result: "i32" },
  // enum llama_token_attr llama_vocab_get_attr(const struct llama_vocab *, llama_token)
  llama_vocab_get_attr: { parameters: [ptr, "i32"], result: "u32" },
  // const char * llama_vocab_get_text(const struct llama_vocab *, llama_token)
  llama_vocab_get_text: { parameters: [ptr, "i32"], result: ptr },
  // int32_t llama_tokenize(vocab, const char * text, int32_t len, llama_token * out, int32_t max,
  //                        bool add_special, bool parse_special)
  llama_tokenize: {
    parameters: [ptr, buf, "i32", buf, "i32", "bool", "bool"],
    result: "i32",
  },
  // the same function on a worker thread, for big texts (`Model.tokenizeAsync`); the text and
  // output buffers must stay alive until the promise settles
  llama_tokenize_nonblocking: {
    name: "llama_tokenize",
    parameters: [ptr, buf, "i32", buf, "i32", "bool", "bool"],
    result: "i32",
    nonblocking: true,
  },
  // int32_t llama_token_to_piece(vocab, llama_token, char * buf, int32_t len, int32_t lstrip,
  //                              bool special)
  llama_token_to_piece: { parameters: [ptr, "i32", buf, "i32", "i32", "bool"], result: "i32" },
  // int32_t llama_detokenize(vocab, const llama_token * tokens, int32_t n, char * text,
  //                          int32_t max, bool remove_special, bool unparse_special)
  llama_detokenize: {
    parameters: [ptr, buf, "i32", buf, "i32", "bool", "bool"],
    result: "i32",
  },
  // int32_t llama_chat_apply_template(const char * tmpl, const llama_chat_message * chat,
  //                                   size_t n_msg, bool add_ass, char * buf, int32_t length)
  llama_chat_apply_template: {
    parameters: [buf, buf, "usize", "bool", buf, "i32"],
    result: "i32",
  },

  // context
  // uint32_t llama_n_ctx(const struct llama_context *)
  llama_n_ctx: { parameters: [ptr], result: "u32" },
  // uint32_t llama_n_ctx_seq(const struct llama_context *)
  llama_n_ctx_seq: { parameters: [ptr], result: "u32" },
  // uint32_t llama_n_batch(const struct llama_context *)
  llama_n_batch: { parameters: [ptr], result: "u32" },
  // uint32_t llama_n_ubatch(const struct llama_context *)
  llama_n_ubatch: { parameters: [ptr], result: "u32" },
  // uint32_t llama_n_seq_max(const struct llama_context *)
  llama_n_seq_max: { parameters: [ptr], result: "u32" },
  // void llama_set_n_threads(struct llama_context *, int32_t n_threads, int32_t n_threads_batch)
  llama_set_n_threads: { parameters: [ptr, "i32", "i32"], result: "void" },
  // int32_t llama_n_threads(struct llama_context *)
  llama_n_threads: { parameters: [ptr], result: "i32" },
  // float * llama_get_logits_ith(struct llama_context *, int32_t i)
  llama_get_logits_ith: { parameters: [ptr, "i32"], result: ptr },
  // enum llama_pooling_type llama_pooling_type(const struct llama_context *)
  llama_pooling_type: { parameters: [ptr], result: "i32" },
  // float * llama_get_embeddings_seq(struct llama_context *, llama_seq_id)
  llama_get_embeddings_seq: { parameters: [ptr, "i32"], result: ptr },
  // bool llama_set_sampler(struct llama_context *, llama_seq_id, struct llama_sampler *)
  llama_set_sampler: { parameters: [ptr, "i32", ptr], result: "bool" },
  // struct llama_perf_context_data llama_perf_context(const struct llama_context *)
  llama_perf_context: { parameters: [ptr], result: LlamaPerfContextData.ffi },
  // void llama_perf_context_reset(struct llama_context *)
  llama_perf_context_reset: { parameters: [ptr], result: "void" },

  // KV memory
  // int32_t llama_decode(struct llama_context *, struct llama_batch)
  llama_decode: { parameters: [ptr, LlamaBatch.ffi], result: "i32", nonblocking: true },
  // the same, blocking: with every layer on a GPU and one micro-batch it only prepares the
  // inputs and queues the device's work (tens to hundreds of µs), less than a thread hand-off
  llama_decode_queue: {
    name: "llama_decode",
    parameters: [ptr, LlamaBatch.ffi],
    result: "i32",
  },
  // void llama_synchronize(struct llama_context *): waits for the backends (a GPU) to finish
  llama_synchronize: { parameters: [ptr], result: "void", nonblocking: true },
  // llama_memory_t llama_get_memory(const struct llama_context *)
  llama_get_memory: { parameters: [ptr], result: ptr },
  // void llama_memory_clear(llama_memory_t, bool data)
  llama_memory_clear: { parameters: [ptr, "bool"], result: "void" },
  // bool llama_memory_seq_rm(llama_memory_t, llama_seq_id, llama_pos p0, llama_pos p1)
  llama_memory_seq_rm: { parameters: [ptr, "i32", "i32", "i32"], result: "bool" },
  // void llama_memory_seq_cp(llama_memory_t, llama_seq_id src, llama_seq_id dst, p0, p1)
  llama_memory_seq_cp: { parameters: [ptr, "i32", "i32", "i32", "i32"], result: "void" },
  // void llama_memory_seq_keep(llama_memory_t, llama_seq_id)
  llama_memory_seq_keep: { parameters: [ptr, "i32"], result: "void" },
  // llama_pos llama_memory_seq_pos_max(llama_memory_t, llama_seq_id)
  llama_memory_seq_pos_max: { parameters: [ptr, "i32"], result: "i32" },

  // state
  // size_t llama_state_seq_get_size(struct llama_context *, llama_seq_id)
  llama_state_seq_get_size: { parameters: [ptr, "i32"], result: "usize" },
  // size_t llama_state_seq_get_data(struct llama_context *, uint8_t * dst, size_t, llama_seq_id)
  llama_state_seq_get_data: { parameters: [ptr, buf, "usize", "i32"], result: "usize" },
  // size_t llama_state_seq_set_data(struct llama_context *, const uint8_t *, size_t, llama_seq_id)
  llama_state_seq_set_data: { parameters: [ptr, buf, "usize", "i32"], result: "usize" },
  // size_t llama_state_seq_save_file(struct llama_context *, const char * filepath,
  //   llama_seq_id, const llama_token * tokens, size_t n_token_count)
  llama_state_seq_save_file: {
    parameters: [ptr, buf, "i32", buf, "usize"],
    result: "usize",
    nonblocking: true,
  },
  // size_t llama_state_seq_load_file(struct llama_context *, const char * filepath,
  //   llama_seq_id dest, llama_token * tokens_out, size_t n_token_capacity, size_t * n_token_count_out)
  llama_state_seq_load_file: {
    parameters: [ptr, buf, "i32", buf, "usize", buf],
    result: "usize",
    nonblocking: true,
  },

  // batches
  // struct llama_batch llama_batch_init(int32_t n_tokens, int32_t embd, int32_t n_seq_max)
  llama_batch_init: { parameters: ["i32", "i32", "i32"], result: LlamaBatch.ffi },
  // void llama_batch_free(struct llama_batch batch)
  llama_batch_free: { parameters: [LlamaBatch.ffi], result: "void" },

  // samplers
  // struct llama_sampler * llama_sampler_chain_init(struct llama_sampler_chain_params)
  llama_sampler_chain_init: { parameters: [LlamaSamplerChainParams.ffi], result: ptr },
  // void llama_sampler_chain_add(struct llama_sampler * chain, struct llama_sampler * smpl)
  llama_sampler_chain_add: { parameters: [ptr, ptr], result: "void" },
  // int32_t llama_sampler_chain_n(const struct llama_sampler * chain)
  llama_sampler_chain_n: { parameters: [ptr], result: "i32" },
  // struct llama_sampler * llama_sampler_chain_get(struct llama_sampler * chain, int32_t i)
  llama_sampler_chain_get: { parameters: [ptr, "i32"], result: ptr },
  // const char * llama_sampler_name(const struct llama_sampler *)
  llama_sampler_name: { parameters: [ptr], result: ptr },
  // llama_token llama_sampler_sample(struct llama_sampler *, struct llama_context *, int32_t idx)
  llama_sampler_sample: { parameters: [ptr, ptr, "i32"], result: "i32" },
  // llama_token llama_get_sampled_token_ith(struct llama_context *, int32_t i)
  llama_get_sampled_token_ith: { parameters: [ptr, "i32"], result: "i32" },
  // void llama_sampler_accept(struct llama_sampler *, llama_token)
  llama_sampler_accept: { parameters: [ptr, "i32"], result: "void" },
  // void llama_sampler_apply(struct llama_sampler *, llama_token_data_array * cur_p)
  llama_sampler_apply: { parameters: [ptr, ptr], result: "void" },
  // struct llama_sampler * llama_sampler_clone(const struct llama_sampler *)
  llama_sampler_clone: { parameters: [ptr], result: ptr },
  // void llama_sampler_copy(const struct llama_sampler * src, struct llama_sampler * dst)
  llama_sampler_copy: { parameters: [ptr, ptr], result: "void" },
  // void llama_sampler_reset(struct llama_sampler *)
  llama_sampler_reset: { parameters: [ptr], result: "void" },
  // void llama_sampler_free(struct llama_sampler *)
  llama_sampler_free: { parameters: [ptr], result: "void" },
  // uint32_t llama_sampler_get_seed(const struct llama_sampler *)
  llama_sampler_get_seed: { parameters: [ptr], result: "u32" },
  // struct llama_sampler * llama_sampler_init_greedy(void)
  llama_sampler_init_greedy: { parameters: [], result: ptr },
  // struct llama_sampler * llama_sampler_init_dist(uint32_t seed)
  llama_sampler_init_dist: { parameters: ["u32"], result: ptr },
  // struct llama_sampler * llama_sampler_init_top_k(int32_t k)
  llama_sampler_init_top_k: { parameters: ["i32"], result: ptr },
  // struct llama_sampler * llama_sampler_init_top_p(float p, size_t min_keep)
  llama_sampler_init_top_p: { parameters: ["f32", "usize"], result: ptr },
  // struct llama_sampler * llama_sampler_init_min_p(float p, size_t min_keep)
  llama_sampler_init_min_p: { parameters: ["f32", "usize"], result: ptr },
  // struct llama_sampler * llama_sampler_init_typical(float p, size_t min_keep)
  llama_sampler_init_typical: { parameters: ["f32", "usize"], result: ptr },
  // struct llama_sampler * llama_sampler_init_temp(float t)
  llama_sampler_init_temp: { parameters: ["f32"], result: ptr },
  // struct llama_sampler * llama_sampler_init_temp_ext(float t, float delta, float exponent)
  llama_sampler_init_temp_ext: { parameters: ["f32", "f32", "f32"], result: ptr },
  // struct llama_sampler * llama_sampler_init_top_n_sigma(float n)
  llama_sampler_init_top_n_sigma: { parameters: ["f32"], result: ptr },
  // struct llama_sampler * llama_sampler_init_infill(const struct llama_vocab * vocab)
  llama_sampler_init_infill: { parameters: [ptr], result: ptr },
  // struct llama_sampler * llama_sampler_init_xtc(float p, float t, size_t min_keep, uint32_t seed)
  llama_sampler_init_xtc: { parameters: ["f32", "f32", "usize", "u32"], result: ptr },
  // struct llama_sampler * llama_sampler_init_mirostat(int32_t n_vocab, uint32_t seed, float tau,
  //                                                    float eta, int32_t m)
  llama_sampler_init_mirostat: { parameters: ["i32", "u32", "f32", "f32", "i32"], result: ptr },
  // struct llama_sampler * llama_sampler_init_mirostat_v2(uint32_t seed, float tau, float eta)
  llama_sampler_init_mirostat_v2: { parameters: ["u32", "f32", "f32"], result: ptr },
  // struct llama_sampler * llama_sampler_init_grammar(vocab, const char * str, const char * root)
  llama_sampler_init_grammar: { parameters: [ptr, buf, buf], result: ptr },
  // the same on a worker thread: compiling a large grammar takes long
  llama_sampler_init_grammar_nonblocking: {
    name: "llama_sampler_init_grammar",
    parameters: [ptr, buf, buf],
    result: ptr,
    nonblocking: true,
  },
  // struct llama_sampler * llama_sampler_init_grammar_lazy_patterns(vocab, const char * str,
  //     const char * root, const char ** trigger_patterns, size_t num_trigger_patterns,
  //     const llama_token * trigger_tokens, size_t num_trigger_tokens)
  llama_sampler_init_grammar_lazy_patterns: {
    parameters: [ptr, buf, buf, buf, "usize", buf, "usize"],
    result: ptr,
  },
  // the same on a worker thread
  llama_sampler_init_grammar_lazy_patterns_nonblocking: {
    name: "llama_sampler_init_grammar_lazy_patterns",
    parameters: [ptr, buf, buf, buf, "usize", buf, "usize"],
    result: ptr,
    nonblocking: true,
  },
  // struct llama_sampler * llama_sampler_init_penalties(int32_t n_vocab, int32_t last_n,
  //                                   float repeat, float freq, float present)
  llama_sampler_init_penalties: {
    parameters: ["i32", "i32", "f32", "f32", "f32"],
    result: ptr,
  },
  // struct llama_sampler * llama_sampler_init_dry(vocab, float multiplier, float base,
  //     int32_t allowed_length, int32_t penalty_last_n, const char ** breakers, size_t n)
  llama_sampler_init_dry: {
    parameters: [ptr, "f32", "f32", "i32", "i32", buf, "usize"],
    result: ptr,
  },
  // the same on a worker thread: it matches each breaker against the whole vocabulary
  llama_sampler_init_dry_nonblocking: {
    name: "llama_sampler_init_dry",
    parameters: [ptr, "f32", "f32", "i32", "i32", buf, "usize"],
    result: ptr,
    nonblocking: true,
  },
  // struct llama_sampler * llama_sampler_init_logit_bias(int32_t n_vocab, int32_t n,
  //                                                      const llama_logit_bias * bias)
  llama_sampler_init_logit_bias: { parameters: ["i32", "i32", buf], result: ptr },

  // LoRA
  // struct llama_adapter_lora * llama_adapter_lora_init(struct llama_model *, const char * path)
  llama_adapter_lora_init: { parameters: [ptr, buf], result: ptr, nonblocking: true },
  // void llama_adapter_lora_free(struct llama_adapter_lora *)
  llama_adapter_lora_free: { parameters: [ptr], result: "void" },
  // int32_t llama_adapter_meta_val_str(const struct llama_adapter_lora *, const char * key,
  //                                    char * buf, size_t size)
  llama_adapter_meta_val_str: { parameters: [ptr, buf, buf, "usize"], result: "i32" },
  // int32_t llama_set_adapters_lora(struct llama_context *, struct llama_adapter_lora ** adapters,
  //                                 size_t n, float * scales)
  llama_set_adapters_lora: { parameters: [ptr, buf, "usize", buf], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** libggml's backend registry (it loads the dynamic backends: CPU variants, CUDA, Vulkan…). */
export const GGML_SYMBOLS = {
  // void ggml_backend_load_all_from_path(const char * dir_path)
  ggml_backend_load_all_from_path: { parameters: [buf], result: "void" },
  // size_t ggml_backend_reg_count(void)
  ggml_backend_reg_count: { parameters: [], result: "usize" },
  // ggml_backend_reg_t ggml_backend_reg_get(size_t index)
  ggml_backend_reg_get: { parameters: ["usize"], result: ptr },
  // size_t ggml_backend_dev_count(void)
  ggml_backend_dev_count: { parameters: [], result: "usize" },
  // ggml_backend_dev_t ggml_backend_dev_get(size_t index)
  ggml_backend_dev_get: { parameters: ["usize"], result: ptr },
  // ggml_backend_dev_t ggml_backend_dev_by_type(enum ggml_backend_dev_type type)
  ggml_backend_dev_by_type: { parameters: ["i32"], result: ptr },
} as const satisfies Deno.ForeignLibraryInterface;

/** libggml-base's device accessors and logger. */
export const GGML_BASE_SYMBOLS = {
  // const char * ggml_backend_reg_name(ggml_backend_reg_t reg)
  ggml_backend_reg_name: { parameters: [ptr], result: ptr },
  // const char * ggml_backend_dev_name(ggml_backend_dev_t device)
  ggml_backend_dev_name: { parameters: [ptr], result: ptr },
  // const char * ggml_backend_dev_description(ggml_backend_dev_t device)
  ggml_backend_dev_description: { parameters: [ptr], result: ptr },
  // void ggml_backend_dev_memory(ggml_backend_dev_t device, size_t * free, size_t * total)
  ggml_backend_dev_memory: { parameters: [ptr, buf, buf], result: "void" },
  // enum ggml_backend_dev_type ggml_backend_dev_type(ggml_backend_dev_t device)
  ggml_backend_dev_type: { parameters: [ptr], result: "i32" },
  // ggml_backend_reg_t ggml_backend_dev_backend_reg(ggml_backend_dev_t device)
  ggml_backend_dev_backend_reg: { parameters: [ptr], result: ptr },
  // void * ggml_backend_reg_get_proc_address(ggml_backend_reg_t reg, const char * name)
  ggml_backend_reg_get_proc_address: { parameters: [ptr, buf], result: ptr },
  // void ggml_log_set(ggml_log_callback log_callback, void * user_data)
  ggml_log_set: { parameters: ["function", ptr], result: "void" },
  // void ggml_threadpool_params_init(struct ggml_threadpool_params * p, int n_threads)
  ggml_threadpool_params_init: { parameters: [buf, "i32"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The bound libllama. */
export type LlamaSymbols = Deno.DynamicLibrary<typeof LLAMA_SYMBOLS>["symbols"];
/** The bound libggml. */
export type GgmlSymbols = Deno.DynamicLibrary<typeof GGML_SYMBOLS>["symbols"];
/** The bound libggml-base. */
export type GgmlBaseSymbols = Deno.DynamicLibrary<typeof GGML_BASE_SYMBOLS>["symbols"];
