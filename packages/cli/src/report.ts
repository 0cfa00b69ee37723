/**
 * The run's report.html: one self-contained file (inline SVG and data-URL images, no
 * scripts from elsewhere) with loss and accuracy curves, the learning-rate schedule, the
 * confusion matrix, per-class precision/recall and some misclassified images or texts.
 */
import type { ClassificationReport, EpochLogs } from '@tl/train';

export interface StepRecord {
  step: number;
  loss: number;
  lr: number;
}

export interface ReportInput {
  title: string;
  config: Record<string, unknown>;
  history: EpochLogs[];
  steps: StepRecord[];
  classes: string[];
  report: ClassificationReport | null;
  /** Misclassified examples: the image (PNG data URL) or the text, true and predicted class. */
  mistakes: Mistake[];
  /** Parameter counts, and the size of the LoRA adapter file when the run trained one. */
  parameters?: { total: number; trainable: number; adapterBytes?: number };
  /** Figures of a run that is not a classification (perplexity before and after, …), shown in
   * place of the per-class table and the misclassified examples. */
  evaluation?: Evaluation;
}

/** A table of figures (a header row when `columns` is given) and, for generative runs, sample outputs. */
export interface Evaluation {
  title: string;
  columns?: string[];
  rows: string[][];
  samples?: { title: string; columns: string[]; rows: string[][] };
}

export type Mistake = ({ image: string; file?: string } | { text: string }) & { truth: string; predicted: string };

const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

