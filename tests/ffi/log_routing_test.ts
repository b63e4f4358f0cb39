import { equal, notEqual, ok } from "node:assert/strict";
import { findLibraryFile } from "../../src/ffi/library.ts";
import { Llama } from "../../src/ffi/llama.ts";
import { exportedFunction } from "../../src/ffi/symbol_address.ts";

/** Reads ggml's current logger through a second binding of the same, already loaded library. */
function ggmlLogger(file: string): bigint {
  const lib = Deno.dlopen(
    file,
    {
      ggml_log_get: { parameters: ["buffer", "buffer"], result: "void" },
    } as const,
  );
  try {
    const callback = new BigUint64Array(1);
    const userData = new BigUint64Array(1);
    lib.symbols.ggml_log_get(new Uint8Array(callback.buffer), new Uint8Array(userData.buffer));
    return callback[0] as bigint;
  } finally {
    lib.close();
  }
}

Deno.test("exportedFunction() finds a function of a loaded library and nothing else", () => {
  const llama = Llama.open();
  const file = findLibraryFile(llama.libDir, "ggml-base") as string;
  ok(exportedFunction(file, "ggml_time_us") !== null);
  equal(exportedFunction(file, "no_such_function_anywhere"), null);
  equal(exportedFunction("/nonexistent/libnothing.so", "ggml_time_us"), null);
});

Deno.test("ggml's log bypasses the callback during decodes and reaches it during loads and when verbose", async () => {
  const llama = Llama.open();
  const file = findLibraryFile(llama.libDir, "ggml-base") as string;
  const sink = BigInt(Deno.UnsafePointer.value(exportedFunction(file, "ggml_time_us")));
  const wasVerbose = llama.verbose;
  llama.verbose = false;
  try {
    equal(ggmlLogger(file), sink, "idle: ggml's lines go to the native sink");
    let during = 0n;
    await llama.whileNative(async () => {
      during = ggmlLogger(file);
      return await llama.symbols.llama_time_us_nonblocking();
    });
    notEqual(during, sink, "a load-like call routes ggml's log to the callback");
    equal(ggmlLogger(file), sink, "and stops when it ends");
    await llama.whileNative(async () => {
      during = ggmlLogger(file);
      return await llama.symbols.llama_time_us_nonblocking();
    }, { ggmlLog: false });
    equal(during, sink, "a decode-like call leaves ggml's log in the sink");
    llama.verbose = true;
    notEqual(ggmlLogger(file), sink, "verbose shows everything");
  } finally {
    llama.verbose = wasVerbose;
  }
});
