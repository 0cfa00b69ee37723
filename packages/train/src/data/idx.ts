/** The IDX format of MNIST and Fashion-MNIST: big-endian magic (dtype, rank), dims, data. */
export interface IdxArray {
  shape: number[];
  data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

const TYPES: Record<number, [string, number]> = {
  0x08: ['u8', 1], 0x09: ['i8', 1], 0x0b: ['i16', 2], 0x0c: ['i32', 4], 0x0d: ['f32', 4], 0x0e: ['f64', 8],
};

export function parseIdx(bytes: Uint8Array, source = 'IDX data'): IdxArray {
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw new Error(`${source}: not an IDX file (bad magic number)`);
  const type = TYPES[bytes[2]!];
  if (!type) throw new Error(`${source}: unknown IDX element type 0x${bytes[2]!.toString(16)}`);
  const rank = bytes[3]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4 + 4 * rank) throw new Error(`${source}: truncated header`);
  const shape = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i));
  const n = shape.reduce((a, d) => a * d, 1);
  const start = 4 + 4 * rank;
  const [kind, size] = type;
  if (bytes.length < start + n * size) throw new Error(`${source}: ${bytes.length - start} data bytes for ${n} elements of ${size} bytes`);
  const get = (fn: (o: number) => number, out: IdxArray['data']): IdxArray['data'] => {
    for (let i = 0; i < n; i++) out[i] = fn(start + i * size);
    return out;
  };
  switch (kind) {
    case 'u8': return { shape, data: bytes.slice(start, start + n) };
    case 'i8': return { shape, data: get((o) => view.getInt8(o), new Int8Array(n)) };
    case 'i16': return { shape, data: get((o) => view.getInt16(o), new Int16Array(n)) };
    case 'i32': return { shape, data: get((o) => view.getInt32(o), new Int32Array(n)) };
    case 'f32': return { shape, data: get((o) => view.getFloat32(o), new Float32Array(n)) };
    default: return { shape, data: get((o) => view.getFloat64(o), new Float64Array(n)) };
  }
}
