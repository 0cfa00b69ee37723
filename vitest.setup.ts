import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// lavapipe warns on every start without a writable runtime dir.
if (!process.env.XDG_RUNTIME_DIR) {
  const dir = join(tmpdir(), `tl-xdg-${process.getuid?.() ?? 0}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  process.env.XDG_RUNTIME_DIR = dir;
}

// Every keyed pipeline's WGSL is built on every dispatch and compared with the text its key
// was first built from (engine.ts, keyedCode): a key missing a dependency fails the test.
process.env.TL_CHECK_PIPELINE_KEYS ??= '1';
