/** `tl models`: every registered architecture, as timm.list_models does, from the registry. */
import { isImageModelSpec, isTextModelSpec, listModels, type ModelSpec } from '@tl/models';
import { CliError } from '../errors.js';
import { table } from '../progress.js';

export interface ModelRow {
  id: string;
  task: string;
  /** Side of the square image input; text models: null (their limit is the checkpoint's). */
  inputSize: number | null;
  channels: number | null;
  parameters: number;
  numClasses: number;
  checkpoints: string[];
  labels: string[] | null;
  description: string;
}

function parameters(spec: ModelSpec): number {
  if (spec.parameters !== undefined) return spec.parameters;
  // A model registered without its count (a user's registerModel): build it once.
  const m = spec.create();
  const n = m.numParameters();
  m.dispose();
  return n;
}

export function modelRows(task?: string): ModelRow[] {
  const tasks = [...new Set(listModels().map((s) => s.task))];
  if (task !== undefined && !tasks.includes(task)) throw new CliError(`tl models: --task ${task} is not one of ${tasks.join(', ')}`, 2);
  return listModels(task).map((s) => ({
    id: s.id,
    task: s.task,
    inputSize: isImageModelSpec(s) ? s.inputSize : null,
    channels: isImageModelSpec(s) ? (s.channels ?? 3) : null,
    parameters: parameters(s),
    numClasses: s.numClasses,
    checkpoints: [...(s.checkpoints ?? (isTextModelSpec(s) ? ['transformers'] : []))],
    labels: s.labels ? [...s.labels] : null,
    description: s.description,
  }));
}

/** Builds a model only when one lacks a recorded count, so the GPU starts only then. */
export function needsEngine(task?: string): boolean {
  return listModels(task).some((s) => s.parameters === undefined);
}

const millions = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : `${(n / 1e3).toFixed(0)}k`);

export function modelsCommand(task: string | undefined, json: boolean): void {
  const rows = modelRows(task);
  if (json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${table(['id', 'task', 'input', 'params', 'classes', 'loads checkpoints of', 'description'], rows.map((r) => [
    r.id, r.task, r.inputSize === null ? 'tokens' : `${r.channels}x${r.inputSize}x${r.inputSize}`, millions(r.parameters),
    r.labels ? `${r.numClasses} (named)` : String(r.numClasses), r.checkpoints.join(', '), r.description,
  ]))}\n`);
}
