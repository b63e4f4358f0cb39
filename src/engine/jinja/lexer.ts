/**
 * The Jinja lexer. It follows llama.cpp's template engine (`common/jinja`), which chat
 * templates are written and tested against: line endings become `\n`, one trailing newline is
 * dropped, `lstrip_blocks` and `trim_blocks` are on (as in Hugging Face's chat-template
 * settings), `{%-`/`-%}` strip the neighbouring whitespace, and a `-` or `+` that cannot end
 * an operand starts a unary operator or a signed number.
 *
 * @module
 */

/** Token kinds. */
export type TokenType =
  | "text"
  | "number"
  | "string"
  | "identifier"
  | "equals"
  | "open_paren"
  | "close_paren"
  | "open_statement"
  | "close_statement"
  | "open_expression"
  | "close_expression"
  | "open_square"
  | "close_square"
  | "open_curly"
  | "close_curly"
  | "comma"
  | "dot"
  | "colon"
  | "pipe"
  | "additive"
  | "multiplicative"
  | "comparison"
  | "unary"
  | "comment";

/** One token, with its offset in the (normalised) source. */
export interface Token {
  readonly type: TokenType;
  readonly value: string;
  readonly pos: number;
}

/** A template that cannot be tokenized or parsed, with the place it fails. */
export class JinjaSyntaxError extends Error {
  /**
   * @param message What is wrong.
   * @param source The template source.
   * @param pos Offset of the fault.
   */
  constructor(message: string, source: string, pos: number) {
    super(`${message} at ${lineColumn(source, pos)}`);
    this.name = "JinjaSyntaxError";
  }
}

/**
 * Line and column (1-based) of an offset.
 *
 * @param source The text.
 * @param pos The offset.
 * @returns `line L, column C`.
 */
