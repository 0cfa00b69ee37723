import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { CifarResNet, nameMatcher, StateDictError } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

describe('Module', () => {
  it('save(path) and load(path) round-trip, with num_batches_tracked as I64', async () => {
    A.manualSeed(1);
    const a = new CifarResNet({ depth: 8, numClasses: 3, widths: [4, 8, 8] });
    const path = join(mkdtempSync(join(tmpdir(), 'tl-mod-')), 'm.safetensors');
    await a.save(path, { note: 'x' });
    A.manualSeed(2);
    const b = new CifarResNet({ depth: 8, numClasses: 3, widths: [4, 8, 8] });
    const r = await b.load(path);
    expect(r).toEqual({ missing: [], unexpected: [] });
    const x = A.randn([2, 3, 16, 16], { seed: 3 });
    a.eval();
    b.eval();
    expect([...(await A.noGrad(() => b.forward(x)).data())]).toEqual([...(await A.noGrad(() => a.forward(x)).data())]);
    const bytes = await a.toSafetensors();
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true)))));
    expect(header['bn1.num_batches_tracked'].dtype).toBe('I64');
    expect(header.__metadata__.format).toBe('pt');
  });

  it('loadStateDict takes what stateDictData() read back, num_batches_tracked included', async () => {
    A.manualSeed(1);
    const a = new CifarResNet({ depth: 8, numClasses: 3, widths: [4, 8, 8] });
    a.train();
    for (let i = 0; i < 3; i++) A.tidy(() => a.forward(A.randn([2, 3, 16, 16], { seed: 10 + i })));
    A.manualSeed(2);
    const b = new CifarResNet({ depth: 8, numClasses: 3, widths: [4, 8, 8] });
    b.loadStateDict(await a.stateDictData());
    expect([...(await b.bn1.numBatchesTracked.data())]).toEqual([3]);
    expect([...(await b.bn1.runningVar.data())]).toEqual([...(await a.bn1.runningVar.data())]);
    expect([...(await b.conv1.weight.data())]).toEqual([...(await a.conv1.weight.data())]);
  });

  it('names every missing, unexpected and mis-shaped key in one error', async () => {
    const m = new CifarResNet({ depth: 8, numClasses: 3, widths: [4, 8, 8] });
    const sd = new Map(m.stateDict());
    sd.delete('conv1.weight');
    sd.set('extra.weight', A.zeros([1]));
    sd.set('linear.weight', A.zeros([5, 8]));
    try {
      m.loadStateDict(sd);
      expect.fail('no error');
    } catch (e) {
      expect(e).toBeInstanceOf(StateDictError);
      const msg = (e as Error).message;
      expect(msg).toMatch(/missing keys \(1\): conv1.weight/);
      expect(msg).toMatch(/unexpected keys \(1\): extra.weight/);
      expect(msg).toMatch(/shape mismatch for linear.weight: the model has \[3, 8\], the checkpoint \[5, 8\]/);
    }
  });

  it('freeze/unfreeze globs, trainable counts, and a frozen BatchNorm keeps its statistics', async () => {
    const m = new CifarResNet({ depth: 8, numClasses: 3, widths: [4, 8, 8] });
    m.freeze().unfreeze('linear');
    expect(m.namedParameters({ trainable: true }).map(([n]) => n)).toEqual(['linear.weight', 'linear.bias']);
    m.unfreeze('layer3.*.bn?');
    expect(m.parameters({ trainable: true }).length).toBe(6);
    expect(() => m.freeze('nope.*')).toThrow(/matched no parameter/);
    expect(nameMatcher('layer1')('layer1.0.conv1.weight')).toBe(true);
    const rm = await m.bn1.runningMean.data();
    m.train();
    A.tidy(() => m.forward(A.randn([4, 3, 16, 16], { seed: 9 })));
    expect([...(await m.bn1.runningMean.data())]).toEqual([...rm]);
    m.unfreeze('bn1');
    A.tidy(() => m.forward(A.randn([4, 3, 16, 16], { seed: 9 })));
    expect([...(await m.bn1.runningMean.data())]).not.toEqual([...rm]);
  });
});
