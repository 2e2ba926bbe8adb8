import { once } from 'node:events';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineHandler, defineWorker } from '../../lib/index.ts';
import { type RequestSummary } from '../../lib/entry-server.ts';
import { countWorkload, InputData } from '../../workers/hello_world/data_types.ts';
import { post, postStreaming } from '../helpers/request.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait-for.ts';

/** hello_world's routes, but FIFO: one request at a time, so a second one waits in the queue. */
const fifoWorker = defineWorker({
  name: 'fifo-hello',
  modelServerUrl: 'http://127.0.0.1:5001',
  handlers: [
    defineHandler({ route: '/generate', payload: InputData, workload: countWorkload }),
    defineHandler({ route: '/generate_stream', payload: InputData, workload: countWorkload }),
  ],
});

describe('client disconnects abort the upstream request and count as cancelled', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ worker: fifoWorker });
  });
  afterAll(() => stack.close());

  const accounting = () => stack.worker.inspect();
  function body(tokens: number, prompt = 'please wait') {
    return {
      auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 10 }),
      payload: { prompt, max_response_tokens: tokens },
    };
  }

  it('while waiting for the model to send headers', async () => {
    stack.model.configure({ failure: { kind: 'hang-headers' } });
    try {
      const cancelled = accounting().totals.cancelled;
      const arrived = once(stack.model, 'request');
      const call = postStreaming(`${stack.worker.url}/generate`, body(5));
      await arrived;
      const aborted = once(stack.model, 'aborted');
      call.disconnect();
      await aborted;
      await waitFor(() => accounting().totals.cancelled > cancelled, {
        label: 'cancelled workload',
      });
      const record = accounting().pendingDeletes.at(-1);
      expect(record?.status).toBe('Cancelled');
      expect(accounting().working).toBe(0);
    } finally {
      stack.model.configure({ failure: { kind: 'none' } });
    }
  });

  it('in the middle of a stream', async () => {
    // The stream stays open after its first token until the client leaves.
    stack.model.configure({ hold: { at: 'tokens', afterTokens: 1 } });
    try {
      const cancelled = accounting().totals.cancelled;
      const call = postStreaming(`${stack.worker.url}/generate_stream`, body(500));
      await waitFor(() => call.chunks.length > 0, { label: 'first chunk' });
      const aborted = once(stack.model, 'aborted');
      call.disconnect();
      await aborted;
      await waitFor(() => accounting().totals.cancelled > cancelled, {
        label: 'cancelled workload',
      });
      expect(accounting().working).toBe(0);
      expect(stack.worker.inspect().fifo.busy).toBe(false);
    } finally {
      stack.model.release();
    }
  });

  it('while queued behind another request, so the model never sees it', async () => {
    // The first request holds the model (after one token) until the second has been cancelled.
    stack.model.configure({ hold: { at: 'tokens', afterTokens: 1 } });
    const seen: string[] = [];
    const onRequest = (event: { body: unknown }) =>
      seen.push((event.body as { prompt: string }).prompt);
    stack.model.on('request', onRequest);
    try {
      const cancelled = accounting().totals.cancelled;
      const first = postStreaming(`${stack.worker.url}/generate_stream`, body(30, 'first'));
      await waitFor(() => first.chunks.length > 0, { label: 'first request streaming' });
      const second = postStreaming(`${stack.worker.url}/generate_stream`, body(5, 'second'));
      await waitFor(() => stack.worker.inspect().fifo.waiting === 1, {
        label: 'second request queued',
      });
      second.disconnect();
      await waitFor(() => accounting().totals.cancelled > cancelled, {
        label: 'cancelled workload',
      });
      expect(stack.worker.inspect().fifo.waiting).toBe(0);
      stack.model.release();
      await first.done;
      // A third request still gets its turn: the cancelled one left no stale slot behind.
      const third = postStreaming(`${stack.worker.url}/generate_stream`, body(2, 'third'));
      await third.done;
      expect(seen).toEqual(['first', 'third']);
    } finally {
      stack.model.off('request', onRequest);
      stack.model.release();
    }
  });
});

describe('a client that leaves while still sending its body', () => {
  it('is counted as cancelled (499), not as an internal error, and the worker keeps serving', async () => {
    const stack = await startStack();
    const summaries: RequestSummary[] = [];
    stack.worker.lifecycle.subscribe((event) => {
      if (event.kind === 'finished') summaries.push(event.summary);
    });
    try {
      const socket = connect(stack.worker.port, '127.0.0.1');
      await once(socket, 'connect');
      socket.write(
        'POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"auth_data":',
      );
      await waitFor(() => stack.worker.inspect().requestsInProgress === 1, {
        label: 'request arrived',
      });
      socket.destroy();
      const summary = await waitFor(() => summaries[0], { label: 'request summary' });
      expect(summary).toMatchObject({ outcome: 'cancelled', status: 499, errorCode: undefined });
      const ok = await post(`${stack.worker.url}/generate`, {
        auth_data: stack.autoscaler.issueAuthData({ endpoint: 'hello', cost: 1 }),
        payload: { prompt: 'still here', max_response_tokens: 1 },
      });
      expect(ok.status).toBe(200);
    } finally {
      await stack.close();
    }
  });
});
