import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  loadSafetensors, parseSafetensors, saveSafetensors, SafetensorsError, SafetensorsFileReader, serializeSafetensors,
} from '../src/node.js';
import { repoData } from '../../../test-data.js';

const fixture = new URL('../../autograd/fixtures/conv2d_basic.safetensors', import.meta.url).pathname;
const cifar = repoData('pretrained/cifar10-resnet20.safetensors');

function withHeader(header: object, data = new Uint8Array()): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('safetensors', () => {
  it('reads a file PyTorch wrote, from memory and from disk', async () => {
    const mem = parseSafetensors(readFileSync(fixture));
    expect(mem.keys().sort()).toEqual(['b', 'grad.b', 'grad.w', 'grad.x', 'gy', 'w', 'x', 'y']);
    expect(JSON.parse(mem.metadata.config!).k).toBe(3);
    const x = mem.get('x');
    expect(x.shape).toEqual([2, 3, 9, 7]);
    const r = await SafetensorsFileReader.open(fixture);
    expect([...(await r.get('x')).data]).toEqual([...x.data]);
    await r.close();
  });

  it('reads the CIFAR ResNet-20 checkpoint converted from PyTorch', async () => {
    const { tensors, metadata } = await loadSafetensors(cifar);
    expect(tensors.size).toBe(97);
    expect(metadata.num_classes).toBe('10');
    expect(tensors.get('conv1.weight')!.shape).toEqual([16, 3, 3, 3]);
    expect(tensors.get('layer3.2.bn2.running_var')!.shape).toEqual([64]);
    expect(tensors.get('linear.weight')!.shape).toEqual([10, 64]);
  });

  it('round-trips F32/I64/F64/U8 with metadata, keys sorted, header 8-byte aligned', async () => {
    const bytes = serializeSafetensors({
      'z.w': { dtype: 'F32', shape: [2, 2], data: new Float32Array([1, 2, 3, 4.5]) },
      'a.n': { dtype: 'I64', shape: [1], data: new Int32Array([7]) },
      'm.d': { dtype: 'F64', shape: [3], data: new Float64Array([0.1, 0.2, 0.3]) },
      'b.u': { dtype: 'U8', shape: [2], data: new Uint8Array([0, 255]) },
    }, { format: 'pt' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    expect(Object.keys(header)).toEqual(['__metadata__', 'a.n', 'b.u', 'm.d', 'z.w']);
    const f = parseSafetensors(bytes);
    expect([...f.get('z.w').data]).toEqual([1, 2, 3, 4.5]);
    expect([...f.get('a.n').data]).toEqual([7]);
    expect([...f.get('b.u').data]).toEqual([0, 255]);
    expect(f.get('m.d').data[0]).toBeCloseTo(0.1, 7);
    expect(f.metadata).toEqual({ format: 'pt' });
    const dir = mkdtempSync(join(tmpdir(), 'tl-st-'));
    await saveSafetensors(join(dir, 'x.safetensors'), { w: { dtype: 'F32', shape: [1], data: new Float32Array([3]) } });
    expect([...(await loadSafetensors(join(dir, 'x.safetensors'))).tensors.get('w')!.data]).toEqual([3]);
  });

  it('converts F16 and BF16 to float32', () => {
    const f16 = new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x3555, 0x7c00]).buffer);
    const bf16 = new Uint8Array(new Uint16Array([0x3f80, 0xc040]).buffer);
    const data = new Uint8Array([...f16, ...bf16]);
    const f = parseSafetensors(withHeader({
      h: { dtype: 'F16', shape: [4], data_offsets: [0, 8] },
      b: { dtype: 'BF16', shape: [2], data_offsets: [8, 12] },
    }, data));
    const h = f.get('h').data;
    expect(h[0]).toBe(1);
    expect(h[1]).toBe(-2);
    expect(h[2]).toBeCloseTo(1 / 3, 3);
    expect(h[3]).toBe(Infinity);
    expect([...f.get('b').data]).toEqual([1, -3]);
  });

  it('names the problem in a bad file', () => {
    const bad = (bytes: Uint8Array): string => {
      try {
        parseSafetensors(bytes, 'bad.safetensors');
      } catch (e) {
        expect(e).toBeInstanceOf(SafetensorsError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(bad(new Uint8Array(4))).toMatch(/too small/);
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 10n ** 12n, true);
    expect(bad(huge)).toMatch(/exceeds/);
    expect(bad(withHeader({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)))).toMatch(/has 4 bytes but F32\[2\] needs 8/);
    expect(bad(withHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)))).toMatch(/hole/);
    expect(bad(withHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [2, 6] } }, new Uint8Array(8)))).toMatch(/overlaps/);
    expect(bad(withHeader({ a: { dtype: 'X9', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)))).toMatch(/dtype "X9"/);
    expect(bad(withHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(12)))).toMatch(/data section has 12/);
    const notJson = withHeader({});
    notJson[9] = 0x7b;
    notJson.set(new TextEncoder().encode('{x'), 8);
    expect(bad(notJson)).toMatch(/not valid JSON/);
    const notUtf8 = withHeader({ a: 1 });
    notUtf8[10] = 0xff;
    expect(bad(notUtf8)).toMatch(/UTF-8/);
  });

  it('survives 2,000 mutated files: a SafetensorsError or a valid parse, nothing else', () => {
    const original = readFileSync(fixture);
    let state = 12345;
    const next = (): number => (state = (Math.imul(state, 1103515245) + 12345) >>> 0);
    let rejected = 0;
    for (let i = 0; i < 2000; i++) {
      const bytes = new Uint8Array(original);
      const headerEnd = 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true));
      const flips = 1 + (next() % 4);
      for (let k = 0; k < flips; k++) {
        const pos = i % 10 === 0 ? next() % 8 : next() % headerEnd;
        bytes[pos] = next() & 0xff;
      }
      const cut = i % 7 === 0 ? bytes.subarray(0, next() % bytes.length) : bytes;
      try {
        const f = parseSafetensors(cut);
        for (const k of f.keys()) f.get(k);
      } catch (e) {
        if (!(e instanceof SafetensorsError)) throw new Error(`mutation ${i}: ${(e as Error).name}: ${(e as Error).message}`);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(1000);
  });
});
