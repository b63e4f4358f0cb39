/**
 * Typed errors raised at the FFI boundary. Nothing above `src/ffi` sees a raw return code.
 *
 * @module
 */

/** Why a model could not be loaded. */
export type ModelLoadErrorCode = "not_found" | "not_readable" | "invalid_file" | "load_failed";

/** Raised when a model file cannot be loaded. */
export class ModelLoadError extends Error {
  /** Machine-readable reason. */
  readonly code: ModelLoadErrorCode;
  /** The model path. */
  readonly path: string;

  /**
   * @param code Reason.
   * @param path Model path.
   * @param message Human message.
   * @param cause Underlying error.
   */
  constructor(code: ModelLoadErrorCode, path: string, message: string, cause?: unknown) {
    super(message, { cause });
    this.name = "ModelLoadError";
    this.code = code;
    this.path = path;
  }
}

/** Raised when a context cannot be created (usually out of memory). */
export class ContextCreateError extends Error {
  /** @param message Human message. */
  constructor(message: string) {
    super(message);
    this.name = "ContextCreateError";
  }
}

/** `llama_decode` outcomes other than success. */
export type DecodeErrorCode = "no_kv_slot" | "aborted" | "invalid_batch" | "failed";

/** Raised when `llama_decode` fails. */
export class DecodeError extends Error {
  /** Machine-readable reason. */
  readonly code: DecodeErrorCode;
  /** The raw return code. */
  readonly status: number;

  /**
   * @param status Return code of `llama_decode`.
   * @param detail Recent llama.cpp log lines.
   */
  constructor(status: number, detail: string[] = []) {
    const code: DecodeErrorCode = status === 1
      ? "no_kv_slot"
      : status === 2
      ? "aborted"
      : status === -1
      ? "invalid_batch"
      : "failed";
    const reason = {
      no_kv_slot: "no room left in the KV cache",
      aborted: "aborted",
      invalid_batch: "invalid batch",
      failed: "computation failed",
    }[code];
    super(
      `Decode failed (${status}): ${reason}` + (detail.length ? `: ${detail.join("; ")}` : ""),
    );
    this.name = "DecodeError";
    this.code = code;
    this.status = status;
  }
}

/** Raised when a closed native handle is used. */
export class ClosedHandleError extends Error {
  /** @param what The handle kind, e.g. `Model`. */
  constructor(what: string) {
    super(`${what} is closed`);
    this.name = "ClosedHandleError";
  }
}
