import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { CifarResNet, Linear, parseSafetensors, Sequential } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

const bytesOf = (m: { parameters(): A.Tensor[] }): number => m.parameters().reduce((s, p) => s + p.storage.bytes, 0);

describe('Module.to(dtype)', () => {
  it('converts parameters and float buffers in place, halving their bytes, and keeps int buffers', async () => {
    A.manualSeed(1);
    const m = new CifarResNet({ depth: 8, numClasses: 3, widths: [4, 8, 8] });
    const before = bytesOf(m);
    const w = m.stateDict().get('conv1.weight')!;
    const values = await w.data();
    expect(m.half()).toBe(m);
    expect(m.stateDict().get('conv1.weight')).toBe(w);
    expect(w.dtype).toBe('float16');
    expect(w.requiresGrad).toBe(true);
    expect(m.stateDict().get('bn1.running_var')!.dtype).toBe('float16');
    expect(m.stateDict().get('bn1.num_batches_tracked')!.dtype).toBe('int32');
    expect(bytesOf(m)).toBeLessThanOrEqual(before / 2 + 4 * m.parameters().length);
    expect([...(await w.data())]).toEqual([...values].map(A.roundHalf));
    m.float();
    expect(w.dtype).toBe('float32');
    expect([...(await w.data())]).toEqual([...values].map(A.roundHalf));
    expect(() => m.to('bfloat16' as 'float16')).toThrow(/bfloat16/);
    m.dispose();
  });

  it('saves a half model as F16 and loads float32 files into it rounded, as PyTorch does', async () => {
    A.manualSeed(2);
    const a = new Sequential(new Linear(5, 3), new Linear(3, 2));
    const f32 = await a.toSafetensors();
    const half = new Sequential(new Linear(5, 3), new Linear(3, 2)).half();
    expect(half.loadStateDict(parseSafetensors(f32, 'f32').all())).toEqual({ missing: [], unexpected: [] });
    const want = await a.stateDict().get('0.weight')!.data();
    expect([...(await half.stateDict().get('0.weight')!.data())]).toEqual([...want].map(A.roundHalf));
    const bytes = await half.toSafetensors();
    const file = parseSafetensors(bytes, 'half');
    expect(file.header.tensors.get('0.weight')!.dtype).toBe('F16');
    expect(bytes.byteLength).toBeLessThan(f32.byteLength);
    const back = new Sequential(new Linear(5, 3), new Linear(3, 2));
    back.loadStateDict(file.all());
    expect([...(await back.stateDict().get('0.weight')!.data())]).toEqual([...want].map(A.roundHalf));
  });

  it('runs a half model under autocast with half the weight memory, close to float32', async () => {
    A.manualSeed(3);
    const m = new CifarResNet({ depth: 8, numClasses: 3, widths: [4, 8, 8] }).eval();
    const x = A.randn([2, 3, 16, 16], { seed: 4 });
    const want = await A.noGrad(() => m.forward(x)).data();
    const before = A.memory().liveBytes;
    m.half();
    expect(A.memory().liveBytes).toBeLessThan(before);
    expect(() => A.noGrad(() => m.forward(x))).toThrow(/float16.*autocast/);
    const got = await A.noGrad(() => A.autocast(() => m.forward(x))).data();
    const scale = Math.max(...want.map(Math.abs));
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(1e-2 * scale);
    m.dispose();
  });
});
