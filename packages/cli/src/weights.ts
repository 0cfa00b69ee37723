/**
 * A weights reference checked before a model is built: the file exists, is no folder and no
 * PyTorch pickle, and its safetensors header reads; a checkpoint of another architecture is
 * named by its first mismatched key and shape.
 */
import { existsSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { getModelSpec, parseWeightRef, resolveWeights, SafetensorsFileReader, StateDictError } from '@tl/models';
import { CliError } from './errors.js';

/** The zip container of `torch.save` (since PyTorch 1.6) and the protocol byte of a bare pickle. */
function isPickle(head: Uint8Array): boolean {
  const zip = head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
  const pickle = head[0] === 0x80 && head[1]! >= 2 && head[1]! <= 5;
  return zip || pickle;
}

/** A local weights file that a reader can open, checked cheaply: refuses folders, pickles and broken headers. */
export async function checkWeightsFile(path: string, flag: string): Promise<void> {
  if (!existsSync(path)) throw new CliError(`${flag} ${path} does not exist; expected a .safetensors file or hf:org/name`, 2);
  if (statSync(path).isDirectory()) throw new CliError(`${flag} ${path} is a folder; expected a .safetensors file`, 2);
  const fd = await open(path, 'r');
  const head = new Uint8Array(8);
  try {
    await fd.read(head, 0, 8, 0);
  } finally {
    await fd.close();
  }
  if (isPickle(head)) {
    throw new CliError(`${flag} ${path} is a PyTorch pickle (torch.save), which tl does not load (unpickling runs code); convert it with python -c "import torch, safetensors.torch; safetensors.torch.save_file(torch.load('${path}', map_location='cpu'), 'model.safetensors')"`, 2);
  }
  const r = await SafetensorsFileReader.open(path).catch((e: Error) => {
    throw new CliError(`${flag} ${path} is not a safetensors file: ${e.message.replace(`${path}: `, '')}`, 2);
  });
  await r.close();
}

/** Checks what can be checked without a download (a path); a Hub reference's form only. */
export async function checkWeightsRef(ref: string, flag: string): Promise<void> {
  let r;
  try {
    r = parseWeightRef(ref);
  } catch (e) {
    throw new CliError(`${flag}: ${(e as Error).message}`, 2);
  }
  if (r.kind === 'path') await checkWeightsFile(r.path, flag);
}

/** The local file of a weights reference (downloaded when it is a URL or on the Hub), checked. */
export async function localWeights(ref: string, flag: string): Promise<string> {
  await checkWeightsRef(ref, flag);
  const path = await resolveWeights(ref);
  await checkWeightsFile(path, flag);
  return path;
}

const shape = (s: readonly number[] | undefined): string => (s ? `[${s.join(', ')}]` : '?');

/** One line for a checkpoint that does not fit `id`: its first mismatched key and shape, then the counts. */
export async function describeMismatch(e: StateDictError, id: string, weights: string, path: string): Promise<CliError> {
  const counts = `${e.mismatched.length} mismatched, ${e.missing.length} missing, ${e.unexpected.length} unexpected keys`;
  let first: string;
  if (e.mismatched.length) {
    const m = e.mismatched[0]!;
    first = `${m.key} is ${shape(m.got)} in the checkpoint, ${id} expects ${shape(m.expected)}`;
  } else if (e.missing.length) {
    const model = getModelSpec(id).create();
    const want = model.stateDict().get(e.missing[0]!)?.shape;
    model.dispose();
    first = `${id} expects ${e.missing[0]} ${shape(want)}, which the checkpoint lacks`;
  } else {
    const r = await SafetensorsFileReader.open(path);
    const got = r.keys().includes(e.unexpected[0]!) ? r.info(e.unexpected[0]!).shape : undefined;
    await r.close();
    first = `the checkpoint has ${e.unexpected[0]} ${shape(got)}, which ${id} does not`;
  }
  return new CliError(`--weights ${weights} do not fit ${id}: ${first} (${counts}); \`tl inspect ${weights}\` shows which architecture it is`, 2);
}
