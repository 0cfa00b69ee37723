/**
 * Layer-wise lr decay over every architecture's block list: the stem gets the most decayed
 * rate, the head the full one, and every parameter falls in some block (VGG's, DenseNet's and
 * ViT's blocks are comma lists, which a prefix match missed).
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BertForSequenceClassification, ConvNeXt, DenseNet, DistilBertForSequenceClassification, EfficientNet, getModelSpec, GPT2ForSequenceClassification,
  Inception3, MobileNetV2, nameMatcher, parseSafetensors, ResNet, RobertaForSequenceClassification, VGG, VisionTransformer, type Module,
} from '@tl/models';
import { adamw, type TrainableModel } from '../src/index.js';
import { blockDepths, paramGroups } from '../src/param-groups.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

const config = (fixture: string): never => JSON.parse(parseSafetensors(readFileSync(new URL(`../../models/fixtures/${fixture}.safetensors`, import.meta.url))).metadata.config!) as never;

const cases: [string, () => Module][] = [
  ['resnet', () => new ResNet(config('vision_resnet_basic'))],
  ['mobilenet_v2', () => new MobileNetV2(config('vision_mobilenet_v2'))],
  ['mobilenet_v3_small', () => getModelSpec('mobilenet_v3_small').create({ numClasses: 5 })],
  ['efficientnet', () => new EfficientNet(config('vision_efficientnet'))],
  ['vgg', () => new VGG(config('vision_vgg'))],
  ['vgg_bn', () => new VGG(config('vision_vgg_bn'))],
  ['densenet', () => new DenseNet(config('vision_densenet'))],
  ['vit', () => new VisionTransformer(config('vision_vit'))],
  ['convnext', () => new ConvNeXt(config('vision_convnext'))],
  ['inception', () => new Inception3(config('vision_inception'))],
  ['cifar_resnet20', () => getModelSpec('cifar_resnet20').create({ numClasses: 10 })],
  ['bert', () => new BertForSequenceClassification(config('text_bert'))],
  ['distilbert', () => new DistilBertForSequenceClassification(config('text_distilbert'))],
  ['roberta', () => new RobertaForSequenceClassification(config('text_roberta'))],
  ['gpt2', () => new GPT2ForSequenceClassification(config('text_gpt2'))],
];

describe('layerDecay over each architecture\'s blockOrder()', () => {
  for (const [name, build] of cases) {
    it(name, () => {
      const model = build() as TrainableModel;
      try {
        const blocks = model.blockOrder!();
        const names = model.namedParameters().map(([n]) => n);
        const matchers = blocks.map((b) => nameMatcher(b));
        expect(names.filter((n) => !matchers.some((m) => m(n)))).toEqual([]);
        const decay = 0.5;
        const groups = paramGroups(model, adamw({ lr: 1 }), { layerDecay: decay });
        const lr = new Map(groups.map((g) => [g.name!, g.lr]));
        const most = decay ** (blocks.length - 1);
        expect(lr.get(names[0]!)).toBeCloseTo(most, 12);
        for (const l of lr.values()) expect(l).toBeGreaterThanOrEqual(most - 1e-15);
        const head = nameMatcher(model.classifierPath!);
        const headNames = names.filter((n) => head(n));
        expect(headNames.length).toBeGreaterThan(0);
        for (const n of headNames) expect(lr.get(n)).toBe(1);
        // Depth never increases along the parameters' order, which runs from input to output
        // (Inception's auxiliary head is declared mid-network but trains like a head).
        const depth = blockDepths(names, blocks);
        const seq = names.filter((n) => !n.startsWith('AuxLogits.')).map((n) => depth.get(n)!);
        expect(seq.every((d, i) => i === 0 || d <= seq[i - 1]!)).toBe(true);
      } finally {
        for (const [, t] of model.stateDict()) t.dispose();
      }
    });
  }
});
