import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// lavapipe warns on every start without a writable runtime dir.
if (!process.env.XDG_RUNTIME_DIR) {
  const dir = join(tmpdir(), `tl-xdg-${process.getuid?.() ?? 0}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  process.env.XDG_RUNTIME_DIR = dir;
}
