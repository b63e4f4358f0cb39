/**
 * Builds GGUF v3 files: typed metadata plus tensors encoded from float32 data
 * (F32, F16, Q8_0, Q4_0) or given as raw bytes.
 *
 * The header is assembled in memory; tensor data is then encoded and written
 * one tensor at a time, so a tensor added through a producer function
 * (`() => Float32Array`, or `() => Uint8Array` for raw bytes) exists in memory
 * only while it is being written.
 *
 * @module
 */

import { type EncodableType, encodeTensor } from "./encoding.ts";
import {
  GGML_MAX_DIMS,
  GGML_MAX_NAME,
  ggmlTensorBytes,
  GgmlType,
  ggmlTypeName,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VERSION,
  GgufError,
  type GgufInt64,
  type GgufItemType,
  type GgufNumberType,
  type GgufValue,
  GgufValueType,
} from "./types.ts";

/** Float32 tensor data, or a function that produces it when the tensor is written. */
export type TensorSource = Float32Array | (() => Float32Array);

/** Encoded tensor bytes, or a function that produces them when the tensor is written. */
export type RawTensorSource = Uint8Array | (() => Uint8Array);

/** Options for {@link GgufWriter}. */
export interface GgufWriterOptions {
  /**
   * Alignment of the tensor data section and of each tensor, a power of two.
   * It is written as `general.alignment` (uint32). Default: 32.
   */
  readonly alignment?: number;
}

interface PendingTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly type: GgmlType;
  readonly byteSize: number;
  readonly produce: () => Uint8Array;
}

const INTEGER_RANGES: Readonly<
  Partial<Record<GgufValueType, readonly [number, number]>>
> = {
  [GgufValueType.UINT8]: [0, 0xff],
  [GgufValueType.INT8]: [-0x80, 0x7f],
  [GgufValueType.UINT16]: [0, 0xffff],
  [GgufValueType.INT16]: [-0x8000, 0x7fff],
  [GgufValueType.UINT32]: [0, 0xffffffff],
  [GgufValueType.INT32]: [-0x80000000, 0x7fffffff],
};

/** Growable little-endian byte buffer for the header. */
class ByteSink {
  #bytes = new Uint8Array(1 << 16);
  #view = new DataView(this.#bytes.buffer);
  length = 0;
  readonly #encoder = new TextEncoder();

