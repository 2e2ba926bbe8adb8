import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineHandler, defineWorker } from '../../lib/index.ts';
import { InputData } from '../../workers/hello_world/data_types.ts';
import { post, postStreaming } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

function worker(maxQueueTime: number | null) {
  return defineWorker({
    name: 'queue-test',
    modelServerUrl: 'http://127.0.0.1:5001',
    handlers: [
      defineHandler({ route: '/generate', payload: InputData, maxQueueTime }),
      defineHandler({ route: '/generate_stream', payload: InputData, maxQueueTime }),
    ],
  });
}

describe('the FIFO for non-parallel handlers', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ worker: worker(null) });
  });
  afterAll(() => stack.close());

  it('runs overlapping requests one at a time, in arrival order, across routes', async () => {
    stack.model.configure({ tokenDelayMs: 10 });
    const order: string[] = [];
    let concurrent = 0;
    let maxConcurrent = 0;
    const onRequest = (event: { body: unknown }) => {
      order.push((event.body as { prompt: string }).prompt);
      concurrent += 1;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
    };
    const onCompleted = () => (concurrent -= 1);
    stack.model.on('request', onRequest);
    stack.model.on('completed', onCompleted);
    let admitted = 0;
    const unsubscribe = stack.worker.lifecycle.subscribe((event) => {
      if (event.kind === 'admitted') admitted += 1;
    });
    try {
      const calls = [];
      for (const [index, route] of [
        '/generate_stream',
        '/generate',
        '/generate_stream',
        '/generate',
      ].entries()) {
        const call = postStreaming(`${stack.worker.url}${route}`, {
          auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 10 }),
          payload: { prompt: `request-${index}`, max_response_tokens: 5 },
        });
        calls.push(call);
        // The next request is sent only once this one has been admitted, so arrival order is known.
        await waitFor(() => admitted === index + 1, { label: `request ${index} admitted` });
      }
      const statuses = await Promise.all(calls.map(async (c) => (await c.headers).status));
      await Promise.all(calls.map((c) => c.done));
      expect(statuses).toEqual([200, 200, 200, 200]);
      expect(order).toEqual(['request-0', 'request-1', 'request-2', 'request-3']);
      expect(maxConcurrent).toBe(1);
    } finally {
      unsubscribe();
      stack.model.off('request', onRequest);
      stack.model.off('completed', onCompleted);
      stack.model.configure({ tokenDelayMs: 0 });
    }
  });
});

describe('admission by estimated wait', () => {
  let stack: TestStack;
  beforeAll(async () => {
    // Workload 100 per request at 50 workload/s: one request in flight means an estimated wait of 2 s.
    stack = await startStack({ worker: worker(1), env: { ASSUMED_THROUGHPUT: '50' } });
  });
  afterAll(() => stack.close());

  it('answers 429 with a Retry-After equal to the estimated wait when it exceeds max_queue_time', async () => {
    stack.model.configure({ failure: { kind: 'hang-headers' } });
    const first = postStreaming(`${stack.worker.url}/generate`, {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
      payload: { prompt: 'long job', max_response_tokens: 5 },
    });
    try {
      await waitFor(() => stack.worker.inspect().working === 1, {
        label: 'first admitted',
      });
      const rejectedBefore = stack.worker.inspect().totals.rejected;
      const second = await post(`${stack.worker.url}/generate`, {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 100 }),
        payload: { prompt: 'second', max_response_tokens: 5 },
      });
      expect(second.status).toBe(429);
      expect(second.headers['retry-after']).toBe('2');
      expect(second.json()).toMatchObject({ code: 'TSW_ERR_OVERLOADED', origin: 'worker' });
      expect(stack.worker.inspect().totals.rejected).toBe(rejectedBefore + 100);
      expect(stack.worker.inspect().pendingDeletes.at(-1)?.status).toBe('Rejected');
    } finally {
      first.disconnect();
      stack.model.configure({ failure: { kind: 'none' } });
    }
  });
});
