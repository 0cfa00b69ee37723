/**
 * Where the tests find real data. `pnpm test` reads only data/, committed with the repository,
 * so a fresh clone tests itself; `pnpm test:real` reads the full copy in ../shared/data. A
 * missing file fails the test with where to get it, never skips it.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('./', import.meta.url));

/** A file or folder under data/ (data/README.md says what each is and how it was made). */
export function repoData(path: string): string {
  const p = join(ROOT, 'data', path);
  if (!existsSync(p)) {
    throw new Error(`data/${path} is missing: it is committed with the repository (git checkout data/), ` +
      'or regenerate data/ from ../shared/data with `node scripts/make-data-subset.mjs` (data/README.md)');
  }
  return p;
}

/** A file or folder under ../shared/data, or under $TL_SHARED_DATA where that is set. */
export function sharedData(path: string): string {
  const dir = process.env.TL_SHARED_DATA ?? join(ROOT, '..', 'shared', 'data');
  const p = join(dir, path);
  if (!existsSync(p)) {
    throw new Error(`${path} is missing from ${dir}: \`pnpm test:real\` reads the full data in ../shared/data beside ` +
      'the repository (CI keeps a copy there), or in the folder TL_SHARED_DATA names. data/README.md lists what it ' +
      'holds and where each part comes from; `pnpm test` needs only data/.');
  }
  return p;
}
