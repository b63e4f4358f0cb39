/**
 * Which names a file that a request or a download names may have inside the folder Shimmy keeps it
 * in (a slot file in `--slot-save-path`, a pulled model in the models folder): one plain file
 * name, the same on every OS, so that no name reaches a file outside the folder or one that
 * Windows would name differently. The rules are llama-server's for slot files: no path separators
 * or `..`, no characters that Windows forbids or that look like them, no control characters, no
 * leading or trailing space, no trailing dot, at most 255 bytes.
 *
 * @module
 */

/** Characters no name may hold besides control ones: separators, Windows' reserved ones, their
 * look-alikes, markers. */
const FORBIDDEN = /[/\\:*?"<>|\uff0e\u2215\u2216\ufffd\ufeff]/;

/** The most bytes a file name takes on common file systems. */
const MAX_NAME_BYTES = 255;

/**
 * Why a file name is refused, or undefined when it is fine.
 *
 * @param name The name a request gave.
 * @returns What is wrong with it.
 * @example
 * ```ts
 * plainFileNameProblem("chat.bin"); // undefined
 * plainFileNameProblem("../etc/passwd"); // "it holds \"/\" …"
 * ```
 */
export function plainFileNameProblem(name: string): string | undefined {
  if (name.length === 0) return "it is empty";
  if (new TextEncoder().encode(name).length > MAX_NAME_BYTES) {
    return `it is longer than ${MAX_NAME_BYTES} bytes`;
  }
  if (!name.isWellFormed()) return "it holds a lone UTF-16 surrogate";
  const forbidden = [...name].find(isControl) ?? FORBIDDEN.exec(name)?.[0];
  if (forbidden !== undefined) {
    return `it holds ${JSON.stringify(forbidden)}: a plain file name is needed, no folders`;
  }
  if (name.startsWith(" ") || name.endsWith(" ")) return "it starts or ends with a space";
  if (name.endsWith(".")) return "it ends with a dot";
  if (name.includes("..")) return 'it holds ".."';
  return undefined;
}

/** Whether a character is a C0 or C1 control character, or DEL. */
function isControl(char: string): boolean {
  const code = char.codePointAt(0) as number;
  return code <= 0x1f || (code >= 0x7f && code <= 0x9f);
}
