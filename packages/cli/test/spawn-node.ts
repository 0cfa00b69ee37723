/**
 * Runs a Node script in a child process the way the tests used `spawnSync`, but without
 * blocking the test worker's event loop: vitest's worker reports to its main process over
 * RPC, and a report left unanswered for 60 s while the loop is blocked fails the whole run
 * ("[vitest-worker]: Timeout calling onTaskUpdate"), which one slow CLI run on a loaded
 * 2-core machine with a cold shader cache is enough to cause.
 */
import { spawn } from 'node:child_process';

export interface SpawnResult {
  /** The exit code; null when the process was killed (e.g. by `timeout`). */
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface SpawnOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Milliseconds before the child is killed. */
  timeout?: number;
  /** Accepted for the callers' spawnSync-shaped options; output is always UTF-8 text. */
  encoding?: 'utf8';
}

/** `node ...args`, resolved with its exit status and output once it exits. */
export function spawnNode(args: readonly string[], opts: SpawnOptions = {}): Promise<SpawnResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: opts.cwd, env: opts.env, timeout: opts.timeout });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}
