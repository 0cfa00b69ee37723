/**
 * Every function of @tl/tensor either has a differentiable counterpart of the same name in
 * @tl/autograd or is listed, with its reason, in NON_DIFFERENTIABLE: a tensor op added without
 * a gradient rule fails here instead of silently training nothing. The ops that list once
 * missed (flip, repeat, tril, triu) are gradient-checked.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as T from '@tl/tensor';
import * as A from '../src/index.js';
import { randHost, setup } from '../../tensor/test/helpers.js';
import { gradcheck } from './gradcheck.js';

beforeAll(setup);

const functions = (m: Record<string, unknown>): string[] => Object.keys(m).filter((k) => typeof m[k] === 'function' && !/^[A-Z]/.test(k));

describe('the autograd export list', () => {
  it('has a gradient rule for every tensor op that is not listed as non-differentiable, and lists no differentiable one', () => {
    const listed = new Map(Object.entries(A.NON_DIFFERENTIABLE).flatMap(([why, names]) => names.map((n) => [n, why] as const)));
    const tensor = T as unknown as Record<string, unknown>;
    const autograd = A as unknown as Record<string, unknown>;
    const unruled = functions(tensor).filter((k) => autograd[k] === tensor[k] && !listed.has(k) && !A.CPU_REFERENCE.test(k));
    expect(unruled).toEqual([]);
    const ruledYetListed = [...listed.keys()].filter((k) => autograd[k] !== tensor[k]);
    expect(ruledYetListed).toEqual([]);
    expect([...listed.keys()].filter((k) => !(k in tensor))).toEqual([]);
  });
});

describe('flip, repeat, tril, triu gradients', () => {
  const x = randHost([3, 4, 5], 11);
  it('flip', () => gradcheck({ inputs: [x], gpu: ([t]) => A.flip(t!, [0, 2]), cpu: ([h]) => T.cpuFlip(h!, [0, 2]) }));
  it('repeat, with a leading count', () => gradcheck({ inputs: [x], gpu: ([t]) => A.repeat(t!, 2, 1, 3, 2), cpu: ([h]) => T.cpuRepeat(h!, [2, 1, 3, 2]) }));
  it('tril and triu', async () => {
    await gradcheck({ inputs: [x], gpu: ([t]) => A.tril(t!, 1), cpu: ([h]) => T.cpuTril(h!, 1) });
    await gradcheck({ inputs: [x], gpu: ([t]) => A.triu(t!, -1), cpu: ([h]) => T.cpuTriu(h!, -1) });
  });
});
