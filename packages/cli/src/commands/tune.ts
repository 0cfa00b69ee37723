/**
 * `tl tune`: measures the matmul kernel variants and the 3x3 convolution algorithms on this
 * adapter for the shapes a model's training step uses (or a list of products) and stores the
 * fastest per shape class, so a later run starts with them (torch.backends.cudnn.benchmark,
 * done ahead of time).
 */
import * as A from '@tl/autograd';
import { getModelSpec, isImageModelSpec } from '@tl/models';
import { startEngine } from '../engine.js';
import { CliError } from '../errors.js';
import { table } from '../progress.js';

export interface TuneOptions {
  model?: string;
  batchSize?: number;
  imageSize?: number;
  /** "MxKxN" products, comma-separated. */
  shapes?: string;
  json: boolean;
}

export interface TuneRow {
  shapeClass: string;
  variant: string;
  /** Median milliseconds per variant; null for a choice stored by an earlier run. */
  ms: Record<string, number> | null;
}

/** "128x256x64,1x512x10" as [M, K, N] triples, naming the first bad entry. */
export function parseShapes(s: string): [number, number, number][] {
  return s.split(',').map((part) => {
    const dims = part.trim().split('x').map(Number);
    if (dims.length !== 3 || !dims.every((d) => Number.isInteger(d) && d >= 1)) {
      throw new CliError(`--shapes: "${part.trim()}" is not MxKxN with three positive integers (e.g. 128x256x64)`, 2);
    }
    return dims as [number, number, number];
  });
}

function checkOptions(o: TuneOptions): void {
  if (o.model === undefined && o.shapes === undefined) throw new CliError('tl tune: give --model <id> or --shapes MxKxN[,...] (tl tune --help)', 2);
  for (const [flag, v] of [['--batch-size', o.batchSize], ['--image-size', o.imageSize]] as const) {
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new CliError(`${flag} must be a positive integer, got ${v}`, 2);
  }
  if (o.model !== undefined) {
    let spec;
    try {
      spec = getModelSpec(o.model);
    } catch (e) {
      throw new CliError(`--model: ${(e as Error).message}`, 2);
    }
    if (!isImageModelSpec(spec)) throw new CliError(`tl tune --model takes an image model; ${o.model} is a ${spec.task} model (use --shapes for its products)`, 2);
  } else if (o.imageSize !== undefined || o.batchSize !== undefined) {
    throw new CliError('--batch-size and --image-size describe the input of --model; give --model too', 2);
  }
}

/** Records one forward and backward step of the model on random input (queuing its
 * matmuls and 3x3 convolutions), then runs `measure` before anything waits on the GPU: a wait would run the
 * queued measurements itself, out of the report's sight. */
async function modelStep(id: string, batch: number, imageSize: number | undefined, measure: () => Promise<void>): Promise<void> {
  const spec = getModelSpec(id);
  if (!isImageModelSpec(spec)) return;
  const size = imageSize ?? spec.inputSize;
  const model = spec.create({ imgSize: size });
  try {
    await A.tidyAsync(async () => {
      const x = A.randn([batch, spec.channels ?? 3, size, size]);
      A.backward(A.sum(model.forward(x)));
      await measure();
    });
  } finally {
    model.dispose();
  }
}

/** Checks the flags, starts the engine, tunes, prints the table (or JSON) and returns its rows. */
export async function tuneCommand(o: TuneOptions): Promise<TuneRow[]> {
  checkOptions(o);
  const shapes = o.shapes === undefined ? [] : parseShapes(o.shapes);
  await startEngine();
  const e = A.engine();
  const before = new Set(A.tuneChoices(e).seen);
  A.setAutotune(true);
  // Measured explicitly below, so the report gets the timings.
  const measured = new Map<string, A.TuneResult>();
  const collect = async (): Promise<void> => {
    for (const r of await A.tunePending(e)) measured.set(r.shapeClass, r);
  };
  try {
    if (o.model !== undefined) {
      // A convolution newly tuned to Winograd runs matmuls the first step did not: steps
      // are recorded again until one meets no new class.
      for (let pass = 0; pass < 3; pass++) {
        const known = measured.size;
        await modelStep(o.model, o.batchSize ?? 8, o.imageSize, collect);
        if (measured.size === known) break;
      }
    }
    for (const [m, k, n] of shapes) {
      A.tidy(() => {
        A.matmul(A.rand([m, k]), A.rand([k, n]));
      });
      await collect();
    }
  } finally {
    A.setAutotune(null);
  }
  const { entries, seen } = A.tuneChoices(e);
  const rows: TuneRow[] = seen.filter((c) => !before.has(c)).map((c) => {
    const r = measured.get(c);
    return { shapeClass: c, variant: r?.variant ?? entries[c]?.variant ?? 'default', ms: r?.ms ?? null };
  });
  const where = A.tuneStoreLocation() ?? 'memory only (no store registered)';
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ adapter: A.tuneChoices(e).adapter, store: where, rows }, null, 2)}\n`);
    return rows;
  }
  process.stdout.write(`adapter: ${e.adapterDescription}\n`);
  process.stdout.write(`${table(['shape class', 'choice', 'median ms per candidate'], rows.map((r) => [
    r.shapeClass, r.variant, r.ms ? Object.entries(r.ms).map(([v, ms]) => `${v} ${ms.toFixed(3)}`).join(', ') : 'stored',
  ]))}\n`);
  process.stdout.write(`${rows.filter((r) => r.ms).length} shape classes measured, ${rows.filter((r) => !r.ms).length} already stored; choices in ${where}\n`);
  return rows;
}
