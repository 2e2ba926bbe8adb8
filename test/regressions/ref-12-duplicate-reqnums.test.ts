// Protocol reference §12.12: in-flight requests were keyed by reqnum, so duplicates overwrote each other.
import { describe, expect, it } from 'vitest';
import { postStreaming } from '../helpers/request.ts';
import { startStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

describe('ref-12: requests sharing a reqnum', () => {
  it('are tracked separately and both leave the in-flight map', async () => {
    const stack = await startStack();
    try {
      stack.model.configure({ failure: { kind: 'hang-headers' } });
      const authData = stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 });
      const body = {
        auth_data: authData,
        payload: { prompt: 'same reqnum', max_response_tokens: 1 },
      };
      const calls = [
        postStreaming(`${stack.worker.url}/generate`, body),
        postStreaming(`${stack.worker.url}/generate`, body),
      ];
      await waitFor(() => stack.worker.inspect().working === 2, {
        label: 'two in flight',
      });
      expect(stack.worker.inspect().receivedCount).toBe(1);
      for (const call of calls) call.disconnect();
      await waitFor(() => stack.worker.inspect().working === 0, {
        label: 'none in flight',
      });
      expect(stack.worker.inspect().queuedWorkload).toBe(0);
    } finally {
      await stack.close();
    }
  });
});
