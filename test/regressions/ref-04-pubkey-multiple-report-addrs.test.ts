// Protocol reference §12.4: the public key URL was built from the raw, comma-separated REPORT_ADDR.
import { describe, expect, it } from 'vitest';
import { post } from '../helpers/request.ts';
import { startStack } from '../helpers/stack.ts';
import { startLocalAutoscaler } from '../../src/stand-ins/local-autoscaler.ts';
import { testPrivateKey } from '../helpers/stack.ts';

describe('ref-04: REPORT_ADDR with several addresses', () => {
  it('fetches the public key from the next address when the first is down', async () => {
    const dead = await startLocalAutoscaler({ privateKey: testPrivateKey() });
    dead.configure({ down: true });
    const live = await startLocalAutoscaler({ privateKey: testPrivateKey() });
    const stack = await startStack({ env: { REPORT_ADDR: `${dead.url}, ${live.url}` } });
    try {
      expect(await stack.worker.publicKeyLoaded).toBe(true);
      const response = await post(`${stack.worker.url}/generate`, {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
        payload: { prompt: 'hi', max_response_tokens: 1 },
      });
      expect(response.status).toBe(200);
    } finally {
      await stack.close();
      await Promise.all([dead.close(), live.close()]);
    }
  });
});
