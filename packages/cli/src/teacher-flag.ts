/**
 * `tl train --teacher <run folder|weights> [--teacher-model id] --temperature 4 --alpha 0.5`:
 * the student (--model) learns from a trained teacher's softened outputs beside the labels
 * (Hinton's distillation, @tl/train's distill objective).
 */
import { existsSync, statSync } from 'node:fs';
import { ClassifierModel, fromPretrained, getModelSpec, isImageModelSpec, listModels, StateDictError } from '@tl/models';
import { distill, type DistillObjective } from '@tl/train';
import { CliError, nearest } from './errors.js';
import { checkWeightsRef, describeMismatch, localWeights } from './weights.js';
import { readRun } from './commands/eval.js';

export interface TeacherFlags {
  model: string;
  teacher?: string;
  teacherModel?: string;
  temperature?: number;
  alpha?: number;
  labelSmoothing?: number;
}

const isRunDir = (p: string): boolean => existsSync(p) && statSync(p).isDirectory();

/** What can be checked before the GPU starts: the numbers, the teacher's model id and weights. */
export async function checkTeacherFlags(c: TeacherFlags): Promise<void> {
  if (!c.teacher) {
    const stray = (['teacherModel', 'temperature', 'alpha'] as const).find((k) => c[k] !== undefined);
    if (stray) throw new CliError(`--${stray.replace(/[A-Z]/g, (ch) => `-${ch.toLowerCase()}`)} is for distillation; give --teacher <run folder|weights file> too`, 2);
    return;
  }
  if (c.temperature !== undefined && !(typeof c.temperature === 'number' && c.temperature > 0 && Number.isFinite(c.temperature))) {
    throw new CliError(`--temperature must be a positive number, got ${JSON.stringify(c.temperature)}`, 2);
  }
  if (c.alpha !== undefined && !(typeof c.alpha === 'number' && c.alpha >= 0 && c.alpha <= 1)) throw new CliError(`--alpha must be a weight in [0, 1], got ${JSON.stringify(c.alpha)}`, 2);
  if (isRunDir(c.teacher)) {
    if (c.teacherModel) throw new CliError(`--teacher-model is for a weights file; the run folder ${c.teacher} names its model`, 2);
    await readRun(c.teacher);
    return;
  }
  const id = c.teacherModel ?? c.model;
  const known = listModels('image').map((m) => m.id);
  if (!known.includes(id)) {
    const near = nearest(id, known);
    throw new CliError(`--teacher-model ${id} is not a known image model${near ? ` (did you mean ${near}?)` : ''}; \`tl models --task image\` lists them`, 2);
  }
  await checkWeightsRef(c.teacher, '--teacher');
}

/** The teacher, loaded and checked to have the student's classes, inside the objective. */
/** What results.json records of a distilled run. */
export interface DistillationRecord {
  teacher: string;
  teacherModel: string;
  temperature: number;
  alpha: number;
  /** Whether the teacher's outputs were kept per image (no random augmentation). */
  cached: boolean;
}

export async function teacherObjective(c: TeacherFlags, numClasses: number, imageSize: number | undefined, cache: boolean): Promise<{ objective: DistillObjective; description: string; record: DistillationRecord }> {
  const run = isRunDir(c.teacher!) ? await readRun(c.teacher!) : null;
  const id = run ? run.config.model : (c.teacherModel ?? c.model);
  if (!isImageModelSpec(getModelSpec(id))) throw new CliError(`--teacher: ${id} is not an image model`, 2);
  const path = run ? run.weights : await localWeights(c.teacher!, '--teacher');
  let teacher;
  try {
    teacher = await fromPretrained(id, { weights: path, imgSize: run?.config.imageSize ?? imageSize });
  } catch (e) {
    if (e instanceof StateDictError) throw await describeMismatch(e, id, c.teacher!, path);
    throw e;
  }
  if (!(teacher instanceof ClassifierModel)) throw new CliError(`--teacher: ${id} has no classification head`, 2);
  if (teacher.numClasses !== numClasses) {
    throw new CliError(`--teacher ${c.teacher} has ${teacher.numClasses} outputs but the student has ${numClasses} classes; distillation needs the same classes in the same order`, 2);
  }
  const objective = distill({ teacher, temperature: c.temperature ?? 4, alpha: c.alpha ?? 0.5, cache, labelSmoothing: c.labelSmoothing });
  const description = `distilling from ${id} (${c.teacher}, ${teacher.numParameters().toLocaleString('en')} parameters): temperature ${objective.temperature}, alpha ${objective.alpha}${cache ? ', its outputs cached per image' : ''}`;
  return { objective, description, record: { teacher: c.teacher!, teacherModel: id, temperature: objective.temperature, alpha: objective.alpha, cached: cache } };
}
