/**
 * Flags on Node's `util.parseArgs`: it splits `--name value`, `--name=value` and positionals;
 * this file adds what parseArgs leaves to its caller: numbers checked, unknown flags answered
 * with the nearest known one, and every mistake as a CliError with exit code 2.
 */
import { parseArgs } from 'node:util';
import { CliError, nearest } from './errors.js';

export type FlagType = 'string' | 'number' | 'boolean' | 'list';
export type FlagGroup = 'data' | 'model' | 'strategy' | 'optimisation' | 'output' | 'options';

export interface FlagDef {
  type: FlagType;
  group: FlagGroup;
  help: string;
  /** What applies when the flag is left out, as the help shows it. */
  default?: string;
  /** The value's name in the help (`--lr <rate>`). */
  value?: string;
}

export type FlagDefs = Record<string, FlagDef>;
export type FlagValue = string | number | boolean | string[];
export type Flags = Record<string, FlagValue | undefined>;

export function camel(s: string): string {
  return s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function toNumber(name: string, raw: string, command: string): number {
  const n = raw.trim() === '' ? NaN : Number(raw);
  if (!Number.isFinite(n)) throw new CliError(`tl ${command}: --${name} expects a number, got "${raw}"`, 2);
  return n;
}

/** The flags (camelCase keys) and positionals of `argv` for `command`. */
export function parseFlags(argv: readonly string[], defs: FlagDefs, command: string): { flags: Flags; positional: string[] } {
  const options = Object.fromEntries(Object.entries(defs).map(([name, d]) => [name, { type: d.type === 'boolean' ? 'boolean' as const : 'string' as const }]));
  // strict: false so that an unknown flag comes back as a token we can answer with a
  // suggestion, instead of parseArgs' own message.
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  const flags: Flags = {};
  const positional: string[] = [];
  for (const t of tokens) {
    if (t.kind === 'positional') {
      positional.push(t.value);
      continue;
    }
    if (t.kind === 'option-terminator') continue;
    if (t.rawName === '-h' && defs.help) {
      flags.help = true;
      continue;
    }
    const def = t.rawName.startsWith('--') ? defs[t.name] : undefined;
    if (!def) {
      const near = nearest(t.name, Object.keys(defs));
      throw new CliError(`tl ${command}: unknown flag ${t.rawName}${near ? `; did you mean --${near}?` : `; see tl ${command} --help`}`, 2);
    }
    const key = camel(t.name);
    if (def.type === 'boolean') {
      if (t.value === undefined) flags[key] = true;
      else if (['true', '1', 'yes'].includes(t.value)) flags[key] = true;
      else if (['false', '0', 'no'].includes(t.value)) flags[key] = false;
      else throw new CliError(`tl ${command}: --${t.name} is a switch; got "${t.value}", expected true or false (or leave the value out)`, 2);
      continue;
    }
    const value = t.value;
    if (value === undefined) throw new CliError(`tl ${command}: --${t.name} needs a value${def.value ? ` (${def.value})` : ''}`, 2);
    if (!t.inlineValue && value.startsWith('--') && defs[value.slice(2).split('=')[0]!]) {
      throw new CliError(`tl ${command}: --${t.name} needs a value${def.value ? ` (${def.value})` : ''}, got the flag ${value}`, 2);
    }
    if (def.type === 'number') flags[key] = toNumber(t.name, value, command);
    else if (def.type === 'list') flags[key] = [...((flags[key] as string[] | undefined) ?? []), value];
    else flags[key] = value;
  }
  return { flags, positional };
}
