import { readFileSync } from 'node:fs';

/**
 * The peak resident memory of this process, worker threads included. On Linux it is the
 * address space's high-water mark (VmHWM), which starts afresh when the process is exec'd:
 * getrusage's maxRSS survives exec, so a child spawned by a large parent (a test runner, a
 * bench driver) would report the parent's peak. Elsewhere, getrusage's figure.
 */
export function peakResidentBytes(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // No procfs: fall through.
  }
  return process.resourceUsage().maxRSS * 1024;
}
