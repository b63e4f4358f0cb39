/**
 * Whether a model generates text, judged without loading it: by its GGUF architecture (encoders,
 * embedding and audio models are not chat models), then by its names (embedding and reranking
 * models built on chat architectures). `shimmy discover --llm-only` and Ollama's `/api/show`
 * capabilities use it.
 *
 * @module
 */

/** Architectures of encoders, embedding and audio models: not chat models. */
const NON_CHAT_ARCHITECTURES: ReadonlySet<string> = new Set([
  "clip",
  "bert",
  "modern-bert",
  "nomic-bert",
  "nomic-bert-moe",
  "neo-bert",
  "jina-bert-v2",
  "jina-bert-v3",
  "eurobert",
  "gemma-embedding",
  "llama-embed",
  "t5encoder",
  "wavtokenizer-dec",
]);

/** Embedding and reranking models built on chat architectures, told apart by name. */
const NON_CHAT_NAME = /(^|[-_.\/: ])(embed|embeds|embedding|embeddings|rerank|reranker)([-_.: ]|$)/;

/**
 * Whether a model is a chat (text generation) model.
 *
 * @param architecture Its `general.architecture`.
 * @param names Its names (file name, display name…).
 * @returns True for chat models.
 * @example
 * ```ts
 * generatesText("nomic-bert", ["nomic-embed-text"]); // false
 * generatesText("qwen2", ["qwen2.5-0.5b-instruct"]); // true
 * ```
 */
export function generatesText(architecture: string, names: readonly string[]): boolean {
  if (NON_CHAT_ARCHITECTURES.has(architecture.toLowerCase())) return false;
  return !names.some((name) => NON_CHAT_NAME.test(name.toLowerCase()));
}
