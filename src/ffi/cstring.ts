/**
 * C string and pointer helpers for the FFI layer.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Encodes a JavaScript string as a NUL-terminated UTF-8 buffer for a `const char *` argument.
 *
 * @param text The string.
 * @returns A buffer the caller keeps alive for as long as C may read it.
 * @example
 * ```ts
 * symbols.llama_model_load_from_file(cString("/models/a.gguf"), params);
 * ```
 */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/**
 * Reads a NUL-terminated C string, or returns undefined for a null pointer.
 *
 * @param pointer The `const char *`.
 * @returns The decoded string.
 */
export function readCString(pointer: Deno.PointerValue): string | undefined {
  return pointer === null ? undefined : Deno.UnsafePointerView.getCString(pointer);
}

/**
 * Calls a C function that writes a string into a caller buffer and returns the length it
 * needs (llama.cpp's `snprintf` convention), growing the buffer once when it was too small.
 *
 * @param write The call, given a buffer and its size.
 * @param initialSize First buffer size. Default 256.
 * @returns The string, or undefined when the call returned a negative value.
 */
export function readIntoBuffer(
  write: (buf: Uint8Array<ArrayBuffer>, size: number) => number,
  initialSize = 256,
): string | undefined {
  let buf = new Uint8Array(initialSize);
  let n = write(buf, buf.length);
  if (n < 0) return undefined;
  if (n >= buf.length) {
    buf = new Uint8Array(n + 1);
    n = write(buf, buf.length);
    if (n < 0) return undefined;
  }
  return decoder.decode(buf.subarray(0, n));
}

/**
 * A writable view of native memory owned by C (for `llama_batch` arrays and logits).
 *
 * @param pointer Start of the memory.
 * @param byteLength Its length in bytes.
 * @returns An ArrayBuffer over that memory; it dangles once C frees the memory.
 */
export function nativeBuffer(pointer: Deno.PointerObject, byteLength: number): ArrayBuffer {
  return Deno.UnsafePointerView.getArrayBuffer(pointer, byteLength);
}
