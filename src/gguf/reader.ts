/**
 * Reads the header of a GGUF file (version, metadata, tensor index) without
 * loading tensor data: the file is read in chunks through `Deno.open`, so a
 * multi-gigabyte model costs only as much memory as its metadata.
 *
 * Corrupt files fail with a {@link GgufError} before any large allocation:
 * every declared count and length is checked against the bytes left in the
 * file and against fixed limits ({@link GGUF_READ_LIMITS}).
 *
 * @module
 */

import {
  GGML_MAX_DIMS,
  GGML_MAX_NAME,
  ggmlTensorBytes,
  ggmlTypeLayout,
  ggmlTypeName,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_VERSION,
  GgufError,
  type GgufInfo,
  type GgufInt64,
  type GgufItemType,
  type GgufTensorInfo,
  type GgufValue,
  GgufValueType,
} from "./types.ts";

/**
 * Limits that protect the reader from corrupt or hostile files. They are far
 * above anything real models use (the largest vocabularies have ~260k tokens).
 */
export const GGUF_READ_LIMITS = {
  /** Most metadata key-value pairs accepted. */
  maxKeyValues: 1 << 20,
  /** Most tensors accepted. */
  maxTensors: 1 << 20,
  /** Most elements in one metadata array. */
  maxArrayItems: 1 << 24,
  /** Longest string (key, value or tensor name) in bytes. */
  maxStringBytes: 1 << 26,
} as const;

const CHUNK_BYTES = 1 << 20;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = -MAX_SAFE;

