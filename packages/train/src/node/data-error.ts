/** Data that cannot be used as given: a missing folder, a bad list file, an unreadable image. */
export class DataError extends Error {
  override name = 'DataError';
}

/** What was wrong with an image that was skipped. */
export type BadImageKind = 'empty' | 'truncated' | 'corrupt' | 'huge' | 'unreadable';

export const BAD_IMAGE_KINDS: readonly BadImageKind[] = ['empty', 'truncated', 'corrupt', 'huge', 'unreadable'];

/** An image file that cannot be decoded (or is refused, as too large, before decoding). */
export class BadImageError extends DataError {
  override name = 'BadImageError';
  constructor(readonly path: string, readonly kind: BadImageKind, readonly reason: string) {
    super(`${path}: ${reason}`);
  }
}
