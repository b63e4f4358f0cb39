/**
 * The Jinja parser: tokens → a tree of statements and expressions, with the same grammar and
 * operator precedence as llama.cpp's template engine (filters bind tighter than unary minus,
 * `in`/`not in` sit with the comparisons, `a if b` without `else` is a select, `{% generation %}`
 * blocks are ignored).
 *
 * @module
 */

import { JinjaSyntaxError, type Token, tokenize } from "./lexer.ts";

/** A node of the template tree; `pos` is its offset in the source. */
export type Node =
  | { kind: "text"; pos: number; value: string }
  | { kind: "comment"; pos: number }
  | { kind: "noop"; pos: number }
  | { kind: "int"; pos: number; value: number }
  | { kind: "float"; pos: number; value: number }
  | { kind: "string"; pos: number; value: string }
  | { kind: "identifier"; pos: number; name: string }
  | { kind: "array"; pos: number; items: Node[] }
  | { kind: "tuple"; pos: number; items: Node[] }
  | { kind: "object"; pos: number; pairs: [Node, Node][] }
  | { kind: "binary"; pos: number; op: string; left: Node; right: Node }
  | { kind: "unary"; pos: number; op: string; operand: Node }
  | { kind: "filter"; pos: number; operand: Node; filter: Node }
  | { kind: "test"; pos: number; operand: Node; negate: boolean; test: Node }
  | { kind: "select"; pos: number; value: Node; test: Node }
  | { kind: "ternary"; pos: number; test: Node; then: Node; otherwise: Node }
  | { kind: "member"; pos: number; object: Node; property: Node; computed: boolean }
  | { kind: "slice"; pos: number; start?: Node; stop?: Node; step?: Node }
  | { kind: "blank"; pos: number }
  | { kind: "call"; pos: number; callee: Node; args: Node[] }
  | { kind: "kwarg"; pos: number; key: Node; value: Node }
  | { kind: "spread"; pos: number; operand: Node }
  | { kind: "if"; pos: number; test: Node; body: Node[]; otherwise: Node[] }
  | { kind: "for"; pos: number; target: Node; iterable: Node; body: Node[]; otherwise: Node[] }
  | { kind: "break"; pos: number }
  | { kind: "continue"; pos: number }
  | { kind: "set"; pos: number; target: Node; value?: Node; body: Node[] }
  | { kind: "macro"; pos: number; name: Node; params: Node[]; body: Node[] }
  | { kind: "callblock"; pos: number; call: Node; callerParams: Node[]; body: Node[] }
  | { kind: "filterblock"; pos: number; filter: Node; body: Node[] };

/** A parsed template. */
export interface Program {
  /** Top-level statements. */
  readonly body: Node[];
  /** The normalised source (for error positions). */
  readonly source: string;
}

class Parser {
  #tokens: Token[];
  #source: string;
  #current = 0;

  constructor(tokens: Token[], source: string) {
    this.#tokens = tokens;
    this.#source = source;
  }

  parse(): Node[] {
    const body: Node[] = [];
    while (this.#current < this.#tokens.length) body.push(this.#any());
    return body;
  }

  /** The offset in the source of the token being parsed (of the last one at the end). */
  position(): number {
    const token = this.#tokens[Math.min(this.#current, this.#tokens.length - 1)];
    return token?.pos ?? 0;
  }

  #peek(offset = 0): Token {
    return this.#tokens[this.#current + offset] ?? { type: "text", value: "", pos: -1 };
  }

