/**
 * TrivialAugmentWide (Müller & Hutter 2021, torchvision's TrivialAugmentWide): one op drawn
 * uniformly from fourteen, at a magnitude drawn uniformly from 31 bins, negated half the time
 * where the op is signed. The ops follow torchvision's functional ones; posterize and equalize
 * work on the bytes of the image (as torchvision's, which take uint8 only), solarize's threshold
 * is on the byte scale (255 down to 0) divided by 255.
 */
import type { Rng } from '@tl/tensor';
import type { Image } from '../transforms.js';
import { adjustBrightness, adjustContrast, adjustSaturation, adjustSharpness } from './color.js';
import { affine, rotate } from './geometry.js';

function bytes(img: Image): Uint8Array {
  const out = new Uint8ClampedArray(img.data.length);
  for (let i = 0; i < out.length; i++) out[i] = img.data[i]! * 255;
  return new Uint8Array(out.buffer);
}

function fromBytes(img: Image, b: Uint8Array): Image {
  const out = new Float32Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b[i]! / 255;
  return { ...img, data: out };
}

/** Keeps the top `bits` bits of each byte. */
export function posterize(img: Image, bits: number): Image {
  if (!Number.isInteger(bits) || bits < 0 || bits > 8) throw new RangeError(`posterize: bits must be an integer in [0, 8], got ${bits}`);
  const mask = (0xff << (8 - bits)) & 0xff;
  const b = bytes(img);
  for (let i = 0; i < b.length; i++) b[i] = b[i]! & mask;
  return fromBytes(img, b);
}

/** Inverts the values at or above `threshold` (on the [0, 1] scale). */
export function solarize(img: Image, threshold: number): Image {
  if (!(threshold >= 0)) throw new RangeError(`solarize: the threshold must be >= 0, got ${threshold}`);
  return { ...img, data: img.data.map((v) => (v >= threshold ? 1 - v : v)) };
}

/** Stretches each channel to span [0, 1] (a flat channel is left as it is). */
export function autocontrast(img: Image): Image {
  const n = img.height * img.width;
  const out = new Float32Array(img.data.length);
  for (let c = 0; c < img.channels; c++) {
    const ch = img.data.subarray(c * n, (c + 1) * n);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of ch) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const scale = hi > lo ? 1 / (hi - lo) : 1;
    const min = hi > lo ? lo : 0;
    for (let k = 0; k < n; k++) out[c * n + k] = Math.min(Math.max((ch[k]! - min) * scale, 0), 1);
  }
  return { ...img, data: out };
}

/** Histogram equalisation of each channel's bytes, torchvision's look-up table. */
export function equalize(img: Image): Image {
  const n = img.height * img.width;
  const b = bytes(img);
  for (let c = 0; c < img.channels; c++) {
    const ch = b.subarray(c * n, (c + 1) * n);
    const hist = new Float64Array(256);
    for (const v of ch) hist[v]!++;
    let last = 255;
    while (last > 0 && hist[last] === 0) last--;
    let nonzeroButLast = 0;
    for (let v = 0; v < last; v++) nonzeroButLast += hist[v]!;
    const step = Math.floor(nonzeroButLast / 255);
    if (step === 0) continue;
    const lut = new Uint8Array(256);
    let cum = 0;
    for (let v = 0; v < 256; v++) {
      lut[v] = Math.min(Math.floor((cum + Math.floor(step / 2)) / step), 255);
      cum += hist[v]!;
    }
    for (let k = 0; k < n; k++) ch[k] = lut[ch[k]!]!;
  }
  return fromBytes(img, b);
}

type Op = (img: Image, magnitude: number) => Image;

const BINS = 31;
const linspace = (a: number, b: number): number[] => Array.from({ length: BINS }, (_, i) => a + ((b - a) * i) / (BINS - 1));
const degrees = (rad: number): number => (rad * 180) / Math.PI;

/** Name, magnitudes (null: none) and sign of each op, in torchvision's order. */
const OPS: readonly { name: string; magnitudes: number[] | null; signed: boolean; apply: Op }[] = [
  { name: 'Identity', magnitudes: null, signed: false, apply: (x) => x },
  { name: 'ShearX', magnitudes: linspace(0, 0.99), signed: true, apply: (x, m) => affine(x, { shear: [degrees(Math.atan(m)), 0], center: [0, 0] }) },
  { name: 'ShearY', magnitudes: linspace(0, 0.99), signed: true, apply: (x, m) => affine(x, { shear: [0, degrees(Math.atan(m))], center: [0, 0] }) },
  { name: 'TranslateX', magnitudes: linspace(0, 32), signed: true, apply: (x, m) => affine(x, { translate: [Math.trunc(m), 0] }) },
  { name: 'TranslateY', magnitudes: linspace(0, 32), signed: true, apply: (x, m) => affine(x, { translate: [0, Math.trunc(m)] }) },
  { name: 'Rotate', magnitudes: linspace(0, 135), signed: true, apply: (x, m) => rotate(x, m) },
  { name: 'Brightness', magnitudes: linspace(0, 0.99), signed: true, apply: (x, m) => adjustBrightness(x, 1 + m) },
  { name: 'Color', magnitudes: linspace(0, 0.99), signed: true, apply: (x, m) => adjustSaturation(x, 1 + m) },
  { name: 'Contrast', magnitudes: linspace(0, 0.99), signed: true, apply: (x, m) => adjustContrast(x, 1 + m) },
  { name: 'Sharpness', magnitudes: linspace(0, 0.99), signed: true, apply: (x, m) => adjustSharpness(x, 1 + m) },
  { name: 'Posterize', magnitudes: Array.from({ length: BINS }, (_, i) => 8 - Math.round(i / ((BINS - 1) / 6))), signed: false, apply: (x, m) => posterize(x, m) },
  { name: 'Solarize', magnitudes: linspace(255, 0), signed: false, apply: (x, m) => solarize(x, m / 255) },
  { name: 'AutoContrast', magnitudes: null, signed: false, apply: (x) => autocontrast(x) },
  { name: 'Equalize', magnitudes: null, signed: false, apply: (x) => equalize(x) },
];

export const TRIVIAL_AUGMENT_OPS: readonly string[] = OPS.map((o) => o.name);

/** One TrivialAugmentWide op by name at a magnitude (the op's own units: shear as a slope,
 * pixels, degrees, factor - 1, bits, a byte threshold). */
export function trivialAugmentOp(img: Image, name: string, magnitude: number): Image {
  const op = OPS.find((o) => o.name === name);
  if (!op) throw new RangeError(`trivialAugmentOp: unknown op "${name}"; expected one of ${TRIVIAL_AUGMENT_OPS.join(', ')}`);
  return op.apply(img, magnitude);
}

export function trivialAugmentWide(img: Image, rng: Rng): Image {
  const op = OPS[rng.int(OPS.length)]!;
  let m = op.magnitudes ? op.magnitudes[rng.int(BINS)]! : 0;
  if (op.signed && rng.next() < 0.5) m = -m;
  return op.apply(img, m);
}
