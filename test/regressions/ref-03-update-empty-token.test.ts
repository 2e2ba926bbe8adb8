// Protocol reference §12.3: /pyworker/update with an empty MASTER_TOKEN accepted a call without a token.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { post } from '../helpers/request.ts';
import { startStack } from '../helpers/stack.ts';

describe('ref-03: /pyworker/update without a MASTER_TOKEN', () => {
  it.each([
    ['unset', {}],
    ['empty', { MASTER_TOKEN: '' }],
  ])('refuses a call with no Authorization header when MASTER_TOKEN is %s', async (_name, env) => {
    const dir = mkdtempSync(join(tmpdir(), 'tsworker-ref03-'));
    const marker = join(dir, '.force_update');
    const stack = await startStack({ env: { ...env, FORCE_UPDATE_FILE: marker } });
    try {
      const response = await post(`${stack.worker.url}/pyworker/update`, '');
      expect(response.status).toBe(401);
      expect(response.json()).toMatchObject({ error: 'unauthorized' });
      expect(existsSync(marker)).toBe(false);
    } finally {
      await stack.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
