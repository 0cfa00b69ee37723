/** Gradients of views and dtype conversions: Tensor's view methods and `to()` call these
 * hooks when their source requires grad. */
import * as T from '@tl/tensor';
import { registerCastHook, registerViewHook, type Shape, type Tensor, type ViewKind } from '@tl/tensor';
import { isGradEnabled, record } from '../graph.js';
import { sumToShape } from './reduce.js';

function viewBackward(view: ViewKind, srcShape: Shape, g: Tensor): Tensor {
  switch (view.kind) {
    case 'reshape':
      return g.reshape(srcShape);
    case 'permute': {
      const inv = new Array<number>(view.dims.length);
      view.dims.forEach((d, i) => (inv[d] = i));
      return g.permute(inv);
    }
    case 'index': {
      const z = T.zeros(srcShape);
      const target = view.reapply(z);
      T.assign(target, g);
      target.dispose();
      return z;
    }
    case 'expand':
      return sumToShape(g, srcShape);
  }
}

registerViewHook((src, out, view) => {
  if (!isGradEnabled()) return;
  const shape = [...src.shape];
  record(view.kind === 'index' ? 'slice' : view.kind, out, [src], (g) => [viewBackward(view, shape, g)]);
});

registerCastHook((src, out) => {
  if (!isGradEnabled()) return;
  const dtype = src.dtype;
  record('to', out, [src], (g) => [T.cast(g, dtype)]);
});
