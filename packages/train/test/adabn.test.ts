/** AdaBN against PyTorch: running statistics re-estimated with momentum=None over the same
 * batches, dropout kept in eval, and the adapted model's outputs (scripts/adapt_fixtures.py). */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { BatchNorm2d, Conv2d, Dropout, Linear, Module, parseSafetensors } from '@tl/models';
import { adaBN, adaBNCallback, TensorDataset, Trainer } from '../src/index.js';
import { expectClose, setup } from '../../tensor/test/helpers.js';
import { toyData } from './toy.js';

beforeAll(setup);

const f = parseSafetensors(readFileSync(new URL('./fixtures/adabn.safetensors', import.meta.url)));
const want = (key: string) => ({ shape: f.get(key).shape, data: Float64Array.from(f.get(key).data) });

/** scripts/adapt_fixtures.py's BnNet. */
class BnNet extends Module {
  readonly conv1 = this.module('conv1', new Conv2d(3, 4, 3, { padding: 1, bias: false }));
  readonly bn1 = this.module('bn1', new BatchNorm2d(4));
  readonly drop = this.module('drop', new Dropout(0.5));
  readonly conv2 = this.module('conv2', new Conv2d(4, 6, 3, { stride: 2, padding: 1, bias: false }));
  readonly bn2 = this.module('bn2', new BatchNorm2d(6));
  readonly fc = this.module('fc', new Linear(6, 3));
  forward(x: Tensor): Tensor {
    const h = this.drop.forward(A.relu(this.bn1.forward(this.conv1.forward(x))));
    return this.fc.forward(A.mean(A.relu(this.bn2.forward(this.conv2.forward(h))), [2, 3]));
  }
}

function fixtureNet(): BnNet {
  const net = new BnNet();
  const before = Object.fromEntries(f.keys().filter((k) => k.startsWith('before.')).map((k) => [k.slice('before.'.length), f.get(k)]));
  net.loadStateDict(before, { strict: true });
  return net;
}

function targetData(): TensorDataset {
  const x = f.get('x');
  const per = 3 * 8 * 8;
  const inputs = Array.from({ length: x.shape[0]! }, (_, i) => (x.data as Float32Array).slice(i * per, (i + 1) * per));
  return new TensorDataset(inputs, inputs.map(() => 0), [3, 8, 8], 'adabn-fixture', ['any']);
}

async function expectAdapted(net: BnNet): Promise<void> {
  for (const bn of ['bn1', 'bn2']) {
    const layer = net[bn as 'bn1' | 'bn2'];
    await expectClose(layer.runningMean, want(`after.${bn}.running_mean`), 1e-4, 1e-5);
    await expectClose(layer.runningVar, want(`after.${bn}.running_var`), 1e-4, 1e-5);
    expect([...(await layer.numBatchesTracked.data())]).toEqual([...f.get(`after.${bn}.num_batches_tracked`).data].map(Number));
  }
  const x = A.tensor(f.get('x').data as Float32Array, { shape: f.get('x').shape });
  const y = A.noGrad(() => net.forward(x));
  await expectClose(y, want('y'), 1e-4, 1e-5);
  x.dispose();
  y.dispose();
}

describe('adaBN', () => {
  it("matches PyTorch's momentum=None re-estimation, with dropout in eval, and restores the model's modes", async () => {
    const net = fixtureNet();
    net.train();
    const r = await adaBN(net, targetData(), { batchSize: Number(f.metadata.batch) });
    expect(r).toEqual({ layers: ['bn1', 'bn2'], batches: 3, samples: 11 });
    expect([...net.namedModules()].every(([, m]) => m.training)).toBe(true);
    expect(net.bn1.opts.momentum).toBeUndefined();
    net.eval();
    await expectAdapted(net);
    net.dispose();
  });

  it('re-estimates frozen BatchNorms too, leaving them frozen; a callback runs it before training', async () => {
    const net = fixtureNet();
    net.freeze();
    const logs: string[] = [];
    const trainer = new Trainer(net, { epochs: 1, batchSize: 4, logger: (l) => logs.push(l), callbacks: [adaBNCallback(targetData(), { batchSize: Number(f.metadata.batch) })] });
    await trainer.opts.callbacks![0]!.onTrainBegin!(trainer);
    expect(logs).toEqual(['AdaBN before training: re-estimated 2 BatchNorm layers on 11 target samples (3 batches)']);
    expect(net.namedParameters().every(([, p]) => !p.requiresGrad)).toBe(true);
    net.eval();
    await expectAdapted(net);
    net.dispose();
  });

  it('says so for a model without BatchNorm', async () => {
    class NoBn extends Module {
      readonly fc = this.module('fc', new Linear(64, 2));
      forward(x: Tensor): Tensor {
        return this.fc.forward(x.reshape([x.shape[0]!, 64]));
      }
    }
    const m = new NoBn();
    await expect(adaBN(m, toyData(4, 1))).rejects.toThrow(/^NoBn has no BatchNorm layer: AdaBN re-estimates BatchNorm statistics/);
    m.dispose();
  });
});