  #reserve(n: number) {
    if (this.length + n <= this.#bytes.length) return;
    let size = this.#bytes.length * 2;
    while (size < this.length + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.#bytes.subarray(0, this.length));
    this.#bytes = grown;
    this.#view = new DataView(grown.buffer);
  }

  u8(v: number) {
    this.#reserve(1);
    this.#view.setUint8(this.length, v);
    this.length += 1;
  }
  i8(v: number) {
    this.#reserve(1);
    this.#view.setInt8(this.length, v);
    this.length += 1;
  }
  u16(v: number) {
    this.#reserve(2);
    this.#view.setUint16(this.length, v, true);
    this.length += 2;
  }
  i16(v: number) {
    this.#reserve(2);
    this.#view.setInt16(this.length, v, true);
    this.length += 2;
  }
  u32(v: number) {
    this.#reserve(4);
    this.#view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number) {
    this.#reserve(4);
    this.#view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number) {
    this.#reserve(4);
    this.#view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number) {
    this.#reserve(8);
    this.#view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  u64(v: bigint) {
    this.#reserve(8);
    this.#view.setBigUint64(this.length, v, true);
    this.length += 8;
  }
  i64(v: bigint) {
    this.#reserve(8);
    this.#view.setBigInt64(this.length, v, true);
    this.length += 8;
  }
  string(s: string) {
    const bytes = this.#encoder.encode(s);
    this.u64(BigInt(bytes.length));
    this.#reserve(bytes.length);
    this.#bytes.set(bytes, this.length);
    this.length += bytes.length;
  }
  zeros(n: number) {
    this.#reserve(n);
    this.#bytes.fill(0, this.length, this.length + n);
    this.length += n;
  }
  toBytes(): Uint8Array {
    return this.#bytes.subarray(0, this.length);
  }
}

function invalid(message: string): GgufError {
  return new GgufError("invalid", message);
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** Checks one scalar of `type` and returns it ready for writing. */
function checkScalar(
  key: string,
  type: GgufItemType,
  value: unknown,
): string | number | bigint | boolean {
  const fail = () =>
    invalid(
      `Cannot set GGUF metadata '${key}': ${String(value)} is not a valid ${GgufValueType[type]}`,
    );
  switch (type) {
    case GgufValueType.STRING:
      if (typeof value !== "string") throw fail();
      return value;
    case GgufValueType.BOOL:
      if (typeof value !== "boolean") throw fail();
      return value;
    case GgufValueType.FLOAT32:
    case GgufValueType.FLOAT64:
      if (typeof value !== "number") throw fail();
      return value;
    case GgufValueType.UINT64:
    case GgufValueType.INT64: {
      if (typeof value !== "number" && typeof value !== "bigint") throw fail();
      if (typeof value === "number" && !Number.isSafeInteger(value)) {
        throw fail();
      }
      const big = BigInt(value);
      const ok = type === GgufValueType.UINT64
        ? big >= 0n && big <= 0xffffffffffffffffn
        : big >= -0x8000000000000000n && big <= 0x7fffffffffffffffn;
      if (!ok) throw fail();
      return big;
    }
    default: {
      const range = INTEGER_RANGES[type];
      if (
        range === undefined || typeof value !== "number" ||
        !Number.isInteger(value) || value < range[0] || value > range[1]
      ) {
        throw fail();
      }
      return value;
    }
  }
}

function isItemType(type: unknown): type is GgufItemType {
  return typeof type === "number" && Number.isInteger(type) && type >= 0 &&
    type <= GgufValueType.FLOAT64 && type !== GgufValueType.ARRAY;
}

function writeScalar(
  sink: ByteSink,
  type: GgufItemType,
  value: string | number | bigint | boolean,
) {
  switch (type) {
    case GgufValueType.UINT8:
      return sink.u8(value as number);
    case GgufValueType.INT8:
      return sink.i8(value as number);
    case GgufValueType.UINT16:
      return sink.u16(value as number);
    case GgufValueType.INT16:
      return sink.i16(value as number);
    case GgufValueType.UINT32:
      return sink.u32(value as number);
    case GgufValueType.INT32:
      return sink.i32(value as number);
    case GgufValueType.FLOAT32:
      return sink.f32(value as number);
    case GgufValueType.FLOAT64:
      return sink.f64(value as number);
    case GgufValueType.BOOL:
      return sink.u8(value ? 1 : 0);
    case GgufValueType.STRING:
      return sink.string(value as string);
    case GgufValueType.UINT64:
      return sink.u64(value as bigint);
    case GgufValueType.INT64:
      return sink.i64(value as bigint);
  }
}

/** A checked metadata entry, its values converted for writing. */
type CheckedValue =
  | { type: GgufItemType; value: string | number | bigint | boolean }
  | {
    type: GgufValueType.ARRAY;
    itemType: GgufItemType;
    value: (string | number | bigint | boolean)[];
  };

/**
 * Builds a GGUF v3 file. Metadata keeps insertion order (setting an existing
 * key replaces its value in place); tensors are written in the order added,
 * each at an offset aligned to {@link GgufWriterOptions.alignment}.
 *
 * @example Writing a one-tensor file
 * ```ts
 * import { GgufWriter } from "./writer.ts";
 * import { GgmlType } from "./types.ts";
 * const writer = new GgufWriter();
 * writer.setString("general.architecture", "llama");
 * writer.setUint32("llama.block_count", 1);
 * writer.addTensor("output_norm.weight", [64], GgmlType.F32, new Float32Array(64).fill(1));
 * await writer.write("model.gguf");
 * ```
 */
export class GgufWriter {
  readonly #metadata = new Map<string, CheckedValue>();
  readonly #tensors: PendingTensor[] = [];
  readonly #tensorNames = new Set<string>();
  #alignment: number;

  /**
   * Creates an empty writer.
   *
   * @param options Writer options; see {@link GgufWriterOptions}.
   * @throws {GgufError} With code `invalid` if the alignment is not a power of two.
   */
  constructor(options: GgufWriterOptions = {}) {
    const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
    this.#checkAlignment(alignment);
    this.#alignment = alignment;
    this.#metadata.set("general.alignment", {
      type: GgufValueType.UINT32,
      value: alignment,
    });
  }

