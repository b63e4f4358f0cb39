/**
 * Typed errors of the engine; the server's error boundary maps their codes to HTTP statuses.
 *
 * @module
 */

/** Why a generation could not run. */
export type GenerationErrorCode =
  | "invalid_request"
  | "context_overflow"
  | "queue_full"
  | "unavailable"
  | "decode_failed"
  | "closed";

/** Raised by the scheduler and the generation helpers. */
export class GenerationError extends Error {
  /** Machine-readable reason. */
  readonly code: GenerationErrorCode;

  /**
   * @param code Reason.
   * @param message Human message.
   * @param cause Underlying error.
   */
  constructor(code: GenerationErrorCode, message: string, cause?: unknown) {
    super(message, { cause });
    this.name = "GenerationError";
    this.code = code;
  }
}

/**
 * A prompt too long for the context, with the ways out.
 *
 * @param tokens The prompt's size as the message says it, e.g. `3000` or `at least 70,176`.
 * @param context The tokens a request's context holds.
 * @returns The `context_overflow` error.
 */
export function contextOverflow(tokens: string, context: number): GenerationError {
  return new GenerationError(
    "context_overflow",
    `The prompt is ${tokens} tokens, more than the context of ${context} tokens per request ` +
      `can hold with room to generate; shorten the prompt, raise --ctx-size, or send ` +
      `"truncate": true to drop the oldest tokens`,
  );
}
