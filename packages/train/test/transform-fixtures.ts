/** The golden transforms of fixtures/make_transform_fixtures.py (Pillow 9.4, torchvision 0.14). */
import { readFileSync } from 'node:fs';
import { parseSafetensors } from '@tl/models';
import type { Image } from '../src/node.js';

export const fixtures = parseSafetensors(readFileSync(new URL('../fixtures/transforms.safetensors', import.meta.url)));
export const cases = JSON.parse(fixtures.metadata.cases!) as Record<string, Record<string, unknown> & { image: string }>;

/** A stored uint8 HWC image as the float CHW Image that the decoders give. */
export function fixtureImage(key: string): Image {
  const t = fixtures.get(`image.${key}`);
  const [H, W, C] = t.shape as [number, number, number];
  const data = new Float32Array(C * H * W);
  for (let k = 0; k < H * W; k++) for (let c = 0; c < C; c++) data[c * H * W + k] = t.data[k * C + c]! / 255;
  return { data, channels: C, height: H, width: W };
}

/** A stored uint8 HWC tensor as CHW bytes. */
export function hwcBytes(name: string): number[] {
  const t = fixtures.get(name);
  const [H, W, C] = t.shape as [number, number, number];
  const out: number[] = [];
  for (let c = 0; c < C; c++) for (let k = 0; k < H * W; k++) out.push(t.data[k * C + c]!);
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}
