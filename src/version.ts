/**
 * Version numbers shown by `shimmy --version`, `/diag` and the API.
 *
 * @module
 */

/** Shimmy's version. */
export const VERSION = "0.1.0";

/** The llama.cpp release the native libraries are built from. */
export const LLAMA_CPP_VERSION = "v0.5.0";
