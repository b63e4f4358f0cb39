/**
 * A small C struct layout engine: field lists in, offsets, size, Deno FFI struct type and
 * typed accessors out. Every struct that crosses the FFI boundary is described once with
 * {@link defineStruct} (see `layouts.ts`), and the ABI test compares the computed offsets
 * with the C compiler's own `offsetof`/`sizeof` for the pinned `llama.h`.
 *
 * @module
 */

/** Scalar C field kinds supported by {@link defineStruct}. */
export type FieldKind =
  | "bool"
  | "i8"
  | "u8"
  | "i32"
  | "u32"
  | "i64"
  | "u64"
  | "f32"
  | "f64"
  | "usize"
  | "pointer";

const KIND_SIZE: Record<FieldKind, number> = {
  bool: 1,
  i8: 1,
  u8: 1,
  i32: 4,
  u32: 4,
  i64: 8,
  u64: 8,
  f32: 4,
  f64: 8,
  usize: 8,
  pointer: 8,
};

const KIND_FFI: Record<FieldKind, Deno.NativeType> = {
  bool: "u8",
  i8: "i8",
  u8: "u8",
  i32: "i32",
  u32: "u32",
  i64: "i64",
  u64: "u64",
  f32: "f32",
  f64: "f64",
  usize: "usize",
  pointer: "pointer",
};

/** The JavaScript value a field kind reads as and is written from. */
export type FieldValue<K extends FieldKind> = K extends "bool" ? boolean
  : K extends "i64" | "u64" | "usize" ? bigint
  : K extends "pointer" ? Deno.PointerValue
  : number;

/** A field list: C field name → kind, in declaration order. */
export type FieldList = Readonly<Record<string, FieldKind>>;

/** A laid-out C struct with typed accessors over a byte buffer. */
export interface StructLayout<F extends FieldList> {
  /** The C struct name, e.g. `llama_model_params`. */
  readonly name: string;
  /** Byte offset of each field. */
  readonly offsets: { readonly [K in keyof F]: number };
  /** `sizeof` the struct, tail padding included. */
  readonly size: number;
  /** Alignment of the struct. */
  readonly align: number;
  /** The Deno FFI type for passing or returning the struct by value. */
  readonly ffi: Deno.NativeStructType;
  /** Size in bytes of one field. */
  fieldSize(field: string): number;
  /** Allocates a zeroed buffer of the struct's size. */
  alloc(): Uint8Array<ArrayBuffer>;
  /** Reads one field. */
  get<K extends keyof F & string>(buf: Uint8Array, field: K): FieldValue<F[K]>;
  /** Writes one field. */
  set<K extends keyof F & string>(buf: Uint8Array, field: K, value: FieldValue<F[K]>): void;
  /** Accessors bound to one buffer. */
  on(buf: Uint8Array): StructAccess<F>;
}

/** Typed accessors bound to one struct buffer. */
export interface StructAccess<F extends FieldList> {
  /** Reads one field. */
  get<K extends keyof F & string>(field: K): FieldValue<F[K]>;
  /** Writes one field. */
  set<K extends keyof F & string>(field: K, value: FieldValue<F[K]>): void;
}

/**
 * Lays out a C struct with the natural alignment rules of the LP64/LLP64 ABIs that
 * llama.cpp supports (every field aligned to its own size, the struct to its largest field).
 *
 * @param name The C struct name, used in errors and by the ABI test.
 * @param fields Field names and kinds, in declaration order.
 * @returns The layout with offsets, size, FFI type and accessors.
 * @example
 * ```ts
 * const Pair = defineStruct("pair", { id: "i32", score: "f32" });
 * const buf = Pair.alloc();
 * Pair.set(buf, "score", 0.5);
 * ```
 */
export function defineStruct<const F extends FieldList>(
  name: string,
  fields: F,
): StructLayout<F> {
  const offsets: Record<string, number> = {};
  let offset = 0;
  let align = 1;
  for (const [field, kind] of Object.entries(fields)) {
    const size = KIND_SIZE[kind];
    offset = Math.ceil(offset / size) * size;
    offsets[field] = offset;
    offset += size;
    align = Math.max(align, size);
  }
  const size = Math.ceil(offset / align) * align;
  const ffi: Deno.NativeStructType = {
    struct: Object.values(fields).map((kind) => KIND_FFI[kind]),
  };

  const view = (buf: Uint8Array) => new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const locate = (field: string): [number, FieldKind] => {
    const at = offsets[field];
    const kind = fields[field];
    if (at === undefined || kind === undefined) {
      throw new TypeError(`Struct ${name} has no field ${field}`);
    }
    return [at, kind];
  };

  const layout: StructLayout<F> = {
    name,
    offsets: offsets as { [K in keyof F]: number },
    size,
    align,
    ffi,
    fieldSize: (field) => KIND_SIZE[locate(field)[1]],
    alloc: () => new Uint8Array(size),
    get(buf, field) {
      const [at, kind] = locate(field);
      return readField(view(buf), at, kind) as FieldValue<F[typeof field]>;
    },
    set(buf, field, value) {
      const [at, kind] = locate(field);
      writeField(view(buf), at, kind, value as FieldValue<FieldKind>);
    },
    on: (buf) => ({
      get: (field) => layout.get(buf, field),
      set: (field, value) => layout.set(buf, field, value),
    }),
  };
  return layout;
}

function readField(dv: DataView, at: number, kind: FieldKind): FieldValue<FieldKind> {
  switch (kind) {
    case "bool":
      return dv.getUint8(at) !== 0;
    case "i8":
      return dv.getInt8(at);
    case "u8":
      return dv.getUint8(at);
    case "i32":
      return dv.getInt32(at, true);
    case "u32":
      return dv.getUint32(at, true);
    case "f32":
      return dv.getFloat32(at, true);
    case "f64":
      return dv.getFloat64(at, true);
    case "i64":
      return dv.getBigInt64(at, true);
    case "u64":
    case "usize":
      return dv.getBigUint64(at, true);
    case "pointer":
      return Deno.UnsafePointer.create(dv.getBigUint64(at, true));
  }
}

function writeField(
  dv: DataView,
  at: number,
  kind: FieldKind,
  value: FieldValue<FieldKind>,
): void {
  switch (kind) {
    case "bool":
      return dv.setUint8(at, value ? 1 : 0);
    case "i8":
      return dv.setInt8(at, value as number);
    case "u8":
      return dv.setUint8(at, value as number);
    case "i32":
      return dv.setInt32(at, value as number, true);
    case "u32":
      return dv.setUint32(at, value as number, true);
    case "f32":
      return dv.setFloat32(at, value as number, true);
    case "f64":
      return dv.setFloat64(at, value as number, true);
    case "i64":
      return dv.setBigInt64(at, value as bigint, true);
    case "u64":
    case "usize":
      return dv.setBigUint64(at, value as bigint, true);
    case "pointer":
      return dv.setBigUint64(
        at,
        BigInt(Deno.UnsafePointer.value(value as Deno.PointerValue)),
        true,
      );
  }
}
