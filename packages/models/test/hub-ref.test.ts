/** Hub references that would leave the cache or the repo are refused when parsed, before any request. */
import { describe, expect, it } from 'vitest';
import { parseHubRef } from '../src/hub/ref.js';

describe('parseHubRef refuses unsafe repo ids, revisions and file paths', () => {
  const bad: [string, RegExp][] = [
    ['hf:../../etc/passwd', /not a Hub reference/],
    ['hf:x/y@..', /revision "\.\." is not a branch/],
    ['hf:x/y@../../z', /revision|file path/],
    ['hf:x/y@.hidden', /revision ".hidden"/],
    ['hf:x/y@a~1', /revision "a~1"/],
    ['hf:x/y@a%2e%2e', /revision "a%2e%2e"/],
    ['hf:org--evil/name', /not a Hub repo id/],
    ['hf:org/na..me', /not a Hub repo id/],
    ['hf:org/-name', /not a Hub repo id/],
    [`hf:org/${'n'.repeat(100)}`, /at most 96 characters/],
    ['hf:org/name@main/./model.safetensors', /file path/],
    ['hf:org/name@main/a\\b.safetensors', /backslashes/],
  ];
  for (const [ref, msg] of bad) it(ref.slice(0, 40), () => expect(() => parseHubRef(ref)).toThrow(msg));

  it('still takes the references of the Hub', () => {
    expect(parseHubRef('hf:timm/resnet18.a1_in1k@refs-pr-1').revision).toBe('refs-pr-1');
    expect(parseHubRef(`hf:openai-community/gpt2@${'a'.repeat(40)}/model.safetensors`)).toMatchObject({ repo: 'openai-community/gpt2', file: 'model.safetensors' });
    expect(parseHubRef('hf:google-bert/bert-base-uncased@v1.0').revision).toBe('v1.0');
  });
});