export function lineColumn(source: string, pos: number): string {
  let line = 1;
  let col = 1;
  for (let i = 0; i < pos && i < source.length; i++) {
    if (source[i] === "\n") {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  return `line ${line}, column ${col}`;
}

const ESCAPES: Readonly<Record<string, string>> = {
  n: "\n",
  t: "\t",
  r: "\r",
  b: "\b",
  f: "\f",
  v: "\v",
  "\\": "\\",
  "'": "'",
  '"': '"',
};

const MAPPING: readonly (readonly [string, TokenType])[] = [
  ["{%-", "open_statement"],
  ["-%}", "close_statement"],
  ["{{-", "open_expression"],
  ["-}}", "close_expression"],
  ["{%", "open_statement"],
  ["%}", "close_statement"],
  ["{{", "open_expression"],
  ["}}", "close_expression"],
  ["(", "open_paren"],
  [")", "close_paren"],
  ["{", "open_curly"],
  ["}", "close_curly"],
  ["[", "open_square"],
  ["]", "close_square"],
  [",", "comma"],
  [".", "dot"],
  [":", "colon"],
  ["|", "pipe"],
  ["<=", "comparison"],
  [">=", "comparison"],
  ["==", "comparison"],
  ["!=", "comparison"],
  ["<", "comparison"],
  [">", "comparison"],
  ["+", "additive"],
  ["-", "additive"],
  ["~", "additive"],
  ["*", "multiplicative"],
  ["/", "multiplicative"],
  ["%", "multiplicative"],
  ["=", "equals"],
];

/** C `isspace` over one character (ASCII whitespace only). */
export function isSpace(c: string | undefined): boolean {
  return c === " " || c === "\t" || c === "\n" || c === "\v" || c === "\f" || c === "\r";
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "9";
}

function isWord(c: string | undefined): boolean {
  return c !== undefined && /^[A-Za-z0-9_]$/.test(c);
}

function lstrip(s: string): string {
  let i = 0;
  while (i < s.length && isSpace(s[i])) i++;
  return s.slice(i);
}

function rstrip(s: string): string {
  let i = s.length;
  while (i > 0 && isSpace(s[i - 1])) i--;
  return s.slice(0, i);
}

/**
 * Splits a template into tokens.
 *
 * @param source The template.
 * @returns The tokens and the normalised source their offsets refer to.
 * @throws {JinjaSyntaxError} On an unknown character or escape, or an unclosed comment.
 * @example
 * ```ts
 * tokenize("{{ x }}").tokens.map((t) => t.type); // ["open_expression", "identifier", "close_expression"]
 * ```
 */
export function tokenize(source: string): { tokens: Token[]; source: string } {
  const tokens: Token[] = [];
  if (source === "") return { tokens, source };
  let src = source.replaceAll("\r\n", "\n").replaceAll("\r", "\n");
  if (source.endsWith("\n")) src = src.slice(0, -1);

  let pos = 0;
  let curlyDepth = 0;
  const at = (i: number) => src[i];
  const nextIs = (chars: string, n = 1) => pos + n < src.length && chars.includes(src[pos + n]!);
  const consumeWhile = (pred: (c: string) => boolean): string => {
    let out = "";
    while (pos < src.length && pred(src[pos]!)) {
      if (src[pos] === "\\") {
        pos++;
        if (pos >= src.length) {
          throw new JinjaSyntaxError("Unexpected end of input after escape character", src, pos);
        }
        const escaped = src[pos++]!;
        const value = ESCAPES[escaped];
        if (value === undefined) {
          throw new JinjaSyntaxError(`Unknown escape character \\${escaped}`, src, pos);
        }
        out += value;
        continue;
      }
      out += src[pos++];
    }
    return out;
  };
  const consumeNumeric = (): string => {
    let num = consumeWhile(isDigit);
    if (at(pos) === "." && isDigit(at(pos + 1))) {
      pos++;
      num += "." + consumeWhile(isDigit);
    }
    return num;
  };

  while (pos < src.length) {
    let start = pos;
    const last = tokens.length === 0 ? "close_statement" : tokens[tokens.length - 1]!.type;
    if (last === "close_statement" || last === "close_expression" || last === "comment") {
      let canRemoveNewline = false;
      let rstripBlock = false;
      if (pos > 3) {
        const c0 = src[pos - 3];
        const c1 = src[pos - 2];
        const c2 = src[pos - 1];
        rstripBlock = c0 === "-" && (c1 === "%" || c1 === "}" || c1 === "#") && c2 === "}";
        canRemoveNewline = (c1 === "#" || c1 === "%" || c1 === "-") && c2 === "}";
      }
      const textStart = pos;
      let end = textStart;
      while (pos < src.length && !(src[pos] === "{" && nextIs("%{#"))) end = ++pos;
      if (src[pos] === "{" && nextIs("%#-")) {
        // lstrip_blocks: spaces between a line start and a block tag go
        let current = end;
        while (current > textStart) {
          const c = src[current - 1];
          if (current === 1) {
            end = 0;
            break;
          }
          if (c === "\n") {
            end = current;
            break;
          }
          if (!isSpace(c)) break;
          current--;
        }
      }
      let text = src.slice(textStart, end);
      if (canRemoveNewline && text.startsWith("\n")) text = text.slice(1); // trim_blocks
      if (rstripBlock) text = lstrip(text);
      if (src[pos] === "{" && nextIs("{%#") && nextIs("-", 2)) text = rstrip(text);
      if (text !== "") {
        tokens.push({ type: "text", value: text, pos: textStart });
        continue;
      }
    }

    if (src[pos] === "{" && nextIs("#")) {
      start = pos;
      pos += 2;
      let comment = "";
      while (!(src[pos] === "#" && nextIs("}"))) {
        if (pos + 2 >= src.length) {
          throw new JinjaSyntaxError("Missing end of comment tag", src, pos);
        }
        comment += src[pos++];
      }
      tokens.push({ type: "comment", value: comment, pos: start });
      pos += 2;
      continue;
    }

    if (src[pos] === "-" && (last === "open_expression" || last === "open_statement")) {
      pos++;
      if (pos >= src.length) break;
    }
    while (pos < src.length && isSpace(src[pos])) pos++;
    if (pos >= src.length) break;

    const ch = src[pos]!;
    const closing = ch === "-" && nextIs("%}");
    if (!closing && (ch === "-" || ch === "+")) {
      start = pos;
      const lastType = tokens.length === 0 ? undefined : tokens[tokens.length - 1]!.type;
      if (lastType === "text" || lastType === undefined) {
        throw new JinjaSyntaxError(`Unexpected character: ${ch}`, src, pos);
      }
      if (
        lastType !== "identifier" && lastType !== "number" && lastType !== "string" &&
        lastType !== "close_paren" && lastType !== "close_square"
      ) {
        pos++;
        const num = consumeNumeric();
        tokens.push({ type: num === "" ? "unary" : "number", value: ch + num, pos: start });
        continue;
      }
    }

    let matched = false;
    for (const [seq, type] of MAPPING) {
      if (seq === "}}" && curlyDepth > 0) continue;
      if (src.startsWith(seq, pos)) {
        tokens.push({ type, value: seq, pos });
        if (type === "open_expression") curlyDepth = 0;
        else if (type === "open_curly") curlyDepth++;
        else if (type === "close_curly") curlyDepth--;
        pos += seq.length;
        matched = true;
        break;
      }
    }
    if (matched) continue;

    if (ch === "'" || ch === '"') {
      start = pos;
      pos++;
      const str = consumeWhile((c) => c !== ch);
      tokens.push({ type: "string", value: str, pos: start });
      pos++;
      continue;
    }
    if (isDigit(ch)) {
      start = pos;
      tokens.push({ type: "number", value: consumeNumeric(), pos: start });
      continue;
    }
    if (isWord(ch)) {
      start = pos;
      tokens.push({ type: "identifier", value: consumeWhile(isWord), pos: start });
      continue;
    }
    throw new JinjaSyntaxError(`Unexpected character: ${ch}`, src, pos);
  }
  return { tokens, source: src };
}
