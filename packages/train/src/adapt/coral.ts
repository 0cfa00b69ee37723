/**
 * Deep CORAL (Sun & Saenko 2016): the distance between the second-order statistics of source
 * and target features, ‖C_s − C_t‖²_F / (4 d²), with C the unbiased covariance of a batch of
 * d-dimensional features. Added to the task loss it aligns the domains without target labels.
 */
import * as A from '@tl/autograd';
import type { Tensor } from '@tl/autograd';
import { TrainingError } from '../errors.js';

function covariance(m: Tensor): Tensor {
  const centred = A.sub(m, A.mean(m, 0, { keepdim: true }));
  return A.mul(A.matmul(centred.transpose(0, 1), centred), 1 / (m.shape[0]! - 1));
}

/** CORAL's loss between source [n_s, d] and target [n_t, d] features (n_s, n_t >= 2). */
export function coralLoss(source: Tensor, target: Tensor): Tensor {
  if (source.rank !== 2 || target.rank !== 2 || source.shape[1] !== target.shape[1]) {
    throw new TrainingError(`coralLoss compares features [batch, d] of the same d: got source [${source.shape.join(', ')}] and target [${target.shape.join(', ')}]`);
  }
  if (source.shape[0]! < 2 || target.shape[0]! < 2) {
    throw new TrainingError(`coralLoss needs at least 2 rows per domain for a covariance: got ${source.shape[0]} source and ${target.shape[0]} target rows`);
  }
  const d = source.shape[1]!;
  return A.mul(A.sum(A.square(A.sub(covariance(source), covariance(target)))), 1 / (4 * d * d));
}
