/**
 * Class imbalance: weights for the loss (scikit-learn's `class_weight='balanced'`) and
 * per-sample weights for a sampler that draws every class equally often.
 */

/** Class-index labels counted per class (`numClasses` entries). */
export function classCounts(labels: readonly unknown[], numClasses?: number): number[] {
  const ints = labels.map((l, i) => {
    if (typeof l !== 'number' || !Number.isInteger(l) || l < 0) {
      throw new TypeError(`class balancing needs class-index labels; sample ${i} has ${l instanceof Float32Array || l instanceof Int32Array ? 'a vector' : JSON.stringify(l)}`);
    }
    return l;
  });
  const K = numClasses ?? Math.max(-1, ...ints) + 1;
  const counts = new Array<number>(K).fill(0);
  for (const l of ints) {
    if (l >= K) throw new RangeError(`label ${l} is outside the ${K} classes`);
    counts[l]!++;
  }
  return counts;
}

/**
 * scikit-learn's 'balanced' class weights, n_samples / (n_classes * count_c), for the
 * classification loss (`TrainerOptions.classWeights`): each class then weighs as much in the
 * loss as if the classes were equally frequent. n_classes counts the classes that occur; a
 * class with no samples gets weight 0 (its targets never occur, so it changes nothing).
 */
export function balancedClassWeights(labels: readonly unknown[], numClasses?: number): Float32Array {
  const counts = classCounts(labels, numClasses);
  const present = counts.filter((c) => c > 0).length;
  const n = labels.length;
  return Float32Array.from(counts, (c) => (c > 0 ? n / (present * c) : 0));
}

/** Per-sample weights that make each class equally likely: 1 / (count of its class). */
export function balancedSampleWeights(labels: readonly unknown[]): Float64Array {
  const counts = classCounts(labels);
  return Float64Array.from(labels as number[], (l) => 1 / counts[l]!);
}
