/**
 * Questions about paths that every layer asks (the CLI, model discovery and pulls, the library
 * extraction of a compiled binary), answered the same way: a path that cannot be examined does
 * not count as there.
 *
 * @module
 */

/**
 * Whether something exists at a path (a file, a folder, or what a symlink points to).
 *
 * @param path The path.
 * @returns False also when it cannot be examined (no permission).
 * @example
 * ```ts
 * if (!pathExists("models")) Deno.mkdirSync("models");
 * ```
 */
export function pathExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a path names an existing file (following symlinks).
 *
 * @param path The path.
 * @returns False for folders, missing paths and paths that cannot be examined.
 * @example
 * ```ts
 * isFile("./models/phi3.gguf");
 * ```
 */
export function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
