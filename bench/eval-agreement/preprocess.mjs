/**
 * The evaluation preprocessing of @tl/train (and two alternatives) on a list of image files,
 * written as float32 [N, 3, size, size] for measure.py to compare with torchvision's.
 * Usage: node preprocess.mjs <files.json> <size> <cropPct> <bilinear|bicubic> <out-prefix>
 * Writes <out-prefix>.<variant>.f32 for the variants:
 *   tl     sharp decodes, Pillow's resampling in @tl/train (what image folders do now)
 *   sharp  sharp's own resize to the same size (its linear / cubic kernel), then the same crop
 *   old    the pipeline before this change: sharp's default (lanczos3) shrink to 1.5x the
 *          input size, a bilinear resize without antialiasing to the input size (cropPct
 *          ignored), a centre crop
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import sharp from '../../packages/train/node_modules/sharp/lib/index.js';
import { decodeImage, evalResizeSize, evalTransform, normalize, shorterSideSize } from '../../packages/train/dist/node.js';

const [list, sizeArg, cropArg, interpolation, prefix] = process.argv.slice(2);
if (!prefix || !['bilinear', 'bicubic'].includes(interpolation)) {
  console.error('usage: node preprocess.mjs <files.json> <size> <cropPct> <bilinear|bicubic> <out-prefix>');
  process.exit(2);
}
const files = JSON.parse(readFileSync(list, 'utf8'));
const size = Number(sizeArg);
const pre = { imageSize: size, cropPct: Number(cropArg), interpolation, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channels: 3, augment: false };
const resizeTo = evalResizeSize(size, pre.cropPct);

async function raw(path, resize) {
  let img = sharp(path).removeAlpha().toColourspace('srgb');
  if (resize) img = img.resize(resize);
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const n = info.width * info.height;
  const out = new Float32Array(3 * n);
  for (let k = 0; k < n; k++) for (let c = 0; c < 3; c++) out[c * n + k] = data[k * 3 + c] / 255;
  return { data: out, channels: 3, height: info.height, width: info.width };
}

/** The bilinear resize (half-pixel centres, no antialiasing) and floor-centred crop of before. */
function oldEval(img) {
  const scale = size / Math.min(img.height, img.width);
  const H = img.height, W = img.width, h = Math.round(H * scale), w = Math.round(W * scale);
  const out = new Float32Array(3 * h * w);
  for (let y = 0; y < h; y++) {
    const fy = Math.min(Math.max((y + 0.5) * (H / h) - 0.5, 0), H - 1), y0 = Math.floor(fy), y1 = Math.min(y0 + 1, H - 1), wy = fy - y0;
    for (let x = 0; x < w; x++) {
      const fx = Math.min(Math.max((x + 0.5) * (W / w) - 0.5, 0), W - 1), x0 = Math.floor(fx), x1 = Math.min(x0 + 1, W - 1), wx = fx - x0;
      for (let c = 0; c < 3; c++) {
        const d = img.data, p = c * H * W;
        const top = d[p + y0 * W + x0] * (1 - wx) + d[p + y0 * W + x1] * wx;
        const bot = d[p + y1 * W + x0] * (1 - wx) + d[p + y1 * W + x1] * wx;
        out[c * h * w + y * w + x] = top * (1 - wy) + bot * wy;
      }
    }
  }
  const t = Math.floor((h - size) / 2), l = Math.floor((w - size) / 2);
  const crop = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c++) for (let y = 0; y < size; y++) crop.set(out.subarray(c * h * w + (y + t) * w + l, c * h * w + (y + t) * w + l + size), c * size * size + y * size);
  return normalize({ data: crop, channels: 3, height: size, width: size }, pre.mean, pre.std);
}

const variants = {
  tl: async (f) => evalTransform(await decodeImage(f, 3, resizeTo, interpolation), pre),
  sharp: async (f) => {
    const meta = await sharp(f).metadata();
    const [h, w] = shorterSideSize(meta.height, meta.width, resizeTo);
    const img = await raw(f, { width: w, height: h, fit: 'fill', kernel: interpolation === 'bicubic' ? 'cubic' : 'linear' });
    return evalTransform(img, pre);
  },
  old: async (f) => {
    const meta = await sharp(f).metadata();
    const side = Math.ceil(size * 1.5);
    return oldEval(Math.min(meta.width, meta.height) > side ? await raw(f, { width: side, height: side, fit: 'outside' }) : await raw(f));
  },
};
for (const [name, run] of Object.entries(variants)) {
  const t0 = performance.now();
  const all = new Float32Array(files.length * 3 * size * size);
  for (const [i, f] of files.entries()) all.set(await run(f), i * 3 * size * size);
  const path = `${prefix}.${name}.f32`;
  writeFileSync(`${path}.tmp`, Buffer.from(all.buffer));
  renameSync(`${path}.tmp`, path);
  console.log(`${name}: ${files.length} images in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
