// Protocol reference §12.11: before a benchmark the divisor was 1e-5, so any request in flight meant 429.
import { describe, expect, it } from 'vitest';
import { defineHandler, defineWorker } from '../../lib/index.ts';
import { InputData } from '../../workers/hello_world/data_types.ts';
import { post, postStreaming } from '../helpers/request.ts';
import { startStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

const worker = defineWorker({
  name: 'never-loaded',
  modelServerUrl: 'http://127.0.0.1:5001',
  handlers: [defineHandler({ route: '/generate', payload: InputData, allowParallel: true })],
  // The model log never says "loaded": the worker stays unbenchmarked.
  logActions: { onLoad: ['this line never appears'] },
});

describe('ref-11: admission before the benchmark', () => {
  it('admits a second request while one is in flight, using the assumed throughput', async () => {
    const stack = await startStack({
      worker,
      env: { MODEL_LOG: '/nonexistent/model.log', UNSECURED: 'true' },
    });
    stack.model.configure({ failure: { kind: 'hang-headers' } });
    const first = postStreaming(`${stack.worker.url}/generate`, {
      payload: { prompt: 'a', max_response_tokens: 1 },
    });
    try {
      await waitFor(() => stack.worker.inspect().working === 1, {
        label: 'first in flight',
      });
      expect(stack.worker.readiness.maxPerf).toBe(0);
      stack.model.configure({ failure: { kind: 'none' } });
      const second = await post(`${stack.worker.url}/generate`, {
        payload: { prompt: 'b', max_response_tokens: 1 },
      });
      expect(second.status).toBe(200);
    } finally {
      first.disconnect();
      await stack.close();
    }
  });
});
