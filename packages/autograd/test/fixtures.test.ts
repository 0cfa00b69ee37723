/** Golden fixtures written by fixtures/make_fixtures.py with PyTorch 1.13. */
import { beforeAll, describe, expect, it } from 'vitest';
import * as A from '../src/index.js';
import type { Tensor } from '../src/index.js';
import { expectClose, setup } from '../../tensor/test/helpers.js';
import { gpu, loadFixture as load, want } from './fixture-io.js';

beforeAll(setup);

const RTOL = 1e-4;

describe('PyTorch golden fixtures', () => {
  for (const name of ['basic', 'stride2_pad1', 'dilation2', 'groups2', 'depthwise', 'stem7x7', 'pointwise']) {
    it(`conv2d ${name}: output and the gradients of input, weight and bias`, async () => {
      const f = load(`conv2d_${name}`);
      const c = JSON.parse(f.metadata.config!);
      const [x, w, b] = [gpu(f, 'x', true), gpu(f, 'w', true), gpu(f, 'b', true)];
      const y = A.conv2d(x, w, { bias: b, stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups });
      await expectClose(y, want(f, 'y'), RTOL, 1e-5);
      A.backward(y, gpu(f, 'gy'));
      await expectClose(x.grad!, want(f, 'grad.x'), RTOL, 1e-5);
      await expectClose(w.grad!, want(f, 'grad.w'), RTOL, 1e-4);
      await expectClose(b.grad!, want(f, 'grad.b'), RTOL, 1e-4);
    });
  }

  for (const algorithm of ['winograd2x2', 'winograd4x4'] as const) {
    it(`conv2d basic through ${algorithm}: output and the gradients of input, weight and bias`, async () => {
      const f = load('conv2d_basic');
      A.forceConvAlgorithm(algorithm);
      try {
        const [x, w, b] = [gpu(f, 'x', true), gpu(f, 'w', true), gpu(f, 'b', true)];
        const y = A.conv2d(x, w, { bias: b });
        await expectClose(y, want(f, 'y'), RTOL, 1e-5);
        A.backward(y, gpu(f, 'gy'));
        await expectClose(x.grad!, want(f, 'grad.x'), RTOL, 1e-5);
        await expectClose(w.grad!, want(f, 'grad.w'), RTOL, 1e-4);
      } finally {
        A.forceConvAlgorithm(null);
      }
    });
  }

  it('batch norm in training: output, running statistics and gradients', async () => {
    const f = load('batchnorm_train');
    const [x, w, b] = [gpu(f, 'x', true), gpu(f, 'w', true), gpu(f, 'b', true)];
    const [rm, rv] = [gpu(f, 'running_mean'), gpu(f, 'running_var')];
    const y = A.batchNorm(x, rm, rv, w, b, { training: true, momentum: 0.1, eps: 1e-5 });
    await expectClose(y, want(f, 'y'), RTOL, 1e-5);
    await expectClose(rm, want(f, 'running_mean_after'), RTOL, 1e-6);
    await expectClose(rv, want(f, 'running_var_after'), RTOL, 1e-6);
    A.backward(y, gpu(f, 'gy'));
    await expectClose(x.grad!, want(f, 'grad.x'), RTOL, 1e-5);
    await expectClose(w.grad!, want(f, 'grad.w'), RTOL, 1e-5);
    await expectClose(b.grad!, want(f, 'grad.b'), RTOL, 1e-5);
  });

  it('batch norm in eval: output and gradients', async () => {
    const f = load('batchnorm_eval');
    const [x, w, b] = [gpu(f, 'x', true), gpu(f, 'w', true), gpu(f, 'b', true)];
    const y = A.batchNorm(x, gpu(f, 'running_mean'), gpu(f, 'running_var'), w, b, { training: false, eps: 1e-5 });
    await expectClose(y, want(f, 'y'), RTOL, 1e-5);
    A.backward(y, gpu(f, 'gy'));
    await expectClose(x.grad!, want(f, 'grad.x'), RTOL, 1e-5);
    await expectClose(w.grad!, want(f, 'grad.w'), RTOL, 1e-5);
    await expectClose(b.grad!, want(f, 'grad.b'), RTOL, 1e-5);
  });

  it('layer norm: output and gradients', async () => {
    const f = load('layernorm');
    const [x, w, b] = [gpu(f, 'x', true), gpu(f, 'w', true), gpu(f, 'b', true)];
    const y = A.layerNorm(x, [33], w, b, 1e-5);
    await expectClose(y, want(f, 'y'), RTOL, 1e-5);
    A.backward(y, gpu(f, 'gy'));
    await expectClose(x.grad!, want(f, 'grad.x'), RTOL, 1e-5);
    await expectClose(w.grad!, want(f, 'grad.w'), RTOL, 1e-5);
    await expectClose(b.grad!, want(f, 'grad.b'), RTOL, 1e-5);
  });

  it('max pool 3x3 stride 2 pad 1: output and gradient', async () => {
    const f = load('maxpool');
    const x = gpu(f, 'x', true);
    const y = A.maxPool2d(x, { kernelSize: 3, stride: 2, padding: 1 });
    await expectClose(y, want(f, 'y'), 0, 0);
    A.backward(y, gpu(f, 'gy'));
    await expectClose(x.grad!, want(f, 'grad.x'), RTOL, 1e-6);
  });

  it('a 3-layer CNN (conv-bn-relu x3, pool, linear): loss, logits, every parameter gradient, running stats', async () => {
    const f = load('cnn3');
    const p = (k: string): Tensor => gpu(f, `param.${k}`, !k.includes('running') && !k.includes('num_batches'));
    let x = gpu(f, 'input');
    const params: Record<string, Tensor> = {};
    for (let i = 0; i < 3; i++) {
      for (const k of [`conv${i}.weight`, `bn${i}.weight`, `bn${i}.bias`, `bn${i}.running_mean`, `bn${i}.running_var`]) params[k] = p(k);
      x = A.conv2d(x, params[`conv${i}.weight`]!, { stride: i === 0 ? 1 : 2, padding: 1 });
      x = A.relu(A.batchNorm(x, params[`bn${i}.running_mean`]!, params[`bn${i}.running_var`]!, params[`bn${i}.weight`], params[`bn${i}.bias`], { training: true }));
    }
    params['fc.weight'] = p('fc.weight');
    params['fc.bias'] = p('fc.bias');
    const feats = A.adaptiveAvgPool2d(x, 1).flatten(1);
    const logits = A.linear(feats, params['fc.weight']!, params['fc.bias']);
    await expectClose(logits, want(f, 'logits'), RTOL, 1e-5);
    const loss = A.crossEntropy(logits, gpu(f, 'labels'));
    expect(await loss.item()).toBeCloseTo(f.get('loss').data[0]!, 5);
    A.backward(loss);
    for (const [k, t] of Object.entries(params)) {
      if (t.requiresGrad) await expectClose(t.grad!, want(f, `grad.${k}`), 5e-4, 1e-5);
      else await expectClose(t, want(f, `after.${k}`), RTOL, 1e-6);
    }
  });
});
