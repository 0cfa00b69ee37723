/**
 * `tl adapt`: AdaBN. A model's BatchNorm statistics re-estimated on a folder of unlabelled images
 * of the domain it will serve (another camera, lighting, compression), its weights untouched,
 * written as DIR/model.safetensors that `tl eval` and `tl predict` read with --weights (or --run,
 * when the model came from a run folder).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { adaBN, IMAGE_EXTENSIONS, ImageListDataset, TrainingError } from '@tl/train';
import { CliError } from '../errors.js';
import type { Progress } from '../progress.js';
import { checkOut, makeOut } from '../run-folder.js';
import { checkSource, scorer, type ModelSource } from './eval.js';

/** The images of a folder and of its sub-folders one level down (class folders, whose names are
 * not read), in a stable order. */
export function unlabelledImages(data: string): string[] {
  if (!existsSync(data)) throw new CliError(`--data ${data} does not exist`, 2);
  if (!statSync(data).isDirectory()) throw new CliError(`--data ${data} is a file; tl adapt takes a folder of unlabelled images (sub-folders are read too)`, 2);
  const images = (dir: string): string[] => readdirSync(dir).filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase())).sort().map((f) => join(dir, f));
  const subdirs = readdirSync(data, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort();
  const files = [...images(data), ...subdirs.flatMap((d) => images(join(data, d)))];
  if (files.length === 0) throw new CliError(`--data ${data} holds no images (${[...IMAGE_EXTENSIONS].join(', ')}) in it or in its sub-folders`, 2);
  return files;
}

export async function adaptCommand(s: ModelSource, data: string | undefined, out: string | undefined, overwrite: boolean, progress: Progress): Promise<void> {
  await checkSource(s, 'adapt');
  if (!data) throw new CliError('tl adapt: --data <folder of unlabelled target images> is required', 2);
  if (!out) throw new CliError('tl adapt: --out <folder> is required (model.safetensors is written there)', 2);
  const files = unlabelledImages(data);
  await checkOut(out, '--out', overwrite);
  const sc = await scorer(s);
  try {
    const pre = { imageSize: sc.imageSize, mean: sc.spec.mean, std: sc.spec.std, channels: sc.spec.channels ?? 3, cropPct: sc.spec.cropPct, interpolation: sc.spec.interpolation, augment: false as const };
    const ds = new ImageListDataset(files, files.map(() => 0), ['unlabelled'], pre, `${resolve(data)}:${statSync(data).mtimeMs}`);
    let r;
    try {
      r = await adaBN(sc.model, ds, { batchSize: sc.batchSize, onBatch: (done, total) => progress.line(`AdaBN: batch ${done} of ${total}`) });
    } catch (e) {
      if (e instanceof TrainingError && /has no BatchNorm layer/.test(e.message)) throw new CliError(`tl adapt: ${sc.id} has no BatchNorm layer, so AdaBN has no statistics to re-estimate; fine-tune it on labelled target data instead`, 2);
      throw e;
    }
    const dir = resolve(out);
    await makeOut(dir);
    await sc.model.save(join(dir, 'model.safetensors'), {
      model: sc.id, ...(sc.classes ? { classes: JSON.stringify(sc.classes) } : {}), adaptation: `AdaBN on ${files.length} images of ${resolve(data)}`,
    });
    // A run's config.json comes along, so `tl eval --run` and `tl predict --run` read the adapted folder too.
    if (sc.run) await copyFile(join(sc.run.dir, 'config.json'), join(dir, 'config.json'));
    progress.line(`AdaBN: re-estimated the statistics of ${r.layers.length} BatchNorm layers of ${sc.id} on ${r.samples} images of ${data} (${r.batches} batches of up to ${sc.batchSize}); wrote ${join(dir, 'model.safetensors')}`);
  } finally {
    sc.model.dispose();
  }
}