  /** The alignment the data section will use. */
  get alignment(): number {
    return this.#alignment;
  }

  /** Names of the metadata keys set so far, in file order. */
  get keys(): string[] {
    return [...this.#metadata.keys()];
  }

  #checkAlignment(alignment: number) {
    if (
      !Number.isInteger(alignment) || alignment <= 0 || alignment > 0xffffffff ||
      (alignment & (alignment - 1)) !== 0
    ) {
      throw invalid(
        `Cannot use GGUF alignment ${alignment}: it must be a power of two`,
      );
    }
  }

  /**
   * Sets a metadata value with an explicit type. Accepts the values returned
   * by `readGgufInfo`, so metadata can be copied between files unchanged.
   * Setting `general.alignment` (uint32) changes the data alignment.
   *
   * @param key The metadata key, e.g. `"general.name"`.
   * @param value The typed value.
   * @returns This writer, for chaining.
   * @throws {GgufError} With code `invalid` if the key is empty or the value
   *   does not fit its type.
   *
   * @example Copying metadata from another file
   * ```ts
   * import { readGgufInfo } from "./reader.ts";
   * import { GgufWriter } from "./writer.ts";
   * const info = await readGgufInfo("vocab.gguf");
   * const writer = new GgufWriter();
   * for (const [key, value] of Object.entries(info.metadata)) writer.set(key, value);
   * ```
   */
  set(key: string, value: GgufValue): this {
    if (typeof key !== "string" || key.length === 0) {
      throw invalid("Cannot set GGUF metadata: the key is empty");
    }
    let checked: CheckedValue;
    if (value.type === GgufValueType.ARRAY) {
      const itemType = value.itemType;
      if (!isItemType(itemType)) {
        throw invalid(
          `Cannot set GGUF metadata '${key}': array element type ${itemType} is not supported`,
        );
      }
      if (!Array.isArray(value.value)) {
        throw invalid(
          `Cannot set GGUF metadata '${key}': the array value is not an array`,
        );
      }
      const items = (value.value as unknown[]).map((v) => checkScalar(key, itemType, v));
      checked = { type: GgufValueType.ARRAY, itemType, value: items };
    } else {
      if (!isItemType(value.type)) {
        throw invalid(
          `Cannot set GGUF metadata '${key}': value type ${value.type} is not supported`,
        );
      }
      checked = {
        type: value.type,
        value: checkScalar(key, value.type, value.value),
      };
    }
    if (key === "general.alignment") {
      if (checked.type !== GgufValueType.UINT32) {
        throw invalid(
          "Cannot set GGUF metadata 'general.alignment': it must be a UINT32",
        );
      }
      this.#checkAlignment(checked.value as number);
      this.#alignment = checked.value as number;
    }
    this.#metadata.set(key, checked);
    return this;
  }

  /**
   * Sets a string value.
   *
   * @param key The metadata key.
   * @param value The string (written as UTF-8).
   * @returns This writer.
   * @example
   * ```ts
   * import { GgufWriter } from "./writer.ts";
   * new GgufWriter().setString("general.name", "tiny");
   * ```
   */
  setString(key: string, value: string): this {
    return this.set(key, { type: GgufValueType.STRING, value });
  }

