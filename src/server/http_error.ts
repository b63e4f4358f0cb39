/**
 * The server's one error boundary: every failure becomes an OpenAI-style body
 * `{"error":{"message","type","param","code"}}` (Anthropic's `{"type":"error","error":{…}}` on
 * its routes) with the right status. Handlers throw; they never build error responses by hand.
 *
 * @module
 */

import { GenerationError } from "../engine/errors.ts";
import { GpuUnavailableError } from "../engine/gpu.ts";
import { SplitPlanError } from "../engine/multi_gpu_plan.ts";
import { ModelNotFoundError } from "../models/model_names.ts";
import { PullError } from "../models/hf_hub.ts";
import { ContextCreateError, DecodeError, ModelLoadError } from "../engine/diagnostics.ts";

/** An error with an HTTP status and OpenAI error fields. */
export class HttpError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** OpenAI error type, e.g. `invalid_request_error`. */
  readonly type: string;
  /** The request field at fault, if any. */
  readonly param: string | null;
  /** Machine-readable code. */
  readonly code: string | null;
  /** Extra response headers (e.g. `Retry-After`). */
  readonly headers: Record<string, string>;
  /** Anthropic's machine-readable `error.details`, where a client acts on them. */
  readonly details: Record<string, unknown> | undefined;

  /**
   * @param status HTTP status.
   * @param message Human message.
   * @param options Type, param, code and headers.
   */
  constructor(
    status: number,
    message: string,
    options: {
      type?: string;
      param?: string;
      code?: string;
      headers?: Record<string, string>;
      details?: Record<string, unknown>;
    } = {},
  ) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.type = options.type ?? defaultType(status);
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
    this.details = options.details;
  }
}

function defaultType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 404) return "not_found_error";
  if (status === 429 || status === 503) return "server_busy_error";
  return status >= 500 ? "server_error" : "invalid_request_error";
}

/** A 400 for a bad request field. */
export function badRequest(message: string, param?: string): HttpError {
  return new HttpError(400, message, { ...(param ? { param } : {}), code: "invalid_value" });
}

/**
 * Maps any thrown value to an {@link HttpError}.
 *
 * @param error What was thrown.
 * @returns The HTTP error to send.
 */
export function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  if (error instanceof ModelNotFoundError) {
    return new HttpError(404, error.message, { param: "model", code: "model_not_found" });
  }
  if (error instanceof PullError) {
    const code = error.code ?? (error.status === 404 ? "model_not_found" : "model_pull_failed");
    return new HttpError(error.status, error.message, { param: "model", code });
  }
  if (error instanceof GenerationError) {
    switch (error.code) {
      case "invalid_request":
        return new HttpError(400, error.message, { code: "invalid_request" });
      case "context_overflow":
        return new HttpError(400, error.message, { code: "context_length_exceeded" });
      case "queue_full":
        return new HttpError(503, error.message, {
          code: "queue_full",
          headers: { "Retry-After": "1" },
        });
      case "unavailable":
        return new HttpError(503, error.message, {
          code: "model_unavailable",
          headers: { "Retry-After": "5" },
        });
      case "closed":
        return new HttpError(503, error.message, { code: "shutting_down" });
      case "decode_failed":
        return new HttpError(502, `The backend failed: ${error.message}`, {
          code: "backend_error",
        });
    }
  }
  if (error instanceof ModelLoadError) {
    return new HttpError(502, error.message, { code: "model_load_failed" });
  }
  if (
    error instanceof GpuUnavailableError || error instanceof ContextCreateError ||
    error instanceof SplitPlanError
  ) {
    return new HttpError(502, error.message, { code: "backend_unavailable" });
  }
  if (error instanceof DecodeError) {
    return new HttpError(502, `The backend failed: ${error.message}`, { code: "backend_error" });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new HttpError(500, `Internal error: ${message || "unknown"}`, { code: "internal_error" });
}

/**
 * The JSON body of an error.
 *
 * @param error The HTTP error.
 * @returns `{"error":{message,type,param,code}}`.
 */
export function errorBody(error: HttpError): { error: Record<string, string | null> } {
  return {
    error: { message: error.message, type: error.type, param: error.param, code: error.code },
  };
}

/** Anthropic's error type for each status; other statuses are `api_error` (5xx) or invalid. */
const ANTHROPIC_ERROR_TYPES: Record<number, string> = {
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  429: "rate_limit_error",
  503: "overloaded_error",
  504: "timeout_error",
  529: "overloaded_error",
};

/**
 * The JSON body of an error on Anthropic's routes.
 *
 * @param error The HTTP error.
 * @returns `{"type":"error","error":{type,message}}`, the type following the status (and the
 *   error's `details`, if any).
 * @example
 * ```ts
 * anthropicErrorBody(new HttpError(404, "No such model")).error.type; // "not_found_error"
 * ```
 */
export function anthropicErrorBody(
  error: HttpError,
): { type: "error"; error: { type: string; message: string; details?: Record<string, unknown> } } {
  const type = ANTHROPIC_ERROR_TYPES[error.status] ??
    (error.status >= 500 ? "api_error" : "invalid_request_error");
  const details = error.details ? { details: error.details } : {};
  return { type: "error", error: { type, message: error.message, ...details } };
}

/**
 * The JSON body of an error on Ollama's routes: its message alone, which Ollama's clients
 * raise as the error's text.
 *
 * @param error The HTTP error.
 * @returns `{"error": message}`.
 * @example
 * ```ts
 * ollamaErrorBody(new HttpError(404, "No such model")); // {error: "No such model"}
 * ```
 */
export function ollamaErrorBody(error: HttpError): { error: string } {
  return { error: error.message };
}

/**
 * The API families whose error bodies differ: OpenAI's (and the native API's), Anthropic's,
 * Ollama's.
 */
export type ErrorShape = "openai" | "anthropic" | "ollama";

/** The error body of each {@link ErrorShape}. */
const ERROR_BODIES: Record<ErrorShape, (error: HttpError) => unknown> = {
  openai: errorBody,
  anthropic: anthropicErrorBody,
  ollama: ollamaErrorBody,
};

/**
 * The response for any thrown value. A 501 (what the model or server cannot do) says
 * `x-should-retry: false`: OpenAI's and Anthropic's SDKs retry every status from 500 on unless
 * told not to, three times for nothing.
 *
 * @param error What was thrown.
 * @param shape The error body's family, after the route. Default `openai`.
 * @returns A JSON error response.
 */
export function errorResponse(error: unknown, shape: ErrorShape = "openai"): Response {
  const http = toHttpError(error);
  const headers = http.status === 501
    ? { "x-should-retry": "false", ...http.headers }
    : http.headers;
  return Response.json(ERROR_BODIES[shape](http), { status: http.status, headers });
}
