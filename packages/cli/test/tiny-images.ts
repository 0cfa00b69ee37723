/** A tiny image folder for CLI runs that must be quick: two classes of six 16x16 PNGs,
 * reddish and bluish, with a little texture. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

export async function writeTinyImages(dir: string): Promise<void> {
  for (const [c, name] of ['red', 'blue'].entries()) {
    mkdirSync(join(dir, name), { recursive: true });
    for (let i = 0; i < 6; i++) {
      const px = Buffer.alloc(16 * 16 * 3);
      for (let k = 0; k < 256; k++) {
        px[k * 3 + c * 2] = 200 + i;
        px[k * 3 + 1] = (k * 7 + i * 13) % 60;
      }
      await sharp(px, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(join(dir, name, `${i}.png`));
    }
  }
}
