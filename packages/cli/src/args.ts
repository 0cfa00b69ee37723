/** Flag parsing: `--name value`, `--name=value`, booleans, repeated flags; unknown flags get
 * the nearest valid one suggested. */
import { CliError, nearest } from './errors.js';

export type FlagType = 'string' | 'number' | 'boolean' | 'list';
export type FlagSpec = Record<string, FlagType>;
export type Flags = Record<string, string | number | boolean | string[] | undefined>;

export function parseArgs(argv: string[], spec: FlagSpec, command: string): { flags: Flags; positional: string[] } {
  const flags: Flags = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    const type = spec[name];
    if (!type) {
      const near = nearest(name, Object.keys(spec));
      throw new CliError(`tl ${command}: unknown flag --${name}${near ? `; did you mean --${near}?` : `; see tl ${command} --help`}`, 2);
    }
    let value: string | undefined = eq < 0 ? undefined : a.slice(eq + 1);
    if (type === 'boolean') {
      flags[camel(name)] = value === undefined ? true : !['false', '0', 'no'].includes(value);
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new CliError(`tl ${command}: --${name} needs a value`, 2);
    }
    if (type === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new CliError(`tl ${command}: --${name} must be a number, got "${value}"`, 2);
      flags[camel(name)] = n;
    } else if (type === 'list') {
      const cur = (flags[camel(name)] as string[] | undefined) ?? [];
      flags[camel(name)] = [...cur, value];
    } else flags[camel(name)] = value;
  }
  return { flags, positional };
}

export function camel(s: string): string {
  return s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
