/** The GPU engine, started only by commands that need it and only after their flags, paths
 * and numbers are checked, so a mistake is reported before anything slow happens. */
import { init } from '@tl/autograd';
import { CliError } from './errors.js';

let started: Promise<unknown> | null = null;

export async function startEngine(): Promise<void> {
  started ??= init().catch((e: unknown) => {
    throw new CliError((e as Error).message, 1);
  });
  await started;
}
