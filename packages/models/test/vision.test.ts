/**
 * The vision architectures against PyTorch: reduced configurations written by
 * fixtures/make_vision_fixtures.py (torchvision's classes; a plain-PyTorch ViT with timm's
 * names) load strictly, give the same logits, and the same gradient for every parameter.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import { closeToFixture, gpu } from './fixture-close.js';
import {
  CifarResNet,
  DenseNet,
  EfficientNet,
  getModelSpec,
  isImageModelSpec,
  listModels,
  MobileNetV2,
  parseSafetensors,
  remapLegacyDenseNetKeys,
  ResNet,
  stochasticDepth,
  VGG,
  VGG_LAYOUTS,
  VisionTransformer,
  type ClassifierModel,
  type HostArray,
  type Module,
  type SafetensorsFile,
} from '../src/index.js';

beforeAll(setup);

const RTOL = 1e-4;
const load = (name: string): SafetensorsFile => parseSafetensors(readFileSync(new URL(`../fixtures/vision_${name}.safetensors`, import.meta.url)));

/** Relative to the tensor's scale: elements near zero are held to 1e-4 of its largest. */
const close = (got: Tensor, h: HostArray, what: string): Promise<void> => closeToFixture(got, h, what, 1e-7, RTOL);

/** What every vision architecture adds to ClassifierModel. */
type Vision = ClassifierModel & {
  forward(x: Tensor): Tensor;
  forwardFeatures(x: Tensor): Tensor;
  forwardHead(features: Tensor): Tensor;
  blockOrder(): string[];
};
type Build = (config: never) => Vision;
const cases: [fixture: string, build: Build][] = [
  ['resnet_basic', (c: ConstructorParameters<typeof ResNet>[0]) => new ResNet(c)],
  ['resnet_bottleneck', (c: ConstructorParameters<typeof ResNet>[0]) => new ResNet(c)],
  ['mobilenet_v2', (c: ConstructorParameters<typeof MobileNetV2>[0]) => new MobileNetV2(c)],
  ['efficientnet', (c: ConstructorParameters<typeof EfficientNet>[0]) => new EfficientNet(c)],
  ['vgg', (c: ConstructorParameters<typeof VGG>[0]) => new VGG(c)],
  ['vgg_bn', (c: ConstructorParameters<typeof VGG>[0]) => new VGG(c)],
  ['densenet', (c: ConstructorParameters<typeof DenseNet>[0]) => new DenseNet(c)],
  ['densenet_train', (c: ConstructorParameters<typeof DenseNet>[0]) => new DenseNet(c)],
  ['vit', (c: ConstructorParameters<typeof VisionTransformer>[0]) => new VisionTransformer(c)],
];

describe('vision architectures against PyTorch (reduced configurations)', () => {
  for (const [name, build] of cases) {
    it(`${name}: state dict keys, logits, every parameter gradient, resetClassifier`, async () => {
      const f = load(name);
      const train = name.endsWith('_train');
      const model = build(JSON.parse(f.metadata.config!) as never);
      try {
        const state = new Map(f.keys().filter((k) => k.startsWith('sd.')).map((k) => [k.slice(3), f.get(k)]));
        expect([...model.stateDict().keys()].sort()).toEqual([...state.keys()].sort());
        model.loadStateDict(state);
        model.train(train);

        const x = gpu(f.get('x'));
        const logits = model.forward(x);
        await close(logits, f.get('logits'), 'logits');
        A.backward(logits, gpu(f.get('r')));
        const params = model.namedParameters();
        expect(params.length).toBe(f.keys().filter((k) => k.startsWith('grad.')).length);
        for (const [k, p] of params) {
          expect(p.grad, `gradient of ${k}`).toBeTruthy();
          await close(p.grad!, f.get(`grad.${k}`), `gradient of ${k}`);
        }
        if (train) {
          for (const k of f.keys().filter((key) => key.startsWith('after.'))) {
            const t = model.stateDict().get(k.slice(6))!;
            await close(t.dtype === 'int32' ? A.cast(t, 'float32') : t, f.get(k), k);
          }
        }

        model.eval();
        const backbone = model.stateDict();
        const head = model.classifierPath;
        const features = A.noGrad(() => model.forwardFeatures(x));
        expect(features.shape).toEqual([2, model.numFeatures]);
        model.resetClassifier(3);
        expect(model.numClasses).toBe(3);
        const after = model.stateDict();
        expect([...after.keys()]).toEqual([...backbone.keys()]);
        for (const [k, t] of after) {
          if (k.startsWith(`${head}.`)) expect(t).not.toBe(backbone.get(k));
          else expect(t).toBe(backbone.get(k));
        }
        expect(after.get(`${head}.weight`)!.shape).toEqual([3, model.numFeatures]);
        expect(A.noGrad(() => model.forwardHead(features)).shape).toEqual([2, 3]);
        // Every block name of blockOrder selects some parameters, the head last.
        const order = model.blockOrder();
        for (const b of order) model.freeze(b);
        expect(model.numParameters({ trainable: true })).toBe(0);
        model.unfreeze(order[order.length - 1]!);
        expect(model.namedParameters({ trainable: true }).map(([k]) => k)).toEqual([`${head}.weight`, `${head}.bias`]);
      } finally {
        model.dispose();
      }
    });
  }
});

