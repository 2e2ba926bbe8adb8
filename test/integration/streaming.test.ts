import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postStreaming } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

describe('streaming through the worker', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack.close());

  function body(tokens: number) {
    return {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 10 }),
      payload: { prompt: 'stream me', max_response_tokens: tokens },
    };
  }

  it('delivers the first SSE chunk before the model has finished generating', async () => {
    // The model holds after its first token until the test has looked at the client's side.
    stack.model.configure({ hold: { at: 'tokens', afterTokens: 1 } });
    try {
      const completedBefore = stack.model.stats.completed;
      const completed = once(stack.model, 'completed');
      const call = postStreaming(`${stack.worker.url}/generate_stream`, body(10));
      const { status, headers } = await call.headers;
      expect(status).toBe(200);
      expect(headers['content-type']).toMatch(/^text\/event-stream/);
      expect(headers['cache-control']).toBe('no-cache');
      expect(headers['x-accel-buffering']).toBe('no');
      await waitFor(() => call.chunks.length > 0, { label: 'first chunk' });
      // The model is still generating: its response has not completed yet.
      expect(stack.model.stats.completed).toBe(completedBefore);
      const before = call.chunks.join('');
      expect(before).toContain('data: {"token"');
      expect(before).not.toContain('"done":true');
      stack.model.release();
      const text = await call.done;
      await completed;
      expect(text.match(/data: \{"token"/g)).toHaveLength(10);
      expect(text).toContain('"done":true');
      expect(call.chunks.length).toBeGreaterThan(1);
    } finally {
      stack.model.release();
    }
  });

  it('breaks the client stream and counts an error when the model drops mid-stream', async () => {
    stack.model.configure({
      tokenDelayMs: 5,
      failure: { kind: 'drop-mid-stream', afterTokens: 3 },
    });
    try {
      const errored = stack.worker.inspect().totals.errored;
      const call = postStreaming(`${stack.worker.url}/generate_stream`, body(20));
      expect((await call.headers).status).toBe(200);
      await expect(call.done).rejects.toThrow();
      await waitFor(() => stack.worker.inspect().totals.errored > errored, {
        label: 'errored workload',
      });
      expect(call.chunks.join('')).not.toContain('"done":true');
    } finally {
      stack.model.configure({ tokenDelayMs: 0, failure: { kind: 'none' } });
    }
  });
});
