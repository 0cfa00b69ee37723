/** Small live line charts on a canvas (no dependencies): series of (x, y) points, auto-scaled. */
export interface Series {
  name: string;
  color: string;
  points: [number, number][];
  /** Draw dots at the points (per-epoch series) instead of a plain line. */
  dots?: boolean;
  dashed?: boolean;
}

export class LineChart {
  series: Series[] = [];
  private queued = false;
  constructor(
    readonly canvas: HTMLCanvasElement,
    readonly opts: { title: string; xLabel: string; yMin?: number; yMax?: number; format?: (v: number) => string },
  ) {
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  add(name: string, color: string, extra: Partial<Series> = {}): Series {
    const s: Series = { name, color, points: [], ...extra };
    this.series.push(s);
    return s;
  }

  clear(): void {
    for (const s of this.series) s.points = [];
    this.draw();
  }

  push(s: Series, x: number, y: number): void {
    if (!Number.isFinite(y)) return;
    s.points.push([x, y]);
    this.requestDraw();
  }

  requestDraw(): void {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      this.draw();
    });
  }

  draw(): void {
    const c = this.canvas;
    const dpr = globalThis.devicePixelRatio || 1;
    const w = c.clientWidth;
    const h = c.clientHeight;
    if (w === 0 || h === 0) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = c.getContext('2d')!;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(c);
    const fg = css.getPropertyValue('--fg').trim() || '#222';
    const grid = css.getPropertyValue('--grid').trim() || '#ddd';
    const pad = { l: 46, r: 12, t: 26, b: 28 };
    const all = this.series.flatMap((s) => s.points);
    let [x0, x1] = [0, 1];
    let [y0, y1] = [this.opts.yMin ?? Infinity, this.opts.yMax ?? -Infinity];
    if (all.length) {
      x0 = Math.min(...all.map((p) => p[0]));
      x1 = Math.max(...all.map((p) => p[0]), x0 + 1e-9);
      if (this.opts.yMin === undefined) y0 = Math.min(...all.map((p) => p[1]));
      if (this.opts.yMax === undefined) y1 = Math.max(...all.map((p) => p[1]));
    }
    if (!Number.isFinite(y0) || !Number.isFinite(y1)) [y0, y1] = [0, 1];
    if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 0.5, y1 + 0.5];
    const X = (x: number): number => pad.l + ((x - x0) / (x1 - x0 || 1)) * (w - pad.l - pad.r);
    const Y = (y: number): number => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
    g.font = '12px system-ui, sans-serif';
    g.fillStyle = fg;
    g.fillText(this.opts.title, pad.l, 16);
    g.strokeStyle = grid;
    g.lineWidth = 1;
    const fmt = this.opts.format ?? ((v: number) => (Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(2)));
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      g.beginPath();
      g.moveTo(pad.l, Y(y));
      g.lineTo(w - pad.r, Y(y));
      g.stroke();
      g.fillText(fmt(y), 4, Y(y) + 4);
    }
    g.fillText(this.opts.xLabel, w - pad.r - g.measureText(this.opts.xLabel).width, h - 8);
    g.fillText(x0.toFixed(0), pad.l, h - 8);
    let lx = pad.l + g.measureText(this.opts.title).width + 16;
    for (const s of this.series) {
      g.strokeStyle = s.color;
      g.fillStyle = s.color;
      g.lineWidth = 2;
      g.setLineDash(s.dashed ? [5, 4] : []);
      g.beginPath();
      s.points.forEach(([x, y], i) => (i === 0 ? g.moveTo(X(x), Y(y)) : g.lineTo(X(x), Y(y))));
      g.stroke();
      g.setLineDash([]);
      if (s.dots) for (const [x, y] of s.points) g.fillRect(X(x) - 2.5, Y(y) - 2.5, 5, 5);
      if (s.points.length) {
        g.fillRect(lx, 8, 10, 10);
        g.fillStyle = fg;
        g.fillText(s.name, lx + 14, 17);
        lx += g.measureText(s.name).width + 32;
      }
    }
  }
}