describe('stochastic depth', () => {
  it('is the identity in eval and keeps or zeroes whole rows, scaled by 1/(1-p), in training', async () => {
    const x = A.add(A.zeros([64, 2, 3, 3]), 1);
    expect(stochasticDepth(x, 0.3, 'row', false)).toBe(x);
    A.manualSeed(5);
    const y = await stochasticDepth(x, 0.25, 'row', true).data();
    const rows = Array.from({ length: 64 }, (_, i) => y.slice(i * 18, (i + 1) * 18));
    for (const r of rows) expect(new Set(r).size).toBe(1);
    const kept = rows.filter((r) => r[0] !== 0);
    for (const r of kept) expect(r[0]).toBeCloseTo(1 / 0.75, 6);
    expect(kept.length).toBeGreaterThan(32);
    expect(kept.length).toBeLessThan(64);
    A.manualSeed(5);
    expect(await stochasticDepth(x, 0.25, 'row', true).data()).toEqual(y);
    const b = await stochasticDepth(x, 0.5, 'batch', true).data();
    expect(new Set(b).size).toBe(1);
  });
});

describe('model registry', () => {
  it('has the CLI ids with their input size and normalisation', () => {
    const ids = listModels('image').map((s) => s.id);
    for (const id of ['resnet18', 'resnet34', 'resnet50', 'cifar_resnet20', 'cifar_resnet32', 'cifar_resnet44', 'cifar_resnet56', 'mobilenet_v2', 'efficientnet_b0', 'vgg16', 'vgg16_bn', 'densenet121', 'vit_b_16']) {
      expect(ids).toContain(id);
    }
    const r = getModelSpec('resnet18');
    expect(isImageModelSpec(r) && r.inputSize === 224 && r.mean[0] === 0.485).toBe(true);
    const c = getModelSpec('cifar_resnet20');
    expect(isImageModelSpec(c) && c.inputSize === 32 && c.numClasses === 10).toBe(true);
    expect(() => getModelSpec('resnet19')).toThrow(/unknown model "resnet19".*resnet18/);
  });

  it('builds the standard configurations with PyTorch\'s keys, shapes and order', () => {
    // Written by the fixture script from torchvision's models (the ViT: timm's layout).
    const full = JSON.parse(gunzipSync(readFileSync(new URL('../fixtures/vision_full_keys.json.gz', import.meta.url))).toString()) as Record<string, [string, number[]][]>;
    // VGG's first Linear (25088 x 4096, 411 MB) is more than one binding holds on adapters
    // with a 128 MiB maxStorageBufferBindingSize (lavapipe): there, check it at width 8.
    const bindable = (bytes: number): boolean => bytes <= A.engine().device.limits.maxStorageBufferBindingSize;
    for (const [id, expected] of Object.entries(full)) {
      let keys = expected;
      let make = (): Module => getModelSpec(id).create();
      if (id.startsWith('vgg') && !bindable(25088 * 4096 * 4)) {
        keys = expected.map(([k, s]) => [k, k.startsWith('classifier.') ? s.map((d) => (d === 4096 ? 8 : d)) : s]);
        make = () => new VGG({ cfg: VGG_LAYOUTS.vgg16, batchNorm: id === 'vgg16_bn', hidden: 8 });
      }
      const m = make();
      try {
        // PyTorch's 0-d num_batches_tracked is [] here too.
        expect([...m.stateDict()].map(([k, t]) => [k, [...t.shape]]), id).toEqual(keys);
      } finally {
        m.dispose();
      }
    }
    for (const depth of [20, 32, 44, 56]) {
      const m = getModelSpec(`cifar_resnet${depth}`).create({ numClasses: 7 }) as ClassifierModel;
      try {
        expect(m).toBeInstanceOf(CifarResNet);
        expect(m.numClasses).toBe(7);
        expect(m.stateDict().size).toBe(1 + 5 + ((depth - 2) / 6) * 3 * 12 + 2);
      } finally {
        m.dispose();
      }
    }
  });
});

describe('DenseNet legacy checkpoints', () => {
  it('renames pre-0.3 torchvision keys', () => {
    const m = remapLegacyDenseNetKeys(new Map([
      ['features.denseblock1.denselayer1.norm.1.weight', 1],
      ['features.denseblock1.denselayer12.conv.2.weight', 2],
      ['features.transition1.norm.weight', 3],
    ]));
    expect([...m.keys()]).toEqual(['features.denseblock1.denselayer1.norm1.weight', 'features.denseblock1.denselayer12.conv2.weight', 'features.transition1.norm.weight']);
  });
});
