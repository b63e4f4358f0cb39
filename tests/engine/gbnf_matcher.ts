/**
 * A small GBNF matcher for tests: parses a grammar (the syntax llama.cpp reads) and tells
 * whether a whole text matches its `root` rule. It computes the set of end positions of each
 * expression at each start position, memoized per rule, so it is exact for any grammar
 * without left recursion. Slow on long texts, fine for test instances.
 *
 * @module
 */

type Node =
  | { kind: "lit"; codes: number[] }
  | { kind: "class"; ranges: [number, number][]; negated: boolean }
  | { kind: "ref"; name: string }
  | { kind: "any" }
  | { kind: "seq"; items: Node[] }
  | { kind: "alt"; branches: Node[] }
  | { kind: "rep"; node: Node; min: number; max: number };

const ESCAPES: Record<string, number> = { n: 10, r: 13, t: 9 };

class Parser {
  #pos = 0;
  readonly rules = new Map<string, Node>();
  constructor(readonly src: string) {}

  #space(newlines: boolean): void {
    while (this.#pos < this.src.length) {
      const c = this.src[this.#pos]!;
      if (c === "#") {
        while (this.#pos < this.src.length && this.src[this.#pos] !== "\n") this.#pos++;
      } else if (c === " " || c === "\t" || (newlines && (c === "\n" || c === "\r"))) this.#pos++;
      else break;
    }
  }

  #name(): string {
    const m = /^[a-zA-Z0-9-]+/.exec(this.src.slice(this.#pos));
    if (!m) {
      throw new Error(
        `Name expected at ${this.#pos}: ${this.src.slice(this.#pos, this.#pos + 20)}`,
      );
    }
    this.#pos += m[0].length;
    return m[0];
  }

  parse(): Map<string, Node> {
    this.#space(true);
    while (this.#pos < this.src.length) {
      const name = this.#name();
      this.#space(false);
      if (!this.src.startsWith("::=", this.#pos)) throw new Error(`::= expected after ${name}`);
      this.#pos += 3;
      this.#space(false);
      this.rules.set(name, this.#alternatives(false));
      this.#space(true);
    }
    return this.rules;
  }

  #alternatives(nested: boolean): Node {
    const branches = [this.#sequence(nested)];
    while (this.src[this.#pos] === "|") {
      this.#pos++;
      this.#space(true);
      branches.push(this.#sequence(nested));
    }
    return branches.length === 1 ? branches[0]! : { kind: "alt", branches };
  }

  #sequence(nested: boolean): Node {
    const items: Node[] = [];
    while (this.#pos < this.src.length) {
      const c = this.src[this.#pos]!;
      if (c === "|" || c === ")" || (!nested && (c === "\n" || c === "\r"))) break;
      let item: Node;
      if (c === '"') item = { kind: "lit", codes: this.#quoted('"') };
      else if (c === "[") item = this.#class();
      else if (c === ".") {
        this.#pos++;
        item = { kind: "any" };
      } else if (c === "(") {
        this.#pos++;
        this.#space(true);
        item = this.#alternatives(true);
        if (this.src[this.#pos] !== ")") throw new Error(`) expected at ${this.#pos}`);
        this.#pos++;
      } else item = { kind: "ref", name: this.#name() };
      this.#space(nested);
      item = this.#quantifier(item, nested);
      items.push(item);
    }
    return { kind: "seq", items };
  }

  #quantifier(item: Node, nested: boolean): Node {
    while (true) {
      const c = this.src[this.#pos];
      let min: number;
      let max: number;
      if (c === "*") [min, max] = [0, Infinity];
      else if (c === "+") [min, max] = [1, Infinity];
      else if (c === "?") [min, max] = [0, 1];
      else if (c === "{") {
        const m = /^\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}/.exec(this.src.slice(this.#pos))!;
        min = Number(m[1]);
        max = m[2] === undefined ? min : m[3] === "" ? Infinity : Number(m[3]);
        this.#pos += m[0].length - 1;
      } else return item;
      this.#pos++;
      this.#space(nested);
      item = { kind: "rep", node: item, min, max };
    }
  }

  #char(): number {
    const c = this.src[this.#pos]!;
    if (c !== "\\") {
      const code = this.src.codePointAt(this.#pos)!;
      this.#pos += code > 0xffff ? 2 : 1;
      return code;
    }
    const e = this.src[this.#pos + 1]!;
    this.#pos += 2;
    const digits = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
    if (digits > 0) {
      const code = parseInt(this.src.slice(this.#pos, this.#pos + digits), 16);
      this.#pos += digits;
      return code;
    }
    return ESCAPES[e] ?? e.codePointAt(0)!;
  }

  #quoted(end: string): number[] {
    this.#pos++;
    const codes: number[] = [];
    while (this.src[this.#pos] !== end) codes.push(this.#char());
    this.#pos++;
    return codes;
  }

  #class(): Node {
    this.#pos++;
    const negated = this.src[this.#pos] === "^";
    if (negated) this.#pos++;
    const ranges: [number, number][] = [];
    while (this.src[this.#pos] !== "]") {
      const from = this.#char();
      if (this.src[this.#pos] === "-" && this.src[this.#pos + 1] !== "]") {
        this.#pos++;
        ranges.push([from, this.#char()]);
      } else ranges.push([from, from]);
    }
    this.#pos++;
    return { kind: "class", ranges, negated };
  }
}

/** A parsed grammar that can test texts. */
export class GbnfMatcher {
  readonly #rules: Map<string, Node>;

  /** @param grammar GBNF text. */
  constructor(grammar: string) {
    this.#rules = new Parser(grammar).parse();
    for (const [name, node] of this.#rules) this.#checkRefs(node, name);
  }

  #checkRefs(node: Node, rule: string): void {
    if (node.kind === "ref" && !this.#rules.has(node.name)) {
      throw new Error(`Rule ${rule} refers to undefined ${node.name}`);
    }
    if (node.kind === "seq") node.items.forEach((n) => this.#checkRefs(n, rule));
    if (node.kind === "alt") node.branches.forEach((n) => this.#checkRefs(n, rule));
    if (node.kind === "rep") this.#checkRefs(node.node, rule);
  }

  /**
   * Whether the whole text matches the root rule.
   *
   * @param text The text.
   * @param root The start rule.
   */
  matches(text: string, root = "root"): boolean {
    const codes = [...text].map((c) => c.codePointAt(0)!);
    const memo = new Map<string, Set<number>>();
    const ends = (node: Node, at: number): Set<number> => {
      switch (node.kind) {
        case "lit": {
          for (let i = 0; i < node.codes.length; i++) {
            if (codes[at + i] !== node.codes[i]) return new Set();
          }
          return new Set([at + node.codes.length]);
        }
        case "any":
          return at < codes.length ? new Set([at + 1]) : new Set();
        case "class": {
          const c = codes[at];
          if (c === undefined) return new Set();
          const inside = node.ranges.some(([a, b]) => c >= a && c <= b);
          return inside !== node.negated ? new Set([at + 1]) : new Set();
        }
        case "ref": {
          const key = `${node.name}@${at}`;
          const known = memo.get(key);
          if (known) return known;
          memo.set(key, new Set());
          const result = ends(this.#rules.get(node.name)!, at);
          memo.set(key, result);
          return result;
        }
        case "alt": {
          const out = new Set<number>();
          for (const b of node.branches) for (const e of ends(b, at)) out.add(e);
          return out;
        }
        case "seq": {
          let current = new Set([at]);
          for (const item of node.items) {
            const next = new Set<number>();
            for (const p of current) for (const e of ends(item, p)) next.add(e);
            current = next;
            if (current.size === 0) break;
          }
          return current;
        }
        case "rep": {
          const out = new Set<number>();
          let current = new Set([at]);
          const seen = new Set<number>();
          for (let count = 0; current.size > 0; count++) {
            if (count >= node.min) { for (const p of current) out.add(p); }
            if (count >= node.max) break;
            const next = new Set<number>();
            for (const p of current) {
              for (const e of ends(node.node, p)) {
                if (count >= node.min && (e === p || seen.has(e))) continue;
                next.add(e);
              }
            }
            if (count >= node.min) { for (const p of current) seen.add(p); }
            current = next;
          }
          return out;
        }
      }
    };
    return ends({ kind: "ref", name: root }, 0).has(codes.length);
  }
}
