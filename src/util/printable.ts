/**
 * Text from files (model file names, GGUF metadata) made safe to print on a terminal.
 *
 * @module
 */

/**
 * Writes control characters as escapes, so that a name holding a newline stays on its line and
 * one holding an escape sequence cannot recolor or rewrite the terminal.
 *
 * @param text Any text.
 * @returns The text, with C0 and C1 control characters and DEL as `\n`, `\t`, `\r` or `\xNN`,
 *   and backslashes as they are.
 * @example
 * ```ts
 * printable("we\nird"); // "we\\nird"
 * ```
 */
export function printable(text: string): string {
  let out = "";
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (code >= 0x20 && (code < 0x7f || code > 0x9f)) out += char;
    else if (char === "\n") out += "\\n";
    else if (char === "\t") out += "\\t";
    else if (char === "\r") out += "\\r";
    else out += `\\x${code.toString(16).padStart(2, "0")}`;
  }
  return out;
}
