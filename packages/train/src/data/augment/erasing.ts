/**
 * Random erasing (Zhong et al. 2017, torchvision's RandomErasing): with probability p, a
 * rectangle of random area and aspect ratio is set to a value. It runs on the normalised
 * input, so the default value 0 is the data set's mean colour.
 */
import type { Rng } from '@tl/tensor';
import { roundHalfEven, type CropBox } from './geometry.js';

export interface RandomErasingOptions {
  /** Probability of erasing (torchvision's default 0.5). */
  p?: number;
  /** Area fraction range of the rectangle. */
  scale?: readonly [number, number];
  /** Aspect ratio (height / width) range. */
  ratio?: readonly [number, number];
  /** What the rectangle is set to, per channel or one for all; 'random': standard normal noise. */
  value?: number | readonly number[] | 'random';
}

export function checkRandomErasing(o: RandomErasingOptions): void {
  const p = o.p ?? 0.5;
  if (!(p >= 0 && p <= 1)) throw new RangeError(`randomErasing: p must be a probability in [0, 1], got ${p}`);
  const [s0, s1] = o.scale ?? [0.02, 0.33];
  if (!(s0 >= 0 && s0 <= s1 && s1 <= 1)) throw new RangeError(`randomErasing: scale must be [min, max] in [0, 1] with min <= max, got [${o.scale}]`);
  const [r0, r1] = o.ratio ?? [0.3, 3.3];
  if (!(r0 > 0 && r0 <= r1)) throw new RangeError(`randomErasing: ratio must be [min, max] with 0 < min <= max, got [${o.ratio}]`);
}

/** Sets `box` of a CHW array to `value` in place (torchvision's F.erase). */
export function erase(data: Float32Array, shape: readonly [number, number, number], box: CropBox, value: number | readonly number[] | ((c: number) => number)): Float32Array {
  const [C, H, W] = shape;
  for (let c = 0; c < C; c++) {
    const v = typeof value === 'function' ? null : typeof value === 'number' ? value : value[c] ?? value[0]!;
    for (let y = box.top; y < Math.min(box.top + box.height, H); y++) {
      for (let x = box.left; x < Math.min(box.left + box.width, W); x++) data[(c * H + y) * W + x] = v ?? (value as (c: number) => number)(c);
    }
  }
  return data;
}

/** torchvision's RandomErasing.get_params: ten tries at a rectangle strictly inside the image;
 * null when none fits (the image is left as it is). */
export function randomErasingParams(height: number, width: number, rng: Rng, scale: readonly [number, number] = [0.02, 0.33], ratio: readonly [number, number] = [0.3, 3.3]): CropBox | null {
  const area = height * width;
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(Math.log(ratio[0]), Math.log(ratio[1])));
    const h = roundHalfEven(Math.sqrt(target * aspect));
    const w = roundHalfEven(Math.sqrt(target / aspect));
    if (!(h < height && w < width)) continue;
    return { top: rng.int(height - h + 1), left: rng.int(width - w + 1), height: h, width: w };
  }
  return null;
}

/** A standard normal draw (Box-Muller) from the seeded generator. */
export function sampleNormal(rng: Rng): number {
  const u = 1 - rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

/** Random erasing of a normalised CHW array, in place. */
export function randomErasing(data: Float32Array, shape: readonly [number, number, number], rng: Rng, o: RandomErasingOptions = {}): Float32Array {
  checkRandomErasing(o);
  if (rng.next() >= (o.p ?? 0.5)) return data;
  const box = randomErasingParams(shape[1], shape[2], rng, o.scale, o.ratio);
  if (!box) return data;
  const value = o.value ?? 0;
  return erase(data, shape, box, value === 'random' ? () => sampleNormal(rng) : value);
}
