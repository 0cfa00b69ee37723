/**
 * Progress: on a terminal, a bar per epoch with step, loss, accuracy, samples/s and ETA;
 * elsewhere (CI, pipes) one plain line per epoch.
 */
import type { TrainerEvent } from '@tl/train';

export class Progress {
  private epochStart = 0;
  private lastDraw = 0;
  /** Throughput unit of the lines: 'img/s' for images, 'samples/s' for texts. */
  unit = 'img/s';
  constructor(private readonly out: NodeJS.WriteStream = process.stderr, readonly tty = !!out.isTTY && !process.env.CI, private readonly quiet = false) {}

  line(s: string): void {
    if (this.quiet) return;
    if (this.tty) this.out.write('\r\x1b[2K');
    this.out.write(`${s}\n`);
  }

  event(e: TrainerEvent, label = ''): void {
    if (this.quiet) return;
    const tag = label ? `${label} ` : '';
    if (e.type === 'epochBegin') {
      this.epochStart = performance.now();
      if (this.tty) this.draw(`${tag}epoch ${e.epoch + 1}/${e.epochs}${e.cached ? ' (cached features)' : ''}`, 0, e.steps, '');
    } else if (e.type === 'step' && this.tty) {
      const now = performance.now();
      if (now - this.lastDraw < 100 && e.step < e.steps) return;
      this.lastDraw = now;
      const elapsed = (now - this.epochStart) / 1000;
      const eta = (elapsed / e.step) * (e.steps - e.step);
      const acc = e.accuracy === null ? '' : ` acc ${(100 * e.accuracy).toFixed(1)}%`;
      this.draw(`${tag}epoch ${e.epoch + 1}`, e.step, e.steps, `loss ${e.loss.toFixed(4)}${acc} ${e.samplesPerSec.toFixed(1)} ${this.unit} ETA ${fmtTime(eta)}`);
    } else if (e.type === 'epochEnd') {
      const l = e.logs;
      const parts = [
        `${tag}epoch ${l.epoch + 1}`,
        `loss ${l.trainLoss.toFixed(4)}`,
        l.trainAccuracy !== undefined ? `acc ${(100 * l.trainAccuracy).toFixed(1)}%` : '',
        l.valLoss !== undefined ? `val_loss ${l.valLoss.toFixed(4)}` : '',
        l.valAccuracy !== undefined ? `val_acc ${(100 * l.valAccuracy).toFixed(1)}%` : '',
        `lr ${l.lr.toExponential(2)}`,
        `${l.samplesPerSec.toFixed(1)} ${this.unit}`,
        `${l.seconds.toFixed(1)} s${l.cachedFeatures ? ' (cached features)' : ''}`,
      ];
      this.line(parts.filter(Boolean).join('  '));
    }
  }

  private draw(head: string, step: number, steps: number, tail: string): void {
    const width = 24;
    const filled = steps ? Math.round((width * step) / steps) : 0;
    this.out.write(`\r\x1b[2K${head} [${'='.repeat(filled)}${' '.repeat(width - filled)}] ${step}/${steps} ${tail}`);
  }
}

export function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '--';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`;
}

/** A plain text table with aligned columns. */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
  return [line(head), `|${w.map((x) => '-'.repeat(x + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}
