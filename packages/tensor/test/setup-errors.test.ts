import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { init, setEngine, zeros } from '../src/node.js';
import { loadDawn } from '../src/gpu-node.js';

describe('what a consumer is told when setup is missing', () => {
  it('a tensor created before init() names the call to add', async () => {
    const running = await init();
    setEngine(null);
    try {
      expect(() => zeros([2])).toThrow("Add `import { init } from '@tl/tensor'; await init();`");
    } finally {
      setEngine(running);
    }
  });

  const dir = mkdtempSync(join(tmpdir(), 'tl-no-webgpu-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** The error Node's own `import(name)` throws in a folder without node_modules (vitest would
   * resolve an import() in this file itself, through the workspace). */
  function importFailure(name: string): Error {
    const script = `import(${JSON.stringify(name)}).catch((e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`;
    const { code, message } = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: dir, encoding: 'utf8' })) as { code: string; message: string };
    return Object.assign(new Error(message), { code });
  }

  it('a Node install without the "webgpu" package says to install it', async () => {
    const missing = importFailure('webgpu');
    await expect(loadDawn(() => Promise.reject(missing))).rejects.toThrow('`npm install webgpu`');
  });

  it('another missing package passes through unchanged', async () => {
    const missing = importFailure('debug');
    await expect(loadDawn(() => Promise.reject(missing))).rejects.toBe(missing);
  });
});
