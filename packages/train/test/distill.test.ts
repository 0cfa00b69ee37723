/** Hinton's distillation loss against PyTorch's KLDivLoss(reduction='batchmean') · T² blended
 * with cross-entropy (scripts/adapt_fixtures.py), the teacher frozen in eval mode, and its
 * outputs cached by sample index. */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { Dropout, Module, parseSafetensors } from '@tl/models';
import { distill, type Batch, type ObjectiveContext } from '../src/index.js';
import { expectClose, setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

const f = parseSafetensors(readFileSync(new URL('./fixtures/distill.safetensors', import.meta.url)));
const want = (key: string) => ({ shape: f.get(key).shape, data: Float64Array.from(f.get(key).data) });
const gpu = (key: string): Tensor => A.tensor(f.get(key).data as Float32Array | Int32Array, { shape: f.get(key).shape, dtype: f.get(key).dtype });

/** Gives fixed logits for the rows of a batch, whose x holds the rows' indices; counts its calls
 * and has dropout, so a teacher left in training mode would give other numbers. */
class FixedTeacher extends Module {
  calls = 0;
  readonly drop = this.module('drop', new Dropout(0.5));
  constructor(private readonly logits: Tensor) {
    super();
  }
  forward(x: Tensor): Tensor {
    this.calls++;
    return this.drop.forward(A.indexSelect(this.logits, 0, A.cast(x.reshape([x.shape[0]!]), 'int32')));
  }
}

const labels = f.get('y').data as Int32Array;

function batchOf(rows: number[]): Batch {
  const x = A.tensor(Float32Array.from(rows), { shape: [rows.length, 1] });
  const yb = A.tensor(Int32Array.from(rows, (i) => labels[i]!), { shape: [rows.length], dtype: 'int32' });
  return { x, y: yb, targets: null, mask: null, tokenTypeIds: null, indices: rows, size: rows.length, dispose: () => [x, yb].forEach((t) => t.dispose()) };
}

describe('distill', () => {
  it("equals PyTorch's KLDivLoss(batchmean) · T² blend with cross-entropy, value and gradient", async () => {
    const cases = JSON.parse(f.metadata.cases!) as { temperature: number; alpha: number }[];
    for (const [k, c] of cases.entries()) {
      const student = gpu('student');
      student.requiresGrad = true;
      const teacher = new FixedTeacher(gpu('teacher')).train();
      const objective = distill({ teacher, ...c });
      const ctx: ObjectiveContext = { model: new FixedTeacher(gpu('student')), cached: false, forward: () => student, log: () => {} };
      const rows = [0, 1, 2, 3, 4, 5];
      const step = objective.trainStep(ctx, batchOf(rows));
      await expectClose(step.loss.reshape([1]), want(`loss${k}`), 1e-5, 1e-6);
      A.backward(step.loss);
      await expectClose(student.grad!, want(`grad${k}`), 1e-4, 1e-6);
      expect(teacher.training).toBe(false);
      expect(teacher.namedParameters().every(([, p]) => !p.requiresGrad)).toBe(true);
    }
  });

  it('with cache, runs the teacher once per sample and gives the same loss from the cache', async () => {
    const teacher = new FixedTeacher(gpu('teacher'));
    const objective = distill({ teacher, temperature: 3, alpha: 0.7, cache: true });
    const student = gpu('student');
    const ctx: ObjectiveContext = { model: new FixedTeacher(gpu('student')), cached: false, forward: (b) => A.indexSelect(student, 0, A.cast(b.x.reshape([b.size]), 'int32')), log: () => {} };
    const losses: number[] = [];
    for (const rows of [[4, 1, 0], [2, 5, 3], [3, 0, 1], [5, 2, 4]]) {
      const step = objective.trainStep(ctx, batchOf(rows));
      losses.push((await step.loss.data())[0]!);
    }
    expect(teacher.calls).toBe(2);
    const fresh = distill({ teacher: new FixedTeacher(gpu('teacher')), temperature: 3, alpha: 0.7 });
    for (const [k, rows] of [[3, 0, 1], [5, 2, 4]].entries()) {
      const step = fresh.trainStep(ctx, batchOf(rows));
      expect(losses[2 + k]).toBeCloseTo((await step.loss.data())[0]!, 6);
    }
    objective.dispose();
  });

  it('refuses a temperature or alpha out of range', () => {
    const teacher = new FixedTeacher(gpu('teacher'));
    expect(() => distill({ teacher, temperature: 0 })).toThrow('distill: temperature must be a finite number > 0, got 0');
    expect(() => distill({ teacher, alpha: 1.5 })).toThrow('distill: alpha must be in [0, 1], got 1.5');
  });
});
