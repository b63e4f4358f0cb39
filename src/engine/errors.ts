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