  /**
   * Sets a uint32 value.
   *
   * @param key The metadata key.
   * @param value An integer in 0..2^32-1.
   * @returns This writer.
   * @example
   * ```ts
   * import { GgufWriter } from "./writer.ts";
   * new GgufWriter().setUint32("llama.block_count", 2);
   * ```
   */
  setUint32(key: string, value: number): this {
    return this.set(key, { type: GgufValueType.UINT32, value });
  }

  /**
   * Sets an int32 value.
   *
   * @param key The metadata key.
   * @param value An integer in -2^31..2^31-1.
   * @returns This writer.
   * @example
   * ```ts
   * import { GgufWriter } from "./writer.ts";
   * new GgufWriter().setInt32("tokenizer.ggml.padding_token_id", -1);
   * ```
   */
  setInt32(key: string, value: number): this {
    return this.set(key, { type: GgufValueType.INT32, value });
  }

  /**
   * Sets a uint64 value.
   *
   * @param key The metadata key.
   * @param value A non-negative safe integer or bigint below 2^64.
   * @returns This writer.
   * @example
   * ```ts
   * import { GgufWriter } from "./writer.ts";
   * new GgufWriter().setUint64("general.size", 2n ** 40n);
   * ```
   */
  setUint64(key: string, value: GgufInt64): this {
    return this.set(key, { type: GgufValueType.UINT64, value });
  }

  /**
   * Sets a float32 value (the number is rounded to float32 on write).
   *
   * @param key The metadata key.
   * @param value The number.
   * @returns This writer.
   * @example
   * ```ts
   * import { GgufWriter } from "./writer.ts";
   * new GgufWriter().setFloat32("llama.rope.freq_base", 10000);
   * ```
   */
  setFloat32(key: string, value: number): this {
    return this.set(key, { type: GgufValueType.FLOAT32, value });
  }

  /**
   * Sets a bool value.
   *
   * @param key The metadata key.
   * @param value The boolean.
   * @returns This writer.
   * @example
   * ```ts
   * import { GgufWriter } from "./writer.ts";
   * new GgufWriter().setBool("tokenizer.ggml.add_bos_token", true);
   * ```
   */
  setBool(key: string, value: boolean): this {
    return this.set(key, { type: GgufValueType.BOOL, value });
  }

  /**
   * Sets an array of strings.
   *
   * @param key The metadata key.
   * @param values The strings.
   * @returns This writer.
   * @example
   * ```ts
   * import { GgufWriter } from "./writer.ts";
   * new GgufWriter().setStringArray("tokenizer.ggml.tokens", ["<unk>", "<s>"]);
   * ```
   */
  setStringArray(key: string, values: readonly string[]): this {
    return this.set(key, {
      type: GgufValueType.ARRAY,
      itemType: GgufValueType.STRING,
      value: [...values],
    });
  }

  /**
   * Sets an array of numbers with the given element type.
   *
   * @param key The metadata key.
   * @param itemType The element type, e.g. `GgufValueType.INT32`.
   * @param values The numbers; each must fit the element type.
   * @returns This writer.
   * @example
   * ```ts
   * import { GgufWriter } from "./writer.ts";
   * import { GgufValueType } from "./types.ts";
   * new GgufWriter().setNumberArray("tokenizer.ggml.token_type", GgufValueType.INT32, [2, 3, 3]);
   * ```
   */
  setNumberArray(
    key: string,
    itemType: GgufNumberType,
    values: ArrayLike<number>,
  ): this {
    return this.set(key, {
      type: GgufValueType.ARRAY,
      itemType,
      value: Array.from(values),
    });
  }

