/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header naming each
 * tensor's dtype, shape and byte range, then the raw little-endian data. Parsing validates as
 * the reference implementation does, with an error naming the problem; values convert to the
 * engine's dtypes (floats to float32, integers and bools to int32).
 */
import { halfValue } from '@tl/tensor';
export const SAFE_DTYPES = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U16: 2, U32: 4, U64: 8,
} as const;

export type SafeDType = keyof typeof SAFE_DTYPES;

export interface SafeTensorInfo {
  dtype: SafeDType;
  shape: number[];
  /** Byte range within the data section. */
  dataOffsets: [number, number];
}

export interface SafeHeader {
  tensors: Map<string, SafeTensorInfo>;
  metadata: Record<string, string>;
  /** Bytes before the data section (8 + header length). */
  dataStart: number;
}

/** A tensor's values converted for the engine. */
export interface HostArray {
  dtype: 'float32' | 'int32';
  shape: number[];
  data: Float32Array | Int32Array;
  /** The dtype stored in the file. */
  sourceDtype: SafeDType;
}

export const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** Reads the header length from the first 8 bytes, checking it against the file size. */
export function headerLength(first8: Uint8Array, fileBytes: number, source = 'safetensors file'): number {
  if (fileBytes < 8 || first8.byteLength < 8) throw new SafetensorsError(`${source}: ${fileBytes} bytes is too small for a safetensors file (at least 8 bytes of header length)`);
  const view = new DataView(first8.buffer, first8.byteOffset, 8);
  const n = Number(view.getBigUint64(0, true));
  if (n > MAX_HEADER_BYTES) throw new SafetensorsError(`${source}: header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
  if (8 + n > fileBytes) throw new SafetensorsError(`${source}: header length ${n} runs past the end of the ${fileBytes}-byte file`);
  return n;
}

/** Parses and validates the JSON header. `dataBytes` is the size of the data section. */
export function parseHeader(headerBytes: Uint8Array, dataBytes: number, source = 'safetensors file'): SafeHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsError(`${source}: the header is not valid UTF-8`);
  }
  if (!text.startsWith('{')) throw new SafetensorsError(`${source}: the header does not start with '{' (not a safetensors file?)`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(`${source}: the header is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new SafetensorsError(`${source}: the header is not a JSON object`);
  const tensors = new Map<string, SafeTensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (v === null || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) {
        throw new SafetensorsError(`${source}: __metadata__ must map strings to strings`);
      }
      metadata = v as Record<string, string>;
      continue;
    }
    tensors.set(name, checkEntry(name, v, source));
  }
  const sorted = [...tensors.entries()].sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  let expected = 0;
  for (const [name, info] of sorted) {
    const [begin, end] = info.dataOffsets;
    if (begin !== expected) {
      throw new SafetensorsError(
        begin < expected
          ? `${source}: tensor "${name}" overlaps the previous one (starts at byte ${begin}, previous ends at ${expected})`
          : `${source}: a hole of ${begin - expected} bytes before tensor "${name}" (data must be contiguous)`,
      );
    }
    const n = info.shape.reduce((a, d) => a * d, 1) * SAFE_DTYPES[info.dtype];
    if (end - begin !== n) {
      throw new SafetensorsError(`${source}: tensor "${name}" has ${end - begin} bytes but ${info.dtype}[${info.shape.join(', ')}] needs ${n}`);
    }
    expected = end;
  }
  if (expected !== dataBytes) {
    throw new SafetensorsError(`${source}: the tensors cover ${expected} bytes but the data section has ${dataBytes}`);
  }
  return { tensors, metadata, dataStart: 8 + headerBytes.byteLength };
}

