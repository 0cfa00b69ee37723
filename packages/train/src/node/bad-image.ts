/**
 * Why an image file failed to decode, told from the file itself rather than from sharp's
 * message: libvips keeps one error buffer for the whole process, so when several decodes fail
 * at once (the loader prefetches a batch in parallel, and the decode workers share it) a
 * failure can carry another file's message. Measured: a truncated JPEG decoded beside a
 * non-image file was reported as "unsupported image format" about one run in three.
 */
import { open, stat } from 'node:fs/promises';
import sharp from 'sharp';
import { BadImageError } from './data-error.js';

/** Bytes read from the end of a file to find its format's end marker. */
const TAIL = 1024;

/** The BadImageError for `path`, which sharp failed to decode with `message`. */
export async function classifyBadImage(path: string, message: string, maxPixels: number): Promise<BadImageError> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (e) {
    return new BadImageError(path, 'unreadable', `cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (size === 0) return new BadImageError(path, 'empty', 'the file is empty (0 bytes)');
  const header = await sharp(path).metadata().catch(() => undefined);
  if (header?.width && header.height && header.width * header.height > maxPixels) {
    const mp = (n: number): string => `${(n / 1e6).toFixed(1)} megapixels`;
    return new BadImageError(path, 'huge', `${header.width} x ${header.height} pixels (${mp(header.width * header.height)}) is over the limit of ${mp(maxPixels)}; refused by its header, not decoded (raise maxPixels / --max-pixels to use it)`);
  }
  const { head, tail } = await ends(path, size);
  const cut = endMissing(head, tail, size);
  if (cut) return new BadImageError(path, 'truncated', `the file is truncated (${cut}, ${size} bytes)`);
  // Formats without an end marker checked here: the message is all there is.
  if (cut === null && /premature end|end of stream|truncat|unexpected end|not enough data|short read/i.test(message)) {
    return new BadImageError(path, 'truncated', `the file is truncated (${message.trim()})`);
  }
  return new BadImageError(path, 'corrupt', `cannot decode image (${message.trim()})`);
}

async function ends(path: string, size: number): Promise<{ head: Buffer; tail: Buffer }> {
  const f = await open(path, 'r');
  try {
    const head = Buffer.alloc(Math.min(16, size));
    await f.read(head, 0, head.length, 0);
    const tail = Buffer.alloc(Math.min(TAIL, size));
    await f.read(tail, 0, tail.length, size - tail.length);
    return { head, tail };
  } finally {
    await f.close();
  }
}

/** What is missing at the end of a JPEG, PNG, GIF or WebP file cut short; '' when the file ends
 * as its format requires; null for other formats. */
export function endMissing(head: Buffer, tail: Buffer, size: number): string | null {
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) {
    // FF D9 cannot occur inside entropy-coded data (an FF there is followed by 00 or a restart
    // marker), so its absence near the end means the scan was cut.
    for (let i = tail.length - 2; i >= 0; i--) if (tail[i] === 0xff && tail[i + 1] === 0xd9) return '';
    return 'a JPEG without its end-of-image marker';
  }
  if (head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    return tail.includes('IEND') ? '' : 'a PNG without its IEND chunk';
  }
  if (head.subarray(0, 4).toString('latin1') === 'GIF8') return tail[tail.length - 1] === 0x3b ? '' : 'a GIF without its trailer';
  if (head.subarray(0, 4).toString('latin1') === 'RIFF' && head.subarray(8, 12).toString('latin1') === 'WEBP') {
    const declared = head.readUInt32LE(4) + 8;
    return declared > size ? `a WebP of ${declared} bytes by its header` : '';
  }
  return null;
}
