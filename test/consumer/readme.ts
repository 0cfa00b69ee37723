import { readFileSync } from 'node:fs';

/**
 * The fenced code block that follows `<!-- consumer-test: NAME -->` in the README, so the
 * consumer test runs the README's code as a reader copies it.
 */
export function readmeBlock(readme: string, name: string): string {
  const text = readFileSync(readme, 'utf8');
  const marker = `<!-- consumer-test: ${name} -->`;
  const at = text.indexOf(marker);
  if (at < 0) throw new Error(`${readme}: no "${marker}" line; the consumer test runs the code block after it`);
  const block = /```ts\n([\s\S]*?)```/.exec(text.slice(at + marker.length));
  if (!block) throw new Error(`${readme}: no \`\`\`ts block after "${marker}"`);
  return block[1]!;
}

/** `code` with each `from` replaced by `to`; a `from` that does not occur is an error, so the
 * test notices when the README's paths change. */
export function substitute(code: string, replacements: Record<string, string>): string {
  let out = code;
  for (const [from, to] of Object.entries(replacements)) {
    if (!out.includes(from)) throw new Error(`the README block no longer contains ${JSON.stringify(from)}; update the consumer test's substitutions`);
    out = out.split(from).join(to);
  }
  return out;
}