/** Fixed byte size of each scalar value type (strings excluded). */
const SCALAR_BYTES: Readonly<Partial<Record<GgufValueType, number>>> = {
  [GgufValueType.UINT8]: 1,
  [GgufValueType.INT8]: 1,
  [GgufValueType.UINT16]: 2,
  [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4,
  [GgufValueType.INT32]: 4,
  [GgufValueType.FLOAT32]: 4,
  [GgufValueType.BOOL]: 1,
  [GgufValueType.UINT64]: 8,
  [GgufValueType.INT64]: 8,
  [GgufValueType.FLOAT64]: 8,
};

/** Buffered little-endian reader over an open file. */
class ChunkReader {
  readonly #file: Deno.FsFile;
  readonly #path: string;
  readonly fileSize: number;
  #buffer = new Uint8Array(CHUNK_BYTES);
  #view = new DataView(this.#buffer.buffer);
  #start = 0;
  #end = 0;
  #bufferOffset = 0;
  readonly #decoder = new TextDecoder("utf-8", { fatal: false });

  constructor(file: Deno.FsFile, path: string, fileSize: number) {
    this.#file = file;
    this.#path = path;
    this.fileSize = fileSize;
  }

  /** Absolute file offset of the next unread byte. */
  get position(): number {
    return this.#bufferOffset + this.#start;
  }

  /** Bytes between the read position and the end of the file. */
  get remaining(): number {
    return this.fileSize - this.position;
  }

  truncated(what: string): GgufError {
    return new GgufError(
      "truncated",
      `Cannot read GGUF file ${this.#path}: it ends inside ${what} (file size ${this.fileSize} bytes); the file is incomplete, download or write it again`,
    );
  }

  invalid(what: string): GgufError {
    return new GgufError(
      "invalid",
      `Cannot read GGUF file ${this.#path}: ${what}; the file is corrupt or not a model`,
    );
  }

  /** Makes sure `n` bytes are buffered, reading more of the file if needed. */
  async need(n: number, what: string): Promise<void> {
    if (this.#end - this.#start >= n) return;
    if (n > this.remaining) throw this.truncated(what);
    if (this.#start > 0) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#bufferOffset += this.#start;
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (n > this.#buffer.length) {
      const grown = new Uint8Array(Math.max(n, this.#buffer.length * 2));
      grown.set(this.#buffer.subarray(0, this.#end));
      this.#buffer = grown;
      this.#view = new DataView(grown.buffer);
    }
    while (this.#end < n) {
      const got = await this.#file.read(this.#buffer.subarray(this.#end));
      if (got === null || got === 0) throw this.truncated(what);
      this.#end += got;
    }
  }

  /** Skips `n` bytes (which must be buffered). */
  skip(n: number): void {
    this.#start += n;
  }

  u8(): number {
    return this.#buffer[this.#start++]!;
  }

  i8(): number {
    return this.#view.getInt8(this.#start++);
  }

  u16(): number {
    const v = this.#view.getUint16(this.#start, true);
    this.#start += 2;
    return v;
  }

  i16(): number {
    const v = this.#view.getInt16(this.#start, true);
    this.#start += 2;
    return v;
  }

  u32(): number {
    const v = this.#view.getUint32(this.#start, true);
    this.#start += 4;
    return v;
  }

  i32(): number {
    const v = this.#view.getInt32(this.#start, true);
    this.#start += 4;
    return v;
  }

  f32(): number {
    const v = this.#view.getFloat32(this.#start, true);
    this.#start += 4;
    return v;
  }

  f64(): number {
    const v = this.#view.getFloat64(this.#start, true);
    this.#start += 8;
    return v;
  }

  u64(): bigint {
    const v = this.#view.getBigUint64(this.#start, true);
    this.#start += 8;
    return v;
  }

  i64(): bigint {
    const v = this.#view.getBigInt64(this.#start, true);
    this.#start += 8;
    return v;
  }

  /** Decodes `n` buffered bytes as UTF-8. */
  text(n: number): string {
    const s = this.#decoder.decode(
      this.#buffer.subarray(this.#start, this.#start + n),
    );
    this.#start += n;
    return s;
  }

  /** Copies `n` buffered bytes. */
  bytes(n: number): Uint8Array {
    const b = this.#buffer.slice(this.#start, this.#start + n);
    this.#start += n;
    return b;
  }

  /** Reads a GGUF string (uint64 length, then UTF-8 bytes). */
  async string(what: string): Promise<string> {
    const n = await this.#stringLength(what);
    await this.need(n, what);
    return this.text(n);
  }

  /**
   * Reads past `count` GGUF strings, each length checked as {@link string} checks it; strings
   * already buffered are passed without an await each.
   */
  async skipStrings(count: number, what: string): Promise<void> {
    for (let i = 0; i < count; i++) {
      const buffered = this.#end - this.#start;
      if (buffered >= 8) {
        const length = this.#view.getBigUint64(this.#start, true);
        if (length <= BigInt(Math.min(buffered - 8, GGUF_READ_LIMITS.maxStringBytes))) {
          this.#start += 8 + Number(length);
          continue;
        }
      }
      const n = await this.#stringLength(what);
      await this.need(n, what);
      this.skip(n);
    }
  }

  async #stringLength(what: string): Promise<number> {
    await this.need(8, what);
    const length = this.u64();
    if (length > BigInt(GGUF_READ_LIMITS.maxStringBytes)) {
      throw this.invalid(
        `${what} claims ${length} bytes, more than the ${GGUF_READ_LIMITS.maxStringBytes} accepted`,
      );
    }
    return Number(length);
  }
}

/** Converts a 64-bit integer to a number when exactly representable. */
function toInt64(value: bigint): GgufInt64 {
  return value <= MAX_SAFE && value >= MIN_SAFE ? Number(value) : value;
}

/** Reads one scalar of a type whose bytes are already buffered. */
function readScalar(
  r: ChunkReader,
  type: GgufItemType,
): number | bigint | boolean {
  switch (type) {
    case GgufValueType.UINT8:
      return r.u8();
    case GgufValueType.INT8:
      return r.i8();
    case GgufValueType.UINT16:
      return r.u16();
    case GgufValueType.INT16:
      return r.i16();
    case GgufValueType.UINT32:
      return r.u32();
    case GgufValueType.INT32:
      return r.i32();
    case GgufValueType.FLOAT32:
      return r.f32();
    case GgufValueType.FLOAT64:
      return r.f64();
    case GgufValueType.BOOL:
      return r.u8() !== 0;
    case GgufValueType.UINT64:
      return toInt64(r.u64());
    case GgufValueType.INT64:
      return toInt64(r.i64());
    case GgufValueType.STRING:
      throw new Error("Strings are not fixed-size scalars");
  }
}

function isValueType(type: number): type is GgufValueType {
  return Number.isInteger(type) && type >= 0 &&
    type <= GgufValueType.FLOAT64;
}

/**
 * Reads the value of metadata key `key`, whose type tag is `type`; an array's elements are read
 * past (their lengths checked) and left out when `skipArrays`.
 */
async function readValue(
  r: ChunkReader,
  key: string,
  type: number,
  skipArrays = false,
): Promise<GgufValue> {
  const what = `the value of metadata key '${key}'`;
  if (!isValueType(type)) {
    throw r.invalid(`metadata key '${key}' has unknown value type ${type}`);
  }
  if (type === GgufValueType.STRING) {
    return { type, value: await r.string(what) };
  }
  if (type !== GgufValueType.ARRAY) {
    await r.need(SCALAR_BYTES[type]!, what);
    return { type, value: readScalar(r, type) } as GgufValue;
  }

  await r.need(12, what);
  const itemType = r.i32();
  const count = r.u64();
  if (!isValueType(itemType)) {
    throw r.invalid(
      `metadata array '${key}' has unknown element type ${itemType}`,
    );
  }
  if (itemType === GgufValueType.ARRAY) {
    throw r.invalid(
      `metadata array '${key}' holds nested arrays, which GGUF readers do not support`,
    );
  }
  if (count > BigInt(GGUF_READ_LIMITS.maxArrayItems)) {
    throw r.invalid(
      `metadata array '${key}' claims ${count} elements, more than the ${GGUF_READ_LIMITS.maxArrayItems} accepted`,
    );
  }
  const n = Number(count);
  const values: (string | number | bigint | boolean)[] = [];
  if (itemType === GgufValueType.STRING) {
    // Each string takes at least its 8-byte length.
    if (n * 8 > r.remaining) throw r.truncated(what);
    if (skipArrays) await r.skipStrings(n, what);
    else for (let i = 0; i < n; i++) values.push(await r.string(what));
  } else {
    const size = SCALAR_BYTES[itemType]!;
    if (n * size > r.remaining) throw r.truncated(what);
    const perChunk = Math.floor(CHUNK_BYTES / size);
    for (let i = 0; i < n; i += perChunk) {
      const m = Math.min(perChunk, n - i);
      await r.need(m * size, what);
      if (skipArrays) r.skip(m * size);
      else for (let j = 0; j < m; j++) values.push(readScalar(r, itemType));
    }
  }
  return { type, itemType, value: values } as GgufValue;
}

/** Reads a non-negative int64 count and checks it against the limits. */
async function readCount(
  r: ChunkReader,
  what: string,
  limit: number,
  minBytesEach: number,
): Promise<number> {
  await r.need(8, `the ${what}`);
  const count = r.i64();
  if (count < 0n || count > BigInt(limit)) {
    throw r.invalid(`the ${what} is ${count}, outside 0..${limit}`);
  }
  const n = Number(count);
  if (n * minBytesEach > r.remaining) {
    throw r.truncated(`the ${n} entries announced by the ${what}`);
  }
  return n;
}

/** Defines `key` as an own enumerable property, even for `__proto__`. */
function defineEntry<T>(target: Record<string, T>, key: string, value: T) {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

async function readMagicAndVersion(r: ChunkReader, path: string) {
  const magicBytes = Math.min(4, r.fileSize);
  await r.need(magicBytes, "the magic");
  const head = r.bytes(magicBytes);
  const expected = new TextEncoder().encode("GGUF");
  if (!head.every((b, i) => b === expected[i])) {
    throw new GgufError(
      "not_gguf",
      `Cannot read ${path}: it is not a GGUF file (it does not start with "GGUF")`,
    );
  }
  if (magicBytes < 4) throw r.truncated("the magic");
  await r.need(4, "the version");
  const version = r.u32();
  if (version === 0 || (version & 0xffff) === 0) {
    throw new GgufError(
      "unsupported_version",
      `Cannot read GGUF file ${path}: version ${version} is not valid (a big-endian file?); use a little-endian GGUF v2 or v3 file`,
    );
  }
  if (version < 2 || version > GGUF_VERSION) {
    throw new GgufError(
      "unsupported_version",
      `Cannot read GGUF file ${path}: version ${version} is not supported; convert the model to GGUF v2 or v3`,
    );
  }
  return version;
}

async function readTensorInfo(
  r: ChunkReader,
  index: number,
  alignment: number,
): Promise<GgufTensorInfo> {
  const name = await r.string(`the name of tensor ${index}`);
  const what = `the record of tensor '${name}'`;
  if (new TextEncoder().encode(name).length >= GGML_MAX_NAME) {
    throw r.invalid(
      `tensor name '${name}' is longer than ${GGML_MAX_NAME - 1} bytes`,
    );
  }
  await r.need(4, what);
  const dims = r.u32();
  if (dims > GGML_MAX_DIMS) {
    throw r.invalid(
      `tensor '${name}' has ${dims} dimensions, more than ${GGML_MAX_DIMS}`,
    );
  }
  await r.need(dims * 8 + 12, what);
  const shape: number[] = [];
  for (let d = 0; d < dims; d++) {
    const size = r.i64();
    if (size < 0n || size > MAX_SAFE) {
      throw r.invalid(`tensor '${name}' has dimension ${d} of size ${size}`);
    }
    shape.push(Number(size));
  }
  const type = r.i32();
  const offset = r.u64();
  const elements = shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(elements)) {
    throw r.invalid(`tensor '${name}' has too many elements`);
  }
  const layout = ggmlTypeLayout(type);
  if (layout !== undefined && (shape[0] ?? 1) % layout.blockSize !== 0) {
    throw r.invalid(
      `tensor '${name}' of type ${ggmlTypeName(type)} has rows of ${
        shape[0]
      } elements, not a multiple of the block size ${layout.blockSize}`,
    );
  }
  if (offset > MAX_SAFE || Number(offset) % alignment !== 0) {
    throw r.invalid(
      `tensor '${name}' has offset ${offset}, not a multiple of the alignment ${alignment}`,
    );
  }
  return {
    name,
    shape,
    type,
    offset: Number(offset),
    byteSize: ggmlTensorBytes(type, shape),
  };
}

/**
 * Reads the header of a GGUF file: version, metadata and tensor index. Tensor
 * data is not read, only checked to lie within the file.
 *
 * Metadata values keep their GGUF type (see {@link GgufValue}): 64-bit
 * integers are numbers when safe and bigints otherwise; arrays are JS arrays.
 *
 * @param path Path of the GGUF file.
 * @param options `skipArrays`: read past metadata arrays (checking their lengths) and leave
 *   them empty, for callers that need only the scalars: a vocabulary's 150,000 tokens and
 *   merges, decoded, held the event loop for most of a second. Default false.
 * @returns The parsed header.
 * @throws {GgufError} `not_found` if the file is missing, `not_gguf` if it has
 *   no GGUF magic, `truncated` if it ends before its declared content,
 *   `unsupported_version` for versions other than 2 and 3, `invalid` for
 *   malformed content.
 * @throws {Deno.errors.PermissionDenied} If read access is not granted.
 *
 * @example
 * ```ts
 * import { readGgufInfo } from "./reader.ts";
 * const info = await readGgufInfo("model.gguf");
 * console.log(info.metadata["general.architecture"]?.value, info.tensors.length);
 * ```
 */
export async function readGgufInfo(
  path: string,
  options: { skipArrays?: boolean } = {},
): Promise<GgufInfo> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new GgufError(
        "not_found",
        `Cannot read GGUF file ${path}: file not found`,
        { cause: error },
      );
    }
    throw error;
  }
  try {
    const stat = await file.stat();
    if (!stat.isFile) {
      throw new GgufError(
        "not_gguf",
        `Cannot read ${path}: it is not a regular file`,
      );
    }
    const r = new ChunkReader(file, path, stat.size);
    const version = await readMagicAndVersion(r, path);

    // The smallest tensor record: name length, dims, type and offset.
    const tensorCount = await readCount(
      r,
      "tensor count",
      GGUF_READ_LIMITS.maxTensors,
      24,
    );
    // The smallest key-value pair: key length, type tag and a 1-byte value.
    const kvCount = await readCount(
      r,
      "metadata count",
      GGUF_READ_LIMITS.maxKeyValues,
      13,
    );

    const metadata: Record<string, GgufValue> = {};
    for (let i = 0; i < kvCount; i++) {
      const key = await r.string(`metadata key ${i}`);
      if (key.length === 0) throw r.invalid(`metadata key ${i} is empty`);
      if (Object.hasOwn(metadata, key)) {
        throw r.invalid(`metadata key '${key}' appears twice`);
      }
      await r.need(4, `the type of metadata key '${key}'`);
      const type = r.i32();
      defineEntry(metadata, key, await readValue(r, key, type, options.skipArrays === true));
    }

    let alignment = GGUF_DEFAULT_ALIGNMENT;
    const alignmentValue = metadata["general.alignment"];
    if (alignmentValue !== undefined) {
      if (
        alignmentValue.type !== GgufValueType.UINT32 ||
        alignmentValue.value === 0 ||
        (alignmentValue.value & (alignmentValue.value - 1)) !== 0
      ) {
        throw r.invalid(
          "general.alignment must be a uint32 power of two",
        );
      }
      alignment = alignmentValue.value;
    }

    const tensors: GgufTensorInfo[] = [];
    const names = new Set<string>();
    for (let i = 0; i < tensorCount; i++) {
      const tensor = await readTensorInfo(r, i, alignment);
      if (names.has(tensor.name)) {
        throw r.invalid(`tensor name '${tensor.name}' appears twice`);
      }
      names.add(tensor.name);
      tensors.push(tensor);
    }

    const dataOffset = Math.ceil(r.position / alignment) * alignment;
    for (const tensor of tensors) {
      const end = dataOffset + tensor.offset + (tensor.byteSize ?? 0);
      if (end > r.fileSize) {
        throw r.truncated(
          `the data of tensor '${tensor.name}', which ends at byte ${end}`,
        );
      }
    }

    return {
      version,
      metadata,
      tensors,
      alignment,
      dataOffset,
      fileSize: r.fileSize,
    };
  } finally {
    file.close();
  }
}

/**
 * Reads the raw bytes of one tensor, as stored in the file.
 *
 * @param path Path of the GGUF file `info` was read from.
 * @param info The header returned by {@link readGgufInfo}.
 * @param name The tensor name.
 * @returns The tensor data (`byteSize` bytes).
 * @throws {GgufError} `not_found` if the tensor does not exist, `invalid` if
 *   its type is unknown, `truncated` if the file is shorter than the index says.
 *
 * @example
 * ```ts
 * import { readGgufInfo, readGgufTensorBytes } from "./reader.ts";
 * const info = await readGgufInfo("model.gguf");
 * const norm = await readGgufTensorBytes("model.gguf", info, "output_norm.weight");
 * console.log(norm.length);
 * ```
 */
export async function readGgufTensorBytes(
  path: string,
  info: GgufInfo,
  name: string,
): Promise<Uint8Array> {
  const tensor = info.tensors.find((t) => t.name === name);
  if (tensor === undefined) {
    throw new GgufError(
      "not_found",
      `Cannot read tensor '${name}' from ${path}: no tensor has that name`,
    );
  }
  if (tensor.byteSize === undefined) {
    throw new GgufError(
      "invalid",
      `Cannot read tensor '${name}' from ${path}: its type ${ggmlTypeName(tensor.type)} is unknown`,
    );
  }
  using file = await Deno.open(path, { read: true });
  await file.seek(info.dataOffset + tensor.offset, Deno.SeekMode.Start);
  const out = new Uint8Array(tensor.byteSize);
  let filled = 0;
  while (filled < out.length) {
    const got = await file.read(out.subarray(filled));
    if (got === null || got === 0) {
      throw new GgufError(
        "truncated",
        `Cannot read tensor '${name}' from ${path}: the file ends inside its data`,
      );
    }
    filled += got;
  }
  return out;
}

type MetadataSource = Pick<GgufInfo, "metadata">;

function wrongType(key: string, expected: string, value: GgufValue) {
  return new GgufError(
    "invalid",
    `GGUF metadata key '${key}' is ${
      value.type === GgufValueType.ARRAY
        ? `an array of ${GgufValueType[value.itemType]}`
        : GgufValueType[value.type]
    }, expected ${expected}`,
  );
}

/**
 * Returns a string metadata value.
 *
 * @param info A header from {@link readGgufInfo} (or anything with `metadata`).
 * @param key The metadata key, e.g. `"general.architecture"`.
 * @returns The string, or `undefined` if the key is absent.
 * @throws {GgufError} With code `invalid` if the value is not a string.
 *
 * @example
 * ```ts
 * import { ggufString, readGgufInfo } from "./reader.ts";
 * const info = await readGgufInfo("model.gguf");
 * console.log(ggufString(info, "general.architecture")); // "llama"
 * ```
 */
export function ggufString(
  info: MetadataSource,
  key: string,
): string | undefined {
  const v = Object.hasOwn(info.metadata, key) ? info.metadata[key] : undefined;
  if (v === undefined) return undefined;
  if (v.type !== GgufValueType.STRING) throw wrongType(key, "a string", v);
  return v.value;
}

/**
 * Returns a numeric metadata value of any integer or float type as a number.
 *
 * @param info A header from {@link readGgufInfo} (or anything with `metadata`).
 * @param key The metadata key, e.g. `"llama.context_length"`.
 * @returns The number, or `undefined` if the key is absent.
 * @throws {GgufError} With code `invalid` if the value is not numeric or is a
 *   64-bit integer too large for a JS number.
 *
 * @example
 * ```ts
 * import { ggufNumber, readGgufInfo } from "./reader.ts";
 * const info = await readGgufInfo("model.gguf");
 * console.log(ggufNumber(info, "llama.context_length")); // 512
 * ```
 */
export function ggufNumber(
  info: MetadataSource,
  key: string,
): number | undefined {
  const v = Object.hasOwn(info.metadata, key) ? info.metadata[key] : undefined;
  if (v === undefined) return undefined;
  if (
    v.type === GgufValueType.STRING || v.type === GgufValueType.BOOL ||
    v.type === GgufValueType.ARRAY || typeof v.value === "bigint"
  ) {
    throw wrongType(key, "a number", v);
  }
  return v.value;
}

/**
 * Returns a boolean metadata value.
 *
 * @param info A header from {@link readGgufInfo} (or anything with `metadata`).
 * @param key The metadata key, e.g. `"tokenizer.ggml.add_bos_token"`.
 * @returns The boolean, or `undefined` if the key is absent.
 * @throws {GgufError} With code `invalid` if the value is not a bool.
 *
 * @example
 * ```ts
 * import { ggufBool, readGgufInfo } from "./reader.ts";
 * const info = await readGgufInfo("model.gguf");
 * console.log(ggufBool(info, "tokenizer.ggml.add_bos_token")); // true
 * ```
 */
export function ggufBool(
  info: MetadataSource,
  key: string,
): boolean | undefined {
  const v = Object.hasOwn(info.metadata, key) ? info.metadata[key] : undefined;
  if (v === undefined) return undefined;
  if (v.type !== GgufValueType.BOOL) throw wrongType(key, "a bool", v);
  return v.value;
}

/**
 * Returns a string-array metadata value.
 *
 * @param info A header from {@link readGgufInfo} (or anything with `metadata`).
 * @param key The metadata key, e.g. `"tokenizer.ggml.tokens"`.
 * @returns The strings, or `undefined` if the key is absent.
 * @throws {GgufError} With code `invalid` if the value is not an array of strings.
 *
 * @example
 * ```ts
 * import { ggufStringArray, readGgufInfo } from "./reader.ts";
 * const info = await readGgufInfo("model.gguf");
 * console.log(ggufStringArray(info, "tokenizer.ggml.tokens")?.length);
 * ```
 */
export function ggufStringArray(
  info: MetadataSource,
  key: string,
): readonly string[] | undefined {
  const v = Object.hasOwn(info.metadata, key) ? info.metadata[key] : undefined;
  if (v === undefined) return undefined;
  if (
    v.type !== GgufValueType.ARRAY || v.itemType !== GgufValueType.STRING
  ) {
    throw wrongType(key, "an array of strings", v);
  }
  return v.value;
}

/**
 * Returns a numeric-array metadata value (any integer or float element type)
 * as numbers.
 *
 * @param info A header from {@link readGgufInfo} (or anything with `metadata`).
 * @param key The metadata key, e.g. `"tokenizer.ggml.token_type"`.
 * @returns The numbers, or `undefined` if the key is absent.
 * @throws {GgufError} With code `invalid` if the value is not a numeric array
 *   or holds 64-bit integers too large for JS numbers.
 *
 * @example
 * ```ts
 * import { ggufNumberArray, readGgufInfo } from "./reader.ts";
 * const info = await readGgufInfo("model.gguf");
 * console.log(ggufNumberArray(info, "tokenizer.ggml.scores")?.[0]);
 * ```
 */
export function ggufNumberArray(
  info: MetadataSource,
  key: string,
): readonly number[] | undefined {
  const v = Object.hasOwn(info.metadata, key) ? info.metadata[key] : undefined;
  if (v === undefined) return undefined;
  if (
    v.type !== GgufValueType.ARRAY || v.itemType === GgufValueType.STRING ||
    v.itemType === GgufValueType.BOOL ||
    v.value.some((x) => typeof x === "bigint")
  ) {
    throw wrongType(key, "an array of numbers", v);
  }
  return v.value as number[];
}