function checkEntry(name: string, v: unknown, source: string): SafeTensorInfo {
  if (v === null || typeof v !== 'object') throw new SafetensorsError(`${source}: entry "${name}" is not an object`);
  const { dtype, shape, data_offsets: offsets } = v as Record<string, unknown>;
  if (typeof dtype !== 'string' || !(dtype in SAFE_DTYPES)) {
    throw new SafetensorsError(`${source}: tensor "${name}" has dtype ${JSON.stringify(dtype)}; expected one of ${Object.keys(SAFE_DTYPES).join(', ')}`);
  }
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new SafetensorsError(`${source}: tensor "${name}" has shape ${JSON.stringify(shape)}; expected a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || offsets.some((d) => !Number.isSafeInteger(d) || d < 0) || offsets[0] > offsets[1]) {
    throw new SafetensorsError(`${source}: tensor "${name}" has data_offsets ${JSON.stringify(offsets)}; expected [begin, end] with 0 <= begin <= end`);
  }
  return { dtype: dtype as SafeDType, shape: shape as number[], dataOffsets: [offsets[0] as number, offsets[1] as number] };
}

/** Converts one tensor's raw little-endian bytes to float32 or int32 values. */
export function decodeTensor(info: SafeTensorInfo, bytes: Uint8Array, name = 'tensor'): HostArray {
  const n = info.shape.reduce((a, d) => a * d, 1);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape = [...info.shape];
  const floats = (fill: (out: Float32Array) => void): HostArray => {
    const out = new Float32Array(n);
    fill(out);
    return { dtype: 'float32', shape, data: out, sourceDtype: info.dtype };
  };
  const ints = (fill: (out: Int32Array) => void): HostArray => {
    const out = new Int32Array(n);
    fill(out);
    return { dtype: 'int32', shape, data: out, sourceDtype: info.dtype };
  };
  switch (info.dtype) {
    case 'F32':
      return floats((o) => { for (let i = 0; i < n; i++) o[i] = view.getFloat32(i * 4, true); });
    case 'F64':
      return floats((o) => { for (let i = 0; i < n; i++) o[i] = view.getFloat64(i * 8, true); });
    case 'F16':
      return floats((o) => { for (let i = 0; i < n; i++) o[i] = halfValue(view.getUint16(i * 2, true)); });
    case 'BF16': {
      const u = new Uint32Array(1);
      const f = new Float32Array(u.buffer);
      return floats((o) => {
        for (let i = 0; i < n; i++) {
          u[0] = view.getUint16(i * 2, true) << 16;
          o[i] = f[0]!;
        }
      });
    }
    case 'I64':
    case 'U64':
      return ints((o) => {
        for (let i = 0; i < n; i++) {
          const v = info.dtype === 'I64' ? view.getBigInt64(i * 8, true) : view.getBigUint64(i * 8, true);
          if (v > 2147483647n || v < -2147483648n) {
            throw new SafetensorsError(`${name}: ${info.dtype} value ${v} at index ${i} does not fit in int32`);
          }
          o[i] = Number(v);
        }
      });
    case 'U32':
      return ints((o) => {
        for (let i = 0; i < n; i++) {
          const v = view.getUint32(i * 4, true);
          if (v > 2147483647) throw new SafetensorsError(`${name}: U32 value ${v} at index ${i} does not fit in int32`);
          o[i] = v;
        }
      });
    case 'I32':
      return ints((o) => { for (let i = 0; i < n; i++) o[i] = view.getInt32(i * 4, true); });
    case 'I16':
      return ints((o) => { for (let i = 0; i < n; i++) o[i] = view.getInt16(i * 2, true); });
    case 'U16':
      return ints((o) => { for (let i = 0; i < n; i++) o[i] = view.getUint16(i * 2, true); });
    case 'I8':
      return ints((o) => { for (let i = 0; i < n; i++) o[i] = view.getInt8(i); });
    case 'U8':
    case 'BOOL':
      return ints((o) => { for (let i = 0; i < n; i++) o[i] = view.getUint8(i); });
  }
}

/** What every safetensors reader answers from the header alone. */
export abstract class SafetensorsHeaderView {
  constructor(readonly header: SafeHeader, readonly source: string) {}

  keys(): string[] {
    return [...this.header.tensors.keys()];
  }

  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  info(name: string): SafeTensorInfo {
    const info = this.header.tensors.get(name);
    if (!info) throw new SafetensorsError(`${this.source}: no tensor named "${name}"`);
    return info;
  }
}

/** A parsed in-memory safetensors file. */
export class SafetensorsFile extends SafetensorsHeaderView {
  constructor(header: SafeHeader, private readonly bytes: Uint8Array, source: string) {
    super(header, source);
  }

  get(name: string): HostArray {
    const info = this.info(name);
    const start = this.header.dataStart + info.dataOffsets[0];
    return decodeTensor(info, this.bytes.subarray(start, this.header.dataStart + info.dataOffsets[1]), `${this.source}: ${name}`);
  }

  /** Every tensor, decoded. */
  all(): Map<string, HostArray> {
    return new Map(this.keys().map((k) => [k, this.get(k)]));
  }
}

/** Parses a whole file held in memory (ArrayBuffer, typed array). */
export function parseSafetensors(data: ArrayBuffer | Uint8Array, source = 'safetensors data'): SafetensorsFile {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const n = headerLength(bytes.subarray(0, 8), bytes.byteLength, source);
  const header = parseHeader(bytes.subarray(8, 8 + n), bytes.byteLength - 8 - n, source);
  return new SafetensorsFile(header, bytes, source);
}

/** Parses a browser Blob/File or a fetch Response. */
export async function parseSafetensorsFrom(src: Blob | Response, source = 'safetensors data'): Promise<SafetensorsFile> {
  return parseSafetensors(await src.arrayBuffer(), source);
}

export interface TensorToWrite {
  dtype: SafeDType;
  shape: readonly number[];
  data: Float32Array | Int32Array | Float64Array | BigInt64Array | Uint8Array | Uint16Array;
}

/** Serialises tensors (keys sorted, header padded with spaces to 8-byte alignment). */
export function serializeSafetensors(tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array<ArrayBuffer> {
  const entries = (tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors)).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const chunks: Uint8Array[] = [];
  for (const [name, t] of entries) {
    const bytes = encodeTensor(name, t);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.byteLength] };
    offset += bytes.byteLength;
    chunks.push(bytes);
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let pos = 8 + json.byteLength;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

function encodeTensor(name: string, t: TensorToWrite): Uint8Array {
  const n = t.shape.reduce((a, d) => a * d, 1);
  if (t.data.length !== n) throw new SafetensorsError(`tensor "${name}": ${t.data.length} values for shape [${t.shape.join(', ')}]`);
  const size = SAFE_DTYPES[t.dtype];
  const out = new Uint8Array(n * size);
  const view = new DataView(out.buffer);
  const src = t.data;
  for (let i = 0; i < n; i++) {
    const v = src[i]!;
    switch (t.dtype) {
      case 'F32': view.setFloat32(i * 4, Number(v), true); break;
      case 'F64': view.setFloat64(i * 8, Number(v), true); break;
      case 'I64': view.setBigInt64(i * 8, BigInt(v), true); break;
      case 'I32': view.setInt32(i * 4, Number(v), true); break;
      case 'U8': case 'BOOL': view.setUint8(i, Number(v)); break;
      case 'F16': case 'BF16': case 'U16': case 'I16': view.setUint16(i * 2, Number(v), true); break;
      default: throw new SafetensorsError(`tensor "${name}": writing ${t.dtype} is not supported; use F32, F64, I64, I32, U8 or BOOL`);
    }
  }
  return out;
}
