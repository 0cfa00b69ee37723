/** CIFAR-10-C's blur and contrast against a PyTorch reference (scripts/adapt_fixtures.py), and
 * the seeded noise's statistics. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseSafetensors } from '@tl/models';
import { corruptPixels, NOISE_STD } from '../src/index.js';

const f = parseSafetensors(readFileSync(new URL('./fixtures/corruptions.safetensors', import.meta.url)));
const image = Uint8Array.from(f.get('image').data);
const size = { height: 7, width: 6, channels: 3 };

/** Truncation to 8 bits may land one level apart where float64 sums differ in the last bit. */
function expectBytes(got: Uint8Array, key: string): void {
  const want = f.get(key).data;
  const diffs = [...got].map((v, i) => Math.abs(v - Number(want[i])));
  expect(Math.max(...diffs), key).toBeLessThanOrEqual(1);
  expect(diffs.filter((d) => d > 0).length, key).toBeLessThanOrEqual(2);
}

describe('CIFAR-10-C corruptions', () => {
  it('gaussian blur and contrast equal the reference at severities 3 and 5', () => {
    for (const s of [3, 5]) {
      expectBytes(corruptPixels(image, size, 'gaussianBlur', s), `blur${s}`);
      expectBytes(corruptPixels(image, size, 'contrast', s), `contrast${s}`);
    }
  });

  it('gaussian noise is seeded and has the severity\'s standard deviation', () => {
    const grey = new Uint8Array(64 * 64 * 3).fill(128);
    const a = corruptPixels(grey, { height: 64, width: 64, channels: 3 }, 'gaussianNoise', 5, 11);
    expect([...corruptPixels(grey, { height: 64, width: 64, channels: 3 }, 'gaussianNoise', 5, 11)]).toEqual([...a]);
    const d = [...a].map((v) => (v + 0.5) / 255 - 128 / 255);
    const mean = d.reduce((s, v) => s + v, 0) / d.length;
    const std = Math.sqrt(d.reduce((s, v) => s + (v - mean) ** 2, 0) / d.length);
    expect(std).toBeGreaterThan(NOISE_STD[4] * 0.95);
    expect(std).toBeLessThan(NOISE_STD[4] * 1.05);
    expect(() => corruptPixels(grey, { height: 64, width: 64, channels: 3 }, 'contrast', 6)).toThrow('corruption severity must be an integer from 1 to 5, got 6');
  });
});
