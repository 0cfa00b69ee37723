/**
 * Geometric augmentations on float CHW images, with torchvision's semantics: flips, the affine
 * warps of TrivialAugment (rotate, shear, translate; nearest neighbour and zero fill, as
 * torchvision's tensor `affine` samples with grid_sample), and RandomResizedCrop's parameters
 * with its fallback.
 */
import type { Rng } from '@tl/tensor';
import type { Image } from '../transforms.js';
import { resample, type Interpolation } from '../resample.js';

/** The region of `height` x `width` pixels at (top, left), which must lie inside the image. */
export function crop(img: Image, top: number, left: number, height: number, width: number): Image {
  const { channels: C, height: H, width: W, data } = img;
  if (!(Number.isInteger(top) && Number.isInteger(left) && top >= 0 && left >= 0 && height >= 1 && width >= 1 && top + height <= H && left + width <= W)) {
    throw new RangeError(`crop: ${height}x${width} at (${top}, ${left}) is not inside the ${H}x${W} image`);
  }
  const out = new Float32Array(C * height * width);
  for (let c = 0; c < C; c++) for (let y = 0; y < height; y++) {
    const from = (c * H + top + y) * W + left;
    out.set(data.subarray(from, from + width), (c * height + y) * width);
  }
  return { data: out, channels: C, height, width };
}

export function horizontalFlip(img: Image): Image {
  const { channels: C, height: H, width: W, data } = img;
  const out = new Float32Array(data.length);
  for (let r = 0; r < C * H; r++) {
    const row = r * W;
    for (let x = 0; x < W; x++) out[row + x] = data[row + W - 1 - x]!;
  }
  return { ...img, data: out };
}

export function verticalFlip(img: Image): Image {
  const { channels: C, height: H, width: W, data } = img;
  const out = new Float32Array(data.length);
  for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) {
    out.set(data.subarray((c * H + H - 1 - y) * W, (c * H + H - y) * W), (c * H + y) * W);
  }
  return { ...img, data: out };
}

/** Python's round(): halves go to the even neighbour (torchvision's parameters use it). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface AffineParams {
  /** Degrees, counter-clockwise. */
  angle?: number;
  /** Pixels [x, y]. */
  translate?: [number, number];
  scale?: number;
  /** Degrees [x, y]. */
  shear?: [number, number];
  /** The fixed point in pixels [x, y]; default the image centre. */
  center?: [number, number];
}

/** torchvision's inverse affine matrix (output pixel to input pixel, centred coordinates). */
function inverseAffine(center: [number, number], angle: number, translate: [number, number], scale: number, shear: [number, number]): number[] {
  const rot = (angle * Math.PI) / 180;
  const sx = (shear[0] * Math.PI) / 180;
  const sy = (shear[1] * Math.PI) / 180;
  const [cx, cy] = center;
  const [tx, ty] = translate;
  const a = Math.cos(rot - sy) / Math.cos(sy);
  const b = (-Math.cos(rot - sy) * Math.tan(sx)) / Math.cos(sy) - Math.sin(rot);
  const c = Math.sin(rot - sy) / Math.cos(sy);
  const d = (-Math.sin(rot - sy) * Math.tan(sx)) / Math.cos(sy) + Math.cos(rot);
  const m = [d, -b, 0, -c, a, 0].map((v) => v / scale);
  m[2] = m[2]! + m[0]! * (-cx - tx) + m[1]! * (-cy - ty) + cx;
  m[5] = m[5]! + m[3]! * (-cx - tx) + m[4]! * (-cy - ty) + cy;
  return m;
}

/** torchvision's F.affine on a tensor with nearest sampling: pixels that map outside the
 * image become 0. */
export function affine(img: Image, p: AffineParams): Image {
  const { channels: C, height: H, width: W, data } = img;
  const center: [number, number] = p.center ? [p.center[0] - W * 0.5, p.center[1] - H * 0.5] : [0, 0];
  const m = inverseAffine(center, p.angle ?? 0, p.translate ?? [0, 0], p.scale ?? 1, p.shear ?? [0, 0]);
  const out = new Float32Array(data.length);
  for (let y = 0; y < H; y++) {
    const by = y - H * 0.5 + 0.5;
    for (let x = 0; x < W; x++) {
      const bx = x - W * 0.5 + 0.5;
      // grid_sample (align_corners=False) turns the centred source point back into pixels.
      const sx = roundHalfEven(m[0]! * bx + m[1]! * by + m[2]! + W * 0.5 - 0.5);
      const sy = roundHalfEven(m[3]! * bx + m[4]! * by + m[5]! + H * 0.5 - 0.5);
      if (sx < 0 || sy < 0 || sx >= W || sy >= H) continue;
      for (let c = 0; c < C; c++) out[(c * H + y) * W + x] = data[(c * H + sy) * W + sx]!;
    }
  }
  return { ...img, data: out };
}

/** Counter-clockwise by `angle` degrees about the centre, same size (torchvision's F.rotate). */
export function rotate(img: Image, angle: number): Image {
  return affine(img, { angle: -angle });
}

export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** torchvision's RandomResizedCrop.get_params: ten tries at a random area and aspect ratio
 * inside the image, else a centre crop of the whole image clamped to the ratio range. */
export function randomResizedCropParams(height: number, width: number, rng: Rng, scale: readonly [number, number] = [0.08, 1], ratio: readonly [number, number] = [3 / 4, 4 / 3]): CropBox {
  if (!(scale[0] > 0 && scale[0] <= scale[1] && scale[1] <= 1)) throw new RangeError(`randomResizedCrop: scale must be [min, max] with 0 < min <= max <= 1, got [${scale}]`);
  if (!(ratio[0] > 0 && ratio[0] <= ratio[1])) throw new RangeError(`randomResizedCrop: ratio must be [min, max] with 0 < min <= max, got [${ratio}]`);
  const area = height * width;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logRatio[0], logRatio[1]));
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return { top: rng.int(height - h + 1), left: rng.int(width - w + 1), height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = roundHalfEven(w / ratio[0]);
  else if (inRatio > ratio[1]) w = roundHalfEven(h * ratio[1]);
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** RandomResizedCrop: the crop cut out, then resampled (antialiased, as PIL) to size x size. */
export function randomResizedCrop(
  img: Image, size: number, rng: Rng, scale: readonly [number, number] = [0.08, 1], ratio: readonly [number, number] = [3 / 4, 4 / 3], interpolation: Interpolation = 'bilinear',
): Image {
  const b = randomResizedCropParams(img.height, img.width, rng, scale, ratio);
  return resample(crop(img, b.top, b.left, b.height, b.width), size, size, { interpolation });
}
