/**
 * timm's key layout of EfficientNet and MobileNetV3 (timm is not in Debian: the fixture script
 * names each torchvision key as timm's builders do, from the module tree): the reduced fixtures
 * renamed to timm's names load through the key map with the same logits, and the map reports
 * each rename; at full size the map turns timm's names of B1-B4 and Large/Small into exactly
 * torchvision's keys.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import { setup } from '../../tensor/test/helpers.js';
import {
  EfficientNet,
  loadTimmVisionCheckpoint,
  mapTimmVisionKeys,
  MobileNetV3,
  StateDictError,
  type EfficientNetConfig,
  type HostArray,
  type MobileNetV3Config,
  type TimmVisionArch,
} from '../src/index.js';
import { fixtureExtra, fixtureState, fullSizeKeys, loadFixture } from './efficientnet-mobilenet-fixture.js';
import { gpu } from './fixture-close.js';

beforeAll(setup);

const build = (name: string): EfficientNet | MobileNetV3 => {
  const config = JSON.parse(loadFixture(name).metadata.config!) as EfficientNetConfig & MobileNetV3Config;
  return name.startsWith('efficientnet') ? new EfficientNet(config) : new MobileNetV3(config);
};

/** The fixture's state dict under timm's names; MobileNetV3's head Linear as timm's 1x1 conv. */
function timmState(name: string): Map<string, HostArray> {
  const names = fixtureExtra()[name]!.timm;
  const out = new Map<string, HostArray>();
  for (const [k, v] of fixtureState(loadFixture(name))) {
    const conv = names[k] === 'conv_head.weight' && v.shape.length === 2;
    out.set(names[k]!, conv ? { ...v, shape: [...v.shape, 1, 1] } : v);
  }
  return out;
}

describe('timm checkpoints of EfficientNet and MobileNetV3', () => {
  for (const name of ['efficientnet_scaled', 'mobilenet_v3_large', 'mobilenet_v3_small']) {
    it(`${name}: timm's names load with the same logits, and every rename is reported`, async () => {
      const f = loadFixture(name);
      const names = fixtureExtra()[name]!.timm;
      const reference = build(name);
      const model = build(name);
      try {
        reference.loadStateDict(fixtureState(f));
        const report = loadTimmVisionCheckpoint(model, timmState(name));
        const renamed = Object.entries(names).filter(([tv, timm]) => tv !== timm).map(([tv, timm]) => [timm, tv]);
        expect(report.renamed.sort()).toEqual(renamed.sort());
        expect(report.unmatched).toEqual([]);
        expect(report.reshaped).toEqual(model instanceof MobileNetV3 ? ['classifier.0.weight'] : []);
        const x = gpu(f.get('x'));
        reference.eval();
        model.eval();
        const want = await A.noGrad(() => reference.forward(x)).data();
        expect(await A.noGrad(() => model.forward(x)).data()).toEqual(want);

        // A plain loadStateDict (what fromPretrained calls) reads timm's names too.
        const again = build(name).eval();
        try {
          again.loadStateDict(timmState(name));
          expect(await A.noGrad(() => again.forward(x)).data()).toEqual(want);
        } finally {
          again.dispose();
        }
      } finally {
        reference.dispose();
        model.dispose();
      }
    });
  }

  it('leaves keys of no rule for the strict load to name', () => {
    const state = timmState('mobilenet_v3_small');
    state.set('blocks.0.0.conv_extra.weight', state.get('conv_stem.weight')!);
    const model = build('mobilenet_v3_small');
    try {
      expect(mapTimmVisionKeys('mobilenetv3', state.keys()).unmatched).toEqual(['blocks.0.0.conv_extra.weight']);
      expect(() => loadTimmVisionCheckpoint(model, state)).toThrow(StateDictError);
      expect(() => loadTimmVisionCheckpoint(model, state)).toThrow(/unexpected keys \(1\): blocks\.0\.0\.conv_extra\.weight/);
    } finally {
      model.dispose();
    }
  });

  it('maps timm\'s names of the full-size networks to exactly torchvision\'s keys', () => {
    const full = fullSizeKeys();
    for (const [id, arch] of [
      ['efficientnet_b1', 'efficientnet'], ['efficientnet_b2', 'efficientnet'], ['efficientnet_b3', 'efficientnet'],
      ['efficientnet_b4', 'efficientnet'], ['mobilenet_v3_large', 'mobilenetv3'], ['mobilenet_v3_small', 'mobilenetv3'],
    ] as [string, TimmVisionArch][]) {
      const { keys, timm } = full[id]!;
      const map = mapTimmVisionKeys(arch, keys.map(([k]) => timm[k]!));
      expect(map.unmatched, id).toEqual([]);
      expect(Object.fromEntries([...map.keys].map(([tv, t]) => [tv, t])), id).toEqual(timm);
    }
  });

  it('rejects an unknown architecture', () => {
    expect(() => mapTimmVisionKeys('resnet' as TimmVisionArch, [])).toThrow(/arch must be 'efficientnet' or 'mobilenetv3', got "resnet"/);
  });
});
