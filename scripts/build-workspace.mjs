// Builds the named workspace packages and every @tl/* package they import (turbo, cached), and
// prints turbo's output only when a build fails: `pnpm tl` and the CLI's tests run the built
// dist, which imports the other packages' dists.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const names = process.argv.slice(2);
if (names.length === 0) throw new Error('build-workspace: name the packages to build, e.g. @tl/cli');
const turbo = fileURLToPath(new URL('../node_modules/.bin/turbo', import.meta.url));
const filters = names.map((n) => `--filter=${n}...`);
const run = spawnSync(turbo, ['run', 'build', ...filters, '--output-logs=errors-only'], { cwd: root, encoding: 'utf8' });
if (run.status !== 0) {
  process.stderr.write(`${run.stdout ?? ''}${run.stderr ?? ''}${run.error ? String(run.error) : ''}\n`);
  process.exit(run.status ?? 1);
}