  /**
   * Adds a tensor from float32 data, encoded on write as `type`.
   *
   * @param name Tensor name, shorter than 64 bytes and unique.
   * @param shape Dimensions in ggml order (`shape[0]` is the row length), 1..4 of them.
   * @param type F32, F16, Q8_0 or Q4_0 (Q8_0 and Q4_0 need `shape[0]` to be a
   *   multiple of 32).
   * @param data The values in ggml order, or a function producing them when
   *   the file is written (keeps only one tensor in memory at a time).
   * @returns This writer.
   * @throws {GgufError} With code `invalid` for a bad name, shape or type, or
   *   (when `data` is an array) a length that does not match the shape.
   *
   * @example
   * ```ts
   * import { GgufWriter } from "./writer.ts";
   * import { GgmlType } from "./types.ts";
   * new GgufWriter().addTensor("w", [32, 2], GgmlType.Q8_0, () => new Float32Array(64));
   * ```
   */
  addTensor(
    name: string,
    shape: readonly number[],
    type: EncodableType,
    data: TensorSource,
  ): this {
    if (
      type !== GgmlType.F32 && type !== GgmlType.F16 && type !== GgmlType.Q8_0 &&
      type !== GgmlType.Q4_0
    ) {
      throw invalid(
        `Cannot add tensor '${name}': float32 data can be written as F32, F16, Q8_0 or Q4_0, not ${
          ggmlTypeName(type)
        }`,
      );
    }
    const elements = this.#checkTensor(name, shape, type);
    if (typeof data !== "function" && data.length !== elements) {
      throw invalid(
        `Cannot add tensor '${name}': its shape [${shape}] needs ${elements} values but ${data.length} were given`,
      );
    }
    const byteSize = ggmlTensorBytes(type, shape)!;
    this.#tensors.push({
      name,
      shape: [...shape],
      type,
      byteSize,
      produce: () => {
        const values = typeof data === "function" ? data() : data;
        if (values.length !== elements) {
          throw invalid(
            `Cannot write tensor '${name}': its shape [${shape}] needs ${elements} values but the producer gave ${values.length}`,
          );
        }
        return encodeTensor(type, values);
      },
    });
    this.#tensorNames.add(name);
    return this;
  }

  /**
   * Adds a tensor from already encoded bytes of any ggml type.
   *
   * @param name Tensor name, shorter than 64 bytes and unique.
   * @param shape Dimensions in ggml order.
   * @param type The ggml type the bytes are encoded in.
   * @param bytes The encoded data, or a function producing it when the file is
   *   written (so large tensors can be encoded one at a time); its length must
   *   match the type and shape.
   * @returns This writer.
   * @throws {GgufError} With code `invalid` if the name, shape or type is
   *   wrong, or (when `bytes` is an array) the length is wrong.
   *
   * @example
   * ```ts
   * import { GgufWriter } from "./writer.ts";
   * import { GgmlType } from "./types.ts";
   * new GgufWriter()
   *   .addRawTensor("ids", [4], GgmlType.I32, new Uint8Array(16))
   *   .addRawTensor("w", [32, 2], GgmlType.Q4_0, () => new Uint8Array(36));
   * ```
   */
  addRawTensor(
    name: string,
    shape: readonly number[],
    type: GgmlType,
    bytes: RawTensorSource,
  ): this {
    this.#checkTensor(name, shape, type);
    const byteSize = ggmlTensorBytes(type, shape)!;
    if (typeof bytes !== "function" && bytes.length !== byteSize) {
      throw invalid(
        `Cannot add tensor '${name}': ${
          ggmlTypeName(type)
        } data of shape [${shape}] takes ${byteSize} bytes but ${bytes.length} were given`,
      );
    }
    this.#tensors.push({
      name,
      shape: [...shape],
      type,
      byteSize,
      produce: typeof bytes === "function" ? bytes : () => bytes,
    });
    this.#tensorNames.add(name);
    return this;
  }

  /** Validates a tensor's name, shape and type; returns its element count. */
  #checkTensor(name: string, shape: readonly number[], type: GgmlType): number {
    const nameBytes = new TextEncoder().encode(name).length;
    if (nameBytes === 0 || nameBytes >= GGML_MAX_NAME) {
      throw invalid(
        `Cannot add tensor '${name}': names must be 1..${GGML_MAX_NAME - 1} bytes long`,
      );
    }
    if (this.#tensorNames.has(name)) {
      throw invalid(`Cannot add tensor '${name}': the name is already used`);
    }
    if (
      shape.length === 0 || shape.length > GGML_MAX_DIMS ||
      !shape.every((d) => Number.isSafeInteger(d) && d > 0)
    ) {
      throw invalid(
        `Cannot add tensor '${name}': shape [${shape}] must have 1..${GGML_MAX_DIMS} positive integer dimensions`,
      );
    }
    if (ggmlTensorBytes(type, shape) === undefined) {
      throw invalid(
        `Cannot add tensor '${name}': type ${
          ggmlTypeName(type)
        } is unknown or its block size does not divide the row length ${shape[0]}`,
      );
    }
    return shape.reduce((a, b) => a * b, 1);
  }

  /**
   * Serialises the header (magic, version, counts, metadata, tensor index and
   * padding up to the data section).
   */
  #header(): Uint8Array {
    const sink = new ByteSink();
    sink.u32(GGUF_MAGIC);
    sink.u32(GGUF_VERSION);
    sink.i64(BigInt(this.#tensors.length));
    sink.i64(BigInt(this.#metadata.size));
    for (const [key, entry] of this.#metadata) {
      sink.string(key);
      sink.i32(entry.type);
      if (entry.type === GgufValueType.ARRAY) {
        sink.i32(entry.itemType);
        sink.u64(BigInt(entry.value.length));
        for (const item of entry.value) {
          writeScalar(sink, entry.itemType, item);
        }
      } else {
        writeScalar(sink, entry.type, entry.value);
      }
    }
    let offset = 0;
    for (const tensor of this.#tensors) {
      sink.string(tensor.name);
      sink.u32(tensor.shape.length);
      for (const d of tensor.shape) sink.i64(BigInt(d));
      sink.i32(tensor.type);
      sink.u64(BigInt(offset));
      offset = alignUp(offset + tensor.byteSize, this.#alignment);
    }
    sink.zeros(alignUp(sink.length, this.#alignment) - sink.length);
    return sink.toBytes();
  }

  /**
   * Writes the file. Tensor data is encoded and written one tensor at a time;
   * each tensor (the last included) is padded to the alignment. On failure the
   * partly written file is removed.
   *
   * @param path Destination path; an existing file is replaced.
   * @returns The number of bytes written.
   * @throws {GgufError} With code `invalid` if a tensor producer returns data
   *   of the wrong length.
   *
   * @example
   * ```ts
   * import { GgufWriter } from "./writer.ts";
   * const bytes = await new GgufWriter().setString("general.name", "empty").write("empty.gguf");
   * console.log(bytes);
   * ```
   */
  async write(path: string): Promise<number> {
    const header = this.#header();
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    try {
      let written = await writeAll(file, header);
      const padding = new Uint8Array(this.#alignment);
      for (const tensor of this.#tensors) {
        const data = tensor.produce();
        if (data.length !== tensor.byteSize) {
          throw invalid(
            `Cannot write tensor '${tensor.name}': encoded ${data.length} bytes, expected ${tensor.byteSize}`,
          );
        }
        written += await writeAll(file, data);
        const pad = alignUp(tensor.byteSize, this.#alignment) - tensor.byteSize;
        if (pad > 0) written += await writeAll(file, padding.subarray(0, pad));
      }
      file.close();
      return written;
    } catch (error) {
      file.close();
      await Deno.remove(path).catch(() => {});
      throw error;
    }
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<number> {
  let done = 0;
  while (done < bytes.length) {
    done += await file.write(bytes.subarray(done));
  }
  return done;
}
