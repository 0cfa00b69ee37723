/** The registry's recorded parameter counts (what `tl models` lists without building each
 * model) against the models themselves. */
import { beforeAll, describe, expect, it } from 'vitest';
import { listModels } from '../src/node.js';
import { setup } from '../../tensor/test/helpers.js';

beforeAll(setup);

describe('registry', () => {
  for (const spec of listModels()) {
    it(`${spec.id}: parameters and checkpoint layouts are recorded and right`, () => {
      expect(spec.parameters, `${spec.id} records its parameter count`).toBeGreaterThan(0);
      expect(spec.checkpoints?.length, `${spec.id} names the checkpoints it loads`).toBeGreaterThan(0);
      const m = spec.create();
      try {
        expect(m.numParameters()).toBe(spec.parameters);
      } finally {
        m.dispose();
      }
      if (spec.labels) expect(spec.labels).toHaveLength(spec.numClasses);
    }, 60_000);
  }
});