function lineChart(title: string, series: { name: string; color: string; points: [number, number][] }[], xLabel: string, id: string): string {
  const W = 460;
  const H = 240;
  const P = { l: 52, r: 12, t: 28, b: 36 };
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  if (all.length === 0) return `<figure><figcaption>${esc(title)}</figcaption><p>no data</p></figure>`;
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) || 1];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const sx = (x: number): number => P.l + ((x - x0) / (x1 - x0 || 1)) * (W - P.l - P.r);
  const sy = (y: number): number => H - P.b - ((y - y0) / (y1 - y0)) * (H - P.t - P.b);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => y0 + f * (y1 - y0));
  const grid = ticks.map((t) => `<line x1="${P.l}" x2="${W - P.r}" y1="${sy(t)}" y2="${sy(t)}" stroke="#e5e5e5"/><text x="${P.l - 6}" y="${sy(t) + 4}" text-anchor="end" font-size="10">${fmtNum(t)}</text>`).join('');
  const paths = series.map((s) => {
    const pts = s.points.filter(([, y]) => Number.isFinite(y));
    if (pts.length === 0) return '';
    const d = pts.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
    const dots = pts.length <= 60 ? pts.map(([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.5" fill="${s.color}"/>`).join('') : '';
    return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>${dots}`;
  }).join('');
  const legend = series.map((s, i) => `<rect x="${P.l + i * 110}" y="8" width="10" height="10" fill="${s.color}"/><text x="${P.l + 14 + i * 110}" y="17" font-size="11">${esc(s.name)}</text>`).join('');
  return `<figure><figcaption>${esc(title)}</figcaption><svg id="${id}" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">
<rect width="${W}" height="${H}" fill="#fff"/>${grid}<line x1="${P.l}" x2="${P.l}" y1="${P.t}" y2="${H - P.b}" stroke="#999"/><line x1="${P.l}" x2="${W - P.r}" y1="${H - P.b}" y2="${H - P.b}" stroke="#999"/>${paths}${legend}
<text x="${(W + P.l) / 2}" y="${H - 6}" text-anchor="middle" font-size="11">${esc(xLabel)}</text></svg></figure>`;
}

function fmtNum(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2);
}

function confusion(r: ClassificationReport, classes: string[], id = 'confusion', title = 'Confusion matrix (rows: true class, columns: predicted)'): string {
  const n = classes.length;
  const cell = Math.max(14, Math.min(40, Math.floor(360 / Math.max(n, 1))));
  const L = 90;
  const T = 30;
  const max = Math.max(1, ...r.confusion.flat());
  const cells = r.confusion.flatMap((row, i) => row.map((v, j) => {
    const a = v / max;
    const fill = `rgba(${i === j ? '30,110,200' : '210,60,40'},${(0.08 + 0.92 * a).toFixed(3)})`;
    return `<rect x="${L + j * cell}" y="${T + i * cell}" width="${cell}" height="${cell}" fill="${fill}" stroke="#fff"/>${cell >= 22 ? `<text x="${L + j * cell + cell / 2}" y="${T + i * cell + cell / 2 + 4}" text-anchor="middle" font-size="10">${v}</text>` : ''}`;
  })).join('');
  const labels = classes.map((c, i) => `<text x="${L - 4}" y="${T + i * cell + cell / 2 + 4}" text-anchor="end" font-size="10">${esc(c.slice(0, 14))}</text><text x="${L + i * cell + cell / 2}" y="${T - 6}" text-anchor="middle" font-size="10">${esc(c.slice(0, 4))}</text>`).join('');
  const W = L + n * cell + 10;
  const H = T + n * cell + 24;
  return `<figure><figcaption>${esc(title)}</figcaption><svg id="${id}" class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}"><rect width="${W}" height="${H}" fill="#fff"/>${cells}${labels}</svg></figure>`;
}

const STYLE = 'body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}.charts{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{font-weight:600;margin-bottom:4px}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}.mistakes{display:flex;flex-wrap:wrap;gap:12px}.mistakes img{image-rendering:pixelated;border:1px solid #ccc}.texts td:first-child{max-width:640px;white-space:pre-wrap}pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:240px}';

/** One arm of a comparison: a way of training the same network on the same data. */
export interface ArmReport {
  name: string;
  history: EpochLogs[];
  /** Its score on the shared test set. */
  report: ClassificationReport;
  trainableParams: number;
  seconds: number;
}

const ARM_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd'];

/** Several arms side by side: their curves on shared axes, one table, each arm's confusion matrix. */
export function renderComparison(r: { title: string; arms: ArmReport[]; classes: string[]; config: Record<string, unknown>; note: string }): string {
  const series = (pick: (e: EpochLogs) => number | undefined): { name: string; color: string; points: [number, number][] }[] => r.arms.map((a, i) => ({
    name: a.name.split(' (')[0]!, color: ARM_COLORS[i % ARM_COLORS.length]!,
    points: a.history.flatMap((e): [number, number][] => (pick(e) === undefined ? [] : [[e.epoch + 1, pick(e)!]])),
  }));
  const base = r.arms.at(-1)!.report.accuracy;
  const rows = r.arms.map((a, i) => `<tr><td>${esc(a.name)}</td><td>${(100 * a.report.accuracy).toFixed(1)}% (${a.report.correct}/${a.report.total})</td><td>${i === r.arms.length - 1 ? '' : `${a.report.accuracy >= base ? '+' : ''}${(100 * (a.report.accuracy - base)).toFixed(1)}`}</td><td>${(100 * a.report.macroF1).toFixed(1)}%</td><td>${a.trainableParams.toLocaleString('en')}</td><td>${a.seconds.toFixed(0)} s</td></tr>`).join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(r.title)}</title><style>${STYLE}</style></head>
<body><h1>${esc(r.title)}</h1>
<p>${esc(r.note)}</p>
<table id="arms"><thead><tr><th>arm</th><th>test accuracy</th><th>vs ${esc(r.arms.at(-1)!.name.split(' (')[0]!)}</th><th>macro F1</th><th>trainable params</th><th>time</th></tr></thead><tbody>${rows}</tbody></table>
<h2>Training curves</h2>
<div class="charts">${lineChart('Training loss', series((e) => e.trainLoss), 'epoch', 'loss-chart')}${lineChart('Training accuracy', series((e) => e.trainAccuracy), 'epoch', 'accuracy-chart')}</div>
<h2>Confusion matrices on the test set</h2>
<div class="charts">${r.arms.map((a, i) => confusion(a.report, r.classes, `confusion-${i}`, a.name)).join('')}</div>
<h2>Configuration</h2><pre>${esc(JSON.stringify(r.config, null, 2))}</pre>
</body></html>`;
}

function parameterSummary(p: NonNullable<ReportInput['parameters']>): string {
  const n = (v: number) => v.toLocaleString('en');
  const adapter = p.adapterBytes === undefined ? '' : `; LoRA adapter (adapter_model.safetensors) ${n(p.adapterBytes)} bytes`;
  return `<h2>Parameters</h2><p>${n(p.trainable)} trainable of ${n(p.total)} (${((100 * p.trainable) / Math.max(p.total, 1)).toFixed(2)}%)${adapter}</p>`;
}

function htmlTable(columns: string[] | undefined, rows: string[][], cls = ''): string {
  const head = columns ? `<thead><tr>${columns.map((c) => `<th>${esc(c)}</th>`).join('')}</tr></thead>` : '';
  return `<table${cls ? ` class="${cls}"` : ''}>${head}<tbody>${rows.map((row) => `<tr>${row.map((v) => `<td>${esc(v)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

function evaluationTables(e: Evaluation): string {
  const samples = e.samples ? `<h2>${esc(e.samples.title)}</h2>${htmlTable(e.samples.columns, e.samples.rows, 'texts')}` : '';
  return `<h2>${esc(e.title)}</h2>${htmlTable(e.columns, e.rows)}${samples}`;
}

export function renderReport(r: ReportInput): string {
  const h = r.history;
  const charts = [
    lineChart('Loss', [
      { name: 'train', color: '#1f77b4', points: h.map((e) => [e.epoch + 1, e.trainLoss]) },
      { name: 'val', color: '#ff7f0e', points: h.filter((e) => e.valLoss !== undefined).map((e) => [e.epoch + 1, e.valLoss!]) },
    ], 'epoch', 'loss-chart'),
    lineChart('Accuracy', [
      { name: 'train', color: '#1f77b4', points: h.filter((e) => e.trainAccuracy !== undefined).map((e) => [e.epoch + 1, e.trainAccuracy!]) },
      { name: 'val', color: '#ff7f0e', points: h.filter((e) => e.valAccuracy !== undefined).map((e) => [e.epoch + 1, e.valAccuracy!]) },
    ], 'epoch', 'accuracy-chart'),
    lineChart('Learning rate', [{ name: 'lr', color: '#2ca02c', points: r.steps.map((s) => [s.step, s.lr]) }], 'step', 'lr-chart'),
  ];
  const evaluation = r.evaluation ? evaluationTables(r.evaluation) : '';
  const perClass = r.report ? `<table><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr></thead><tbody>${r.report.perClass.map((m, i) =>
    `<tr><td>${esc(r.classes[i] ?? String(i))}</td><td>${(100 * m.precision).toFixed(1)}%</td><td>${(100 * m.recall).toFixed(1)}%</td><td>${(100 * m.f1).toFixed(1)}%</td><td>${m.support}</td></tr>`).join('')}</tbody></table>
<p>accuracy ${(100 * r.report.accuracy).toFixed(2)}% (${r.report.correct}/${r.report.total}), macro F1 ${(100 * r.report.macroF1).toFixed(2)}%</p>` : '<p>No validation set.</p>';
  const images = r.mistakes.flatMap((m) => ('image' in m ? [m] : []));
  const texts = r.mistakes.flatMap((m) => ('text' in m ? [m] : []));
  const mistakes = images.length ? `<div class="mistakes">${images.map((m) => `<figure><img src="${m.image}" width="64" height="64" alt="${esc(m.file ?? '')}"><figcaption>true ${esc(m.truth)}<br>predicted ${esc(m.predicted)}</figcaption></figure>`).join('')}</div>`
    : texts.length ? `<table class="texts"><thead><tr><th>text</th><th>true</th><th>predicted</th></tr></thead><tbody>${texts.map((m) => `<tr><td>${esc(m.text)}</td><td>${esc(m.truth)}</td><td>${esc(m.predicted)}</td></tr>`).join('')}</tbody></table>`
    : '<p>None.</p>';
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(r.title)}</title>
<style>${STYLE}</style></head>
<body><h1>${esc(r.title)}</h1>
<div class="charts">${charts.join('')}${r.report ? confusion(r.report, r.classes) : ''}</div>
${r.parameters ? parameterSummary(r.parameters) : ''}
${evaluation || `<h2>Per-class precision and recall (validation)</h2>${perClass}
<h2>Misclassified examples</h2>${mistakes}`}
<h2>Configuration</h2><pre>${esc(JSON.stringify(r.config, null, 2))}</pre>
</body></html>`;
}
