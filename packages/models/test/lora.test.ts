/**
 * LoRA against a PyTorch reference with PEFT's math (scripts/lora_fixtures.py): an attention
 * block's query/value, convolutions picked by a regular expression, and GPT-2's fused c_attn
 * (Conv1D, fan_in_fan_out). The adapter loads from PEFT's files; outputs, the adapter's
 * gradients and the merged weights match to 1e-4; our saved files have PEFT's keys and config.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import {
  adapterFiles, CifarResNet, Conv1D, Conv2d, Linear, loadAdapter, lora, loraOf, Module, parseAdapterConfig, parseSafetensors,
  type LoraModel, type SafetensorsFile,
} from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';
import { closeToFixture, gpu } from './fixture-close.js';

beforeAll(setup);

const fixture = (name: string): Uint8Array => readFileSync(new URL(`./fixtures/lora/${name}`, import.meta.url));

class Attention extends Module {
  readonly query = this.module('query', new Linear(8, 8));
  readonly key = this.module('key', new Linear(8, 8));
  readonly value = this.module('value', new Linear(8, 8));
  readonly dense = this.module('dense', new Linear(8, 8));
  forward(x: Tensor): Tensor {
    const a = A.softmax(A.mul(A.matmul(this.query.forward(x), this.key.forward(x).transpose(-1, -2)), 1 / Math.sqrt(8)), -1);
    return this.dense.forward(A.matmul(a, this.value.forward(x)));
  }
}

class ConvNet extends Module {
  readonly conv1 = this.module('conv1', new Conv2d(3, 6, 3, { stride: 2, padding: 1 }));
  readonly conv2 = this.module('conv2', new Conv2d(6, 5, 1));
  readonly conv3 = this.module('conv3', new Conv2d(5, 4, [3, 2], { stride: [1, 2], padding: [1, 0], bias: false }));
  forward(x: Tensor): Tensor {
    return this.conv3.forward(A.relu(this.conv2.forward(A.relu(this.conv1.forward(x)))));
  }
}

class GPT2Attn extends Module {
  readonly cAttn = this.module('c_attn', new Conv1D(12, 4));
  readonly cProj = this.module('c_proj', new Conv1D(4, 12));
  forward(x: Tensor): Tensor {
    return this.cProj.forward(A.tanh(this.cAttn.forward(x)));
  }
}

class GPT2Block extends Module {
  readonly attn = this.module('attn', new GPT2Attn());
  forward(x: Tensor): Tensor {
    return this.attn.forward(x);
  }
}

const CASES: { tag: string; make: () => Module & { forward(x: Tensor): Tensor }; targets: string[] }[] = [
  { tag: 'attention', make: () => new Attention(), targets: ['query', 'value'] },
  { tag: 'conv', make: () => new ConvNet(), targets: ['conv1', 'conv3'] },
  { tag: 'gpt2', make: () => new GPT2Block(), targets: ['attn.c_attn'] },
];

function baseWeights(f: SafetensorsFile): Map<string, ReturnType<SafetensorsFile['get']>> {
  return new Map(f.keys().filter((k) => k.startsWith('base.')).map((k) => [k.slice(5), f.get(k)]));
}

describe('LoRA against a PyTorch reference of PEFT', () => {
  for (const c of CASES) {
    it(`${c.tag}: output, adapter gradients and merged weights to 1e-4; saved files as PEFT's`, async () => {
      const f = parseSafetensors(fixture(`${c.tag}.safetensors`));
      const model = c.make();
      model.loadStateDict(baseWeights(f));
      const config = new TextDecoder().decode(fixture(`${c.tag}_adapter_config.json`));
      const peftWeights = fixture(`${c.tag}_adapter_model.safetensors`);
      const lm = loadAdapter(model, { config, weights: peftWeights });
      expect([...lm.layers.keys()].sort()).toEqual(c.targets);
      expect(model.namedParameters({ trainable: true }).map(([k]) => k).sort()).toEqual(
        c.targets.flatMap((t) => [`${t}.lora_A.default.weight`, `${t}.lora_B.default.weight`]).sort());

      const y = model.forward(gpu(f.get('x')));
      await closeToFixture(y, f.get('y'), `${c.tag} output`);
      A.backward(A.sum(A.mul(y, gpu(f.get('gout')))));
      for (const [k, t] of lm.adapterStateDict()) await closeToFixture(t.grad!, f.get(`grad.${k}`), `${c.tag} d/d ${k}`);
      expect(model.namedParameters({ trainable: false }).filter(([, p]) => p.grad !== null).map(([k]) => k)).toEqual([]);

      // Merged: the base weights are W + B @ A * scaling and the output is unchanged.
      const yUnmerged = await y.data();
      lm.merge();
      for (const t of c.targets) await closeToFixture(lookup(model, t).weight, f.get(`merged.${t}.weight`), `${c.tag} merged ${t}`);
      const yMerged = A.noGrad(() => model.forward(gpu(f.get('x'))));
      await closeToFixture(yMerged, { ...f.get('y'), data: yUnmerged as Float32Array }, `${c.tag} merged output`);
      lm.unmerge();
      for (const t of c.targets) await closeToFixture(lookup(model, t).weight, f.get(`base.${t}.weight`), `${c.tag} unmerged ${t}`, 1e-6);

      const files = await adapterFiles(lm);
      const ours = parseSafetensors(files.weights);
      const theirs = parseSafetensors(peftWeights);
      expect(ours.keys().sort()).toEqual(theirs.keys().sort());
      for (const k of theirs.keys()) {
        expect(ours.get(k).shape).toEqual(theirs.get(k).shape);
        expect([...ours.get(k).data]).toEqual([...theirs.get(k).data]);
      }
      expect(ours.metadata).toEqual({ format: 'pt' });
      expect(files.config).toEqual(parseAdapterConfig(config));
    });
  }
});

function lookup(model: Module, path: string): Linear | Conv2d | Conv1D {
  const m = [...model.namedModules()].find(([n]) => n === path)?.[1];
  if (!(m instanceof Linear || m instanceof Conv2d || m instanceof Conv1D)) throw new Error(`no adaptable module ${path}`);
  return m;
}

describe('lora()', () => {
  it('starts as the base (B = 0, A within ±1/sqrt(fan_in)), freezes it, and trains only the adapter and the new head', async () => {
    A.manualSeed(4);
    const model = new CifarResNet({ depth: 8, numClasses: 3, widths: [4, 8, 8] }).eval();
    const x = A.randn([2, 3, 8, 8], { seed: 5 });
    const before = await A.noGrad(() => model.forward(x)).data();
    const lm = lora(model, { r: 2, alpha: 4, targetModules: ['conv1', 'conv2'], modulesToSave: ['linear'] });
    expect([...await A.noGrad(() => model.forward(x)).data()]).toEqual([...before]);
    const trainable = model.namedParameters({ trainable: true }).map(([k]) => k);
    expect(trainable).toContain('layer1.0.conv1.lora_A.default.weight');
    expect(trainable).toContain('linear.weight');
    expect(trainable.every((k) => k.includes('.lora_') || k.startsWith('linear.'))).toBe(true);
    const a = await lm.layers.get('layer2.0.conv2')!.weights('default').a.data();
    const bound = 1 / Math.sqrt(8 * 9);
    expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(bound / 2);
    const { trainable: n, total } = lm.trainableParameters();
    expect(n).toBe(model.numParameters({ trainable: true }));
    expect(n).toBeLessThan(total / 2);
    // The head is saved with the adapter under PEFT's modules_to_save names.
    const keys = [...lm.adapterStateDict().keys()];
    expect(keys).toContain('base_model.model.linear.weight');
    expect(keys).toContain('base_model.model.conv1.lora_B.weight');
    expect((await adapterFiles(lm)).config.modules_to_save).toEqual(['linear']);
    lm.mergeAndUnload();
    expect(loraOf(model)).toBeUndefined();
    expect(model.namedParameters().some(([k]) => k.includes('lora_'))).toBe(false);
  });

  it('switches between named adapters on one base, each with its own head, and round-trips through PEFT files', async () => {
    A.manualSeed(6);
    const make = () => new CifarResNet({ depth: 8, numClasses: 3, widths: [4, 8, 8] }).eval();
    const model = make();
    const x = A.randn([2, 3, 8, 8], { seed: 7 });
    const lm = lora(model, { r: 2, alpha: 2, targetModules: 'layer\\d\\.0\\.conv1', modulesToSave: ['linear'], adapterName: 'one' });
    lm.addAdapter('two', { r: 3, alpha: 6, targetModules: ['conv2'], modulesToSave: ['linear'] });
    expect(lm.activeAdapter).toBe('one');
    const perturb = (l: LoraModel, seed: number) => A.noGrad(() => {
      for (const [, t] of l.adapterStateDict()) A.assign(t, A.randn([...t.shape], { seed: seed++, std: 0.3 }));
    });
    perturb(lm, 10);
    const yOne = await A.noGrad(() => model.forward(x)).data();
    lm.setAdapter('two');
    expect(model.namedParameters({ trainable: true }).some(([k]) => k.includes('lora_A.one'))).toBe(false);
    perturb(lm, 20);
    const yTwo = await A.noGrad(() => model.forward(x)).data();
    expect([...yTwo]).not.toEqual([...yOne]);
    lm.setAdapter('one');
    expect([...await A.noGrad(() => model.forward(x)).data()]).toEqual([...yOne]);
    const filesTwo = await adapterFiles(lm, 'two');
    expect(filesTwo.config.target_modules).toEqual(['conv2']);

    // Into a fresh base of the same shape: the same outputs.
    const other = make();
    other.loadStateDict(new Map([...model.stateDict()].filter(([k]) => !k.includes('lora_') && !k.startsWith('linear.'))), { strict: false });
    const lm2 = loadAdapter(other, { config: JSON.stringify(filesTwo.config), weights: filesTwo.weights }, 'two');
    expect(lm2.activeAdapter).toBe('two');
    const got = await A.noGrad(() => other.forward(x)).data();
    for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(yTwo[i]!, 5);
  });

  it('names the nearest modules when a target matches none, and refuses what it cannot adapt', () => {
    const model = new CifarResNet({ depth: 8, numClasses: 3, widths: [4, 8, 8] });
    expect(() => lora(model, { targetModules: ['conv_1'] })).toThrow(/target module "conv_1" matches no module of CifarResNet; the nearest names are conv1, layer1\.0\.conv1/);
    expect(() => lora(model, { targetModules: 'layer9\\..*' })).toThrow(/matches no module of CifarResNet; the nearest names are/);
    expect(() => lora(model, { targetModules: ['bn1'] })).toThrow(/"bn1" is a BatchNorm2d; LoRA adapts Linear, Conv2d and Conv1D layers/);
    expect(() => lora(model, { r: 0, targetModules: ['conv1'] })).toThrow(/r must be a positive integer, got 0/);
    expect(() => lora(model, { dropout: 1, targetModules: ['conv1'] })).toThrow(/dropout must be in \[0, 1\), got 1/);
    expect(model.numParameters({ trainable: true })).toBe(model.numParameters());
    expect(loraOf(model)).toBeUndefined();
  });

  it('refuses an adapter made for another base with the first mismatched key and its shapes, leaving the model as it was', () => {
    const model = new ConvNet();
    const config = new TextDecoder().decode(fixture('attention_adapter_config.json'));
    expect(() => loadAdapter(model, { config, weights: fixture('attention_adapter_model.safetensors') })).toThrow(/target module "query" matches no module of ConvNet; the nearest names are/);
    const narrow = new (class extends Module {
      readonly query = this.module('query', new Linear(8, 6));
      readonly value = this.module('value', new Linear(8, 8));
      forward(x: Tensor): Tensor { return x; }
    })();
    expect(() => loadAdapter(narrow, { config, weights: fixture('attention_adapter_model.safetensors') }))
      .toThrow(/base_model\.model\.query\.lora_B\.weight is \[8, 4\] in the adapter but \[6, 4\] on this base/);
    expect(loraOf(narrow)).toBeUndefined();
    expect(narrow.namedParameters().map(([k]) => k)).toEqual(['query.weight', 'query.bias', 'value.weight', 'value.bias']);
    const gpt2Config = new TextDecoder().decode(fixture('gpt2_adapter_config.json'));
    expect(() => loadAdapter(new GPT2Block(), { config: gpt2Config.replace('"fan_in_fan_out": true', '"fan_in_fan_out": false'), weights: fixture('gpt2_adapter_model.safetensors') }))
      .toThrow(/fan_in_fan_out is false but the targeted layers of GPT2Block store their weights \[in, out\]/);
    expect(() => parseAdapterConfig('{"peft_type": "IA3"}')).toThrow(/peft_type is "IA3"; only LORA adapters are supported/);
  });

  it('drops the adapter input only in training mode', async () => {
    A.manualSeed(8);
    const model = new Attention();
    const lm = lora(model, { r: 2, alpha: 4, dropout: 0.5, targetModules: ['query'] });
    A.noGrad(() => { for (const [, t] of lm.adapterStateDict()) A.assign(t, A.randn([...t.shape], { seed: 9 })); });
    const x = A.randn([1, 5, 8], { seed: 10 });
    model.eval();
    const e1 = await A.noGrad(() => model.forward(x)).data();
    const e2 = await A.noGrad(() => model.forward(x)).data();
    expect([...e1]).toEqual([...e2]);
    model.train();
    const t1 = await A.noGrad(() => model.forward(x)).data();
    expect([...t1]).not.toEqual([...e1]);
  });
});