  #eof(): boolean {
    return this.#current >= this.#tokens.length;
  }

  #error(message: string, token?: Token): JinjaSyntaxError {
    const t = token ?? this.#peek();
    const pos = t.pos >= 0 ? t.pos : this.#tokens[this.#tokens.length - 1]?.pos ?? 0;
    return new JinjaSyntaxError(message, this.#source, pos);
  }

  #next(): Token {
    if (this.#eof()) throw this.#error("Unexpected end of template");
    return this.#tokens[this.#current++]!;
  }

  #is(type: Token["type"]): boolean {
    return !this.#eof() && this.#peek().type === type;
  }

  #expect(type: Token["type"], what: string): Token {
    if (!this.#is(type)) {
      throw this.#error(
        `Expected ${what} (got ${this.#eof() ? "end of template" : this.#peek().value})`,
      );
    }
    return this.#tokens[this.#current++]!;
  }

  #isIdentifier(name: string): boolean {
    return this.#is("identifier") && this.#peek().value === name;
  }

  #expectIdentifier(name: string): void {
    if (!this.#isIdentifier(name)) throw this.#error(`Expected ${name}`);
    this.#current++;
  }

  #isStatement(names: readonly string[]): boolean {
    if (this.#eof()) throw this.#error(`Expected {% ${names.join(" or ")} %} before the end`);
    return this.#peek().type === "open_statement" && this.#peek(1).type === "identifier" &&
      names.includes(this.#peek(1).value);
  }

  #any(): Node {
    const t = this.#peek();
    switch (t.type) {
      case "comment":
        this.#current++;
        return { kind: "comment", pos: t.pos };
      case "text":
        this.#current++;
        return { kind: "text", pos: t.pos, value: t.value };
      case "open_statement":
        return this.#statement();
      case "open_expression": {
        this.#current++;
        const expr = this.#expression();
        this.#expect("close_expression", "}}");
        return expr;
      }
      default:
        throw this.#error(`Unexpected ${t.value}`);
    }
  }

  #endTag(name: string): void {
    this.#expect("open_statement", "{%");
    this.#expectIdentifier(name);
    this.#expect("close_statement", "%}");
  }

  #until(names: readonly string[]): Node[] {
    const body: Node[] = [];
    while (!this.#isStatement(names)) body.push(this.#any());
    return body;
  }

  #statement(): Node {
    this.#expect("open_statement", "{%");
    if (!this.#is("identifier")) throw this.#error("Unknown statement");
    const start = this.#next();
    const pos = start.pos;
    switch (start.value) {
      case "set":
        return this.#set(pos);
      case "if": {
        const node = this.#if(pos);
        this.#endTag("endif");
        return node;
      }
      case "macro": {
        const name = this.#primary();
        const params = this.#args();
        this.#expect("close_statement", "%}");
        const body = this.#until(["endmacro"]);
        this.#endTag("endmacro");
        return { kind: "macro", pos, name, params, body };
      }
      case "for": {
        const node = this.#for(pos);
        this.#endTag("endfor");
        return node;
      }
      case "break":
        this.#expect("close_statement", "%}");
        return { kind: "break", pos };
      case "continue":
        this.#expect("close_statement", "%}");
        return { kind: "continue", pos };
      case "call": {
        const callerParams = this.#is("open_paren") ? this.#args() : [];
        const callee = this.#primary();
        if (callee.kind !== "identifier") throw this.#error("Expected identifier");
        const args = this.#args();
        this.#expect("close_statement", "%}");
        const body = this.#until(["endcall"]);
        this.#endTag("endcall");
        return {
          kind: "callblock",
          pos,
          call: { kind: "call", pos, callee, args },
          callerParams,
          body,
        };
      }
      case "filter": {
        let filter = this.#primary();
        if (filter.kind === "identifier" && this.#is("open_paren")) filter = this.#call(filter);
        this.#expect("close_statement", "%}");
        const body = this.#until(["endfilter"]);
        this.#endTag("endfilter");
        return { kind: "filterblock", pos, filter, body };
      }
      case "generation":
      case "endgeneration":
        this.#current++;
        return { kind: "noop", pos };
      default:
        throw this.#error(`Unknown statement: ${start.value}`, start);
    }
  }

  #set(pos: number): Node {
    const target = this.#sequence();
    if (this.#is("equals")) {
      this.#current++;
      const value = this.#sequence();
      this.#expect("close_statement", "%}");
      return { kind: "set", pos, target, value, body: [] };
    }
    this.#expect("close_statement", "%}");
    const body = this.#until(["endset"]);
    this.#expect("open_statement", "{%");
    this.#expectIdentifier("endset");
    this.#expect("close_statement", "%}");
    return { kind: "set", pos, target, body };
  }

  #if(pos: number): Node {
    const test = this.#expression();
    this.#expect("close_statement", "%}");
    const body = this.#until(["elif", "else", "endif"]);
    let otherwise: Node[] = [];
    if (this.#isStatement(["elif"])) {
      const elifPos = this.#peek().pos;
      this.#current += 2;
      otherwise = [this.#if(elifPos)];
    } else if (this.#isStatement(["else"])) {
      this.#current += 2;
      this.#expect("close_statement", "%}");
      otherwise = this.#until(["endif"]);
    }
    return { kind: "if", pos, test, body, otherwise };
  }

  #for(pos: number): Node {
    const target = this.#sequence(true);
    if (!this.#isIdentifier("in")) throw this.#error("Expected 'in'");
    this.#current++;
    const iterable = this.#expression();
    this.#expect("close_statement", "%}");
    const body = this.#until(["endfor", "else"]);
    let otherwise: Node[] = [];
    if (this.#isStatement(["else"])) {
      this.#current += 2;
      this.#expect("close_statement", "%}");
      otherwise = this.#until(["endfor"]);
    }
    return { kind: "for", pos, target, iterable, body, otherwise };
  }

  #sequence(primary = false): Node {
    const pos = this.#peek().pos;
    const items = [primary ? this.#primary() : this.#expression()];
    const isTuple = this.#is("comma");
    while (this.#is("comma")) {
      this.#current++;
      items.push(primary ? this.#primary() : this.#expression());
    }
    return isTuple ? { kind: "tuple", pos, items } : items[0]!;
  }

  #expression(): Node {
    const value = this.#or();
    if (this.#isIdentifier("if")) {
      const pos = this.#peek().pos;
      this.#current++;
      const test = this.#or();
      if (this.#isIdentifier("else")) {
        const elsePos = this.#peek().pos;
        this.#current++;
        const otherwise = this.#expression();
        return { kind: "ternary", pos: elsePos, test, then: value, otherwise };
      }
      return { kind: "select", pos, value, test };
    }
    return value;
  }

  #or(): Node {
    let left = this.#and();
    while (this.#isIdentifier("or")) {
      const op = this.#next();
      left = { kind: "binary", pos: op.pos, op: "or", left, right: this.#and() };
    }
    return left;
  }

  #and(): Node {
    let left = this.#not();
    while (this.#isIdentifier("and")) {
      const op = this.#next();
      left = { kind: "binary", pos: op.pos, op: "and", left, right: this.#not() };
    }
    return left;
  }

  #not(): Node {
    if (this.#isIdentifier("not")) {
      const op = this.#next();
      return { kind: "unary", pos: op.pos, op: "not", operand: this.#not() };
    }
    return this.#comparison();
  }

  #comparison(): Node {
    let left = this.#additive();
    while (true) {
      const t = this.#peek();
      let op: string;
      if (
        this.#isIdentifier("not") && this.#peek(1).type === "identifier" &&
        this.#peek(1).value === "in"
      ) {
        this.#current += 2;
        op = "not in";
      } else if (this.#isIdentifier("in")) {
        this.#current++;
        op = "in";
      } else if (this.#is("comparison")) {
        op = this.#next().value;
      } else break;
      left = { kind: "binary", pos: t.pos, op, left, right: this.#additive() };
    }
    return left;
  }

  #additive(): Node {
    let left = this.#multiplicative();
    while (this.#is("additive")) {
      const op = this.#next();
      left = { kind: "binary", pos: op.pos, op: op.value, left, right: this.#multiplicative() };
    }
    return left;
  }

  #multiplicative(): Node {
    let left = this.#test();
    while (this.#is("multiplicative")) {
      const op = this.#next();
      left = { kind: "binary", pos: op.pos, op: op.value, left, right: this.#test() };
    }
    return left;
  }

  #test(): Node {
    let operand = this.#filter();
    while (this.#isIdentifier("is")) {
      const pos = this.#next().pos;
      let negate = false;
      if (this.#isIdentifier("not")) {
        this.#current++;
        negate = true;
      }
      let test = this.#primary();
      if (this.#is("open_paren")) test = this.#call(test);
      operand = { kind: "test", pos, operand, negate, test };
    }
    return operand;
  }

  #filter(): Node {
    let operand = this.#unary();
    while (this.#is("pipe")) {
      const pos = this.#next().pos;
      let filter = this.#primary();
      if (this.#is("open_paren")) filter = this.#call(filter);
      operand = { kind: "filter", pos, operand, filter };
    }
    return operand;
  }

  #unary(): Node {
    if (this.#is("unary")) {
      const op = this.#next();
      return { kind: "unary", pos: op.pos, op: op.value, operand: this.#unary() };
    }
    const member = this.#member(this.#primary());
    return this.#is("open_paren") ? this.#call(member) : member;
  }

  #call(callee: Node): Node {
    const pos = this.#peek().pos;
    const call: Node = { kind: "call", pos, callee, args: this.#args() };
    const member = this.#member(call);
    return this.#is("open_paren") ? this.#call(member) : member;
  }

  #args(): Node[] {
    this.#expect("open_paren", "(");
    const args: Node[] = [];
    while (!this.#is("close_paren")) {
      if (this.#eof()) throw this.#error("Expected )");
      let arg: Node;
      if (this.#is("multiplicative") && this.#peek().value === "*") {
        const pos = this.#next().pos;
        arg = { kind: "spread", pos, operand: this.#expression() };
      } else {
        arg = this.#expression();
        if (this.#is("equals")) {
          const pos = this.#next().pos;
          arg = { kind: "kwarg", pos, key: arg, value: this.#expression() };
        }
      }
      args.push(arg);
      if (this.#is("comma")) this.#current++;
    }
    this.#expect("close_paren", ")");
    return args;
  }

  #member(object: Node): Node {
    const pos = this.#peek().pos;
    while (this.#is("dot") || this.#is("open_square")) {
      const op = this.#next();
      const computed = op.type === "open_square";
      let property: Node;
      if (computed) {
        property = this.#subscript();
        this.#expect("close_square", "]");
      } else {
        property = this.#primary();
      }
      object = { kind: "member", pos, object, property, computed };
    }
    return object;
  }

  #subscript(): Node {
    const pos = this.#peek().pos;
    const parts: (Node | undefined)[] = [];
    let isSlice = false;
    while (!this.#is("close_square")) {
      if (this.#eof()) throw this.#error("Expected ]");
      if (this.#is("colon")) {
        parts.push(undefined);
        this.#current++;
        isSlice = true;
      } else {
        parts.push(this.#expression());
        if (this.#is("colon")) {
          this.#current++;
          isSlice = true;
        }
      }
    }
    if (isSlice) {
      const node: Node = { kind: "slice", pos };
      if (parts[0]) node.start = parts[0];
      if (parts[1]) node.stop = parts[1];
      if (parts[2]) node.step = parts[2];
      return node;
    }
    return parts[0] ?? { kind: "blank", pos };
  }

  #primary(): Node {
    const t = this.#next();
    switch (t.type) {
      case "number":
        return t.value.includes(".")
          ? { kind: "float", pos: t.pos, value: Number(t.value) }
          : { kind: "int", pos: t.pos, value: Number(t.value) };
      case "string": {
        let value = t.value;
        while (this.#is("string")) value += this.#next().value;
        return { kind: "string", pos: t.pos, value };
      }
      case "identifier":
        return { kind: "identifier", pos: t.pos, name: t.value };
      case "open_paren": {
        const expr = this.#sequence();
        this.#expect("close_paren", ")");
        return expr;
      }
      case "open_square": {
        const items: Node[] = [];
        while (!this.#is("close_square")) {
          if (this.#eof()) throw this.#error("Expected ]");
          items.push(this.#expression());
          if (this.#is("comma")) this.#current++;
        }
        this.#current++;
        return { kind: "array", pos: t.pos, items };
      }
      case "open_curly": {
        const pairs: [Node, Node][] = [];
        while (!this.#is("close_curly")) {
          if (this.#eof()) throw this.#error("Expected }");
          const key = this.#expression();
          this.#expect("colon", ":");
          pairs.push([key, this.#expression()]);
          if (this.#is("comma")) this.#current++;
        }
        this.#current++;
        return { kind: "object", pos: t.pos, pairs };
      }
      default:
        throw this.#error(`Unexpected token: ${t.value}`, t);
    }
  }
}

/**
 * Parses a template.
 *
 * @param source The template text.
 * @returns The program.
 * @throws {JinjaSyntaxError} When it does not tokenize or parse, or nests too deeply to parse.
 * @example
 * ```ts
 * parseTemplate("{% for m in messages %}{{ m.content }}{% endfor %}").body[0]?.kind; // "for"
 * ```
 */
export function parseTemplate(source: string): Program {
  const lexed = tokenize(source);
  const parser = new Parser(lexed.tokens, lexed.source);
  try {
    return { body: parser.parse(), source: lexed.source };
  } catch (error) {
    // Thousands of nested brackets or blocks exhaust the stack of the recursive descent.
    if (!(error instanceof RangeError)) throw error;
    throw new JinjaSyntaxError("The template nests too deeply", lexed.source, parser.position());
  }
}
