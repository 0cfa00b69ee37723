/** `tl --help` and `tl <command> --help`, rendered from the command table. */
import { COMMANDS } from './commands-table.js';
import type { FlagGroup } from './flags.js';

const GROUPS: FlagGroup[] = ['data', 'model', 'strategy', 'optimisation', 'output', 'options'];

export function commandHelp(name: string): string {
  const c = COMMANDS[name]!;
  const lines = [`usage: ${c.usage}`, '', c.summary];
  const entries = Object.entries(c.flags);
  const heads = entries.map(([n, d]) => `--${n}${d.type === 'boolean' ? '' : ` <${d.value ?? d.type}>`}${d.type === 'list' ? ' ...' : ''}`);
  const width = Math.min(34, Math.max(...heads.map((h) => h.length)));
  for (const g of GROUPS) {
    const inGroup = entries.map((e, i) => [e, heads[i]!] as const).filter(([[, d]]) => d.group === g);
    if (!inGroup.length) continue;
    lines.push('', `${g}:`);
    for (const [[, d], head] of inGroup) {
      const text = `${d.help}${d.default !== undefined ? ` (default: ${d.default})` : ''}`;
      lines.push(head.length > width ? `  ${head}\n  ${''.padEnd(width)}  ${text}` : `  ${head.padEnd(width)}  ${text}`);
    }
  }
  if (c.notes?.length) lines.push('', ...c.notes);
  lines.push('', 'examples:', ...c.examples.map((e) => `  ${e}`));
  return `${lines.join('\n')}\n`;
}

export function overviewHelp(): string {
  const names = Object.keys(COMMANDS);
  const width = Math.max(...names.map((n) => n.length));
  return [
    'tl: transfer learning on WebGPU',
    '',
    'usage: tl <command> [flags]      (tl alone runs `tl train`, the embedded default job)',
    '',
    'commands:',
    ...names.map((n) => `  ${n.padEnd(width)}  ${COMMANDS[n]!.summary}`),
    '',
    'examples:',
    '  tl train',
    '  tl models',
    '  tl eval --model cifar_resnet20 --weights data/pretrained/cifar10-resnet20.safetensors --data data/cifar10-test',
    '',
    '`tl <command> --help` describes every flag of a command with its default. Mistakes exit with code 2;',
    'TL_DEBUG=1 prints the stack trace of any error.',
    '',
  ].join('\n');
}
